//! Printing `kiseki status` and `kiseki release` replies.

use kiseki_client::agent::protocol::Reply;
use kiseki_client::human_bytes;
use serde_json::Value;

fn number(value: &Value, path: &[&str]) -> u64 {
    let mut value = value;
    for key in path {
        value = &value[*key];
    }
    value.as_u64().unwrap_or(0)
}

/// Prints the status (JSON as the agent sent it, or a summary).
pub fn print_status(reply: Reply, json: bool) -> anyhow::Result<()> {
    let Reply::Status(status) = reply else {
        anyhow::bail!("unexpected reply from the agent: {reply:?}");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let pins = status["pins"].as_array().cloned().unwrap_or_default();
    if pins.is_empty() {
        println!("pinned datasets: none");
    } else {
        println!("pinned datasets:");
        for pin in &pins {
            let jobs: Vec<&str> = pin["jobs"]
                .as_array()
                .map(|jobs| jobs.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "  {}  jobs {}  {}  ({}/{} chunks cached)",
                pin["dataset"].as_str().unwrap_or("?"),
                jobs.join(","),
                human_bytes(number(pin, &["bytes"])),
                number(pin, &["cached_chunks"]),
                number(pin, &["chunks"]),
            );
        }
    }
    println!(
        "L1 (memory): {} of {}",
        human_bytes(number(&status, &["l1", "bytes"])),
        human_bytes(number(&status, &["l1", "capacity"]))
    );
    println!(
        "L2 (disk):   {} of {} ({} pinned)",
        human_bytes(number(&status, &["l2", "bytes"])),
        human_bytes(number(&status, &["l2", "capacity"])),
        human_bytes(number(&status, &["pinned_bytes"]))
    );
    let (l1, l2, misses) = (
        number(&status, &["l1_hits"]),
        number(&status, &["l2_hits"]),
        number(&status, &["misses"]),
    );
    let reads = (l1 + l2 + misses).max(1);
    println!(
        "hits: L1 {l1}, L2 {l2}, misses {misses} (hit ratio {:.1}%); corrupt L2 files dropped: {}",
        100.0 * (l1 + l2) as f64 / reads as f64,
        number(&status, &["corrupt_dropped"])
    );
    println!(
        "server requests: {} metadata, {} chunk gets, {} chunk puts",
        number(&status, &["requests", "metadata"]),
        number(&status, &["requests", "chunk_gets"]),
        number(&status, &["requests", "chunk_puts"])
    );
    for staging in status["stagings"].as_array().into_iter().flatten() {
        println!(
            "staging {}: files {}/{}, {} of {}",
            staging["dataset"].as_str().unwrap_or("?"),
            number(staging, &["files_done"]),
            number(staging, &["files_total"]),
            human_bytes(number(staging, &["bytes_done"])),
            human_bytes(number(staging, &["bytes_total"]))
        );
    }
    let hints = status["hints"].as_array().cloned().unwrap_or_default();
    for hint in hints.iter().rev().take(10).rev() {
        println!(
            "hint: job {} {} {}",
            hint["job"].as_str().unwrap_or("?"),
            hint["phase"].as_str().unwrap_or("?"),
            hint["values"]
        );
    }
    Ok(())
}

/// Prints what a release did.
pub fn print_released(reply: Reply) -> anyhow::Result<()> {
    let Reply::Released { released } = reply else {
        anyhow::bail!("unexpected reply from the agent: {reply:?}");
    };
    if released.is_empty() {
        println!("nothing to release");
    }
    for pin in released {
        if pin.still_pinned_by.is_empty() {
            println!(
                "released {} (job {}); no longer pinned",
                pin.dataset, pin.job
            );
        } else {
            println!(
                "released {} (job {}); still pinned by {}",
                pin.dataset,
                pin.job,
                pin.still_pinned_by.join(",")
            );
        }
    }
    Ok(())
}
