//! The `kiseki` CLI's contract against a real agent: plain progress lines when stdout is not a
//! terminal, exit 3 when a deadline passes (with what was and was not staged), exit 1 naming
//! a missing dataset, a clear error without an agent, hints recorded in the status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::fs;

use common::agent::{kiseki, pattern, AgentMount};
use common::{free_port, Mount, Server};

struct Setup {
    agent: AgentMount,
    _writer: Mount,
    _server: Server,
    _dir: tempfile::TempDir,
}

/// A server, `files` files of `file_bytes` under /bucket/<name>, and an agent mount.
fn setup(name: &str, files: usize, file_bytes: usize) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("kiseki-cli-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let server = Server::start(&dir.path().join("data"), free_port());
    let writer = Mount::start(&server, &dir.path().join("writer"));
    let root = writer.path.join("bucket").join(name);
    fs::create_dir_all(&root).unwrap();
    for index in 0..files {
        fs::write(
            root.join(format!("f{index}")),
            pattern(file_bytes, index as u64),
        )
        .unwrap();
    }
    let agent = AgentMount::start(&server, dir.path(), "agent", 1 << 30);
    Setup {
        agent,
        _writer: writer,
        _server: server,
        _dir: dir,
    }
}

#[test]
fn stage_prints_progress_lines_and_honours_deadlines_and_missing_datasets() {
    let setup = setup("ds", 6, 6 << 20);
    let agent = &setup.agent;

    // A deadline that passes before anything is fetched: exit 3, what was not staged listed.
    let output = agent.kiseki(&["stage", "/bucket/ds", "--job", "1", "--deadline", "1ms"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("not staged /bucket/ds"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("deadline passed"));

    // Staging resumes: progress lines (stdout is a pipe here), then the result.
    let output = agent.kiseki(&["stage", "/bucket/ds", "--job", "1", "--wait"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("staging /bucket/ds for job 1: 6 files"),
        "{stdout}"
    );
    let progress: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("progress /bucket/ds: files "))
        .collect();
    assert!(!progress.is_empty(), "{stdout}");
    assert!(
        progress
            .last()
            .unwrap()
            .contains(&format!("files 6/6 bytes {0}/{0}", 36u64 << 20)),
        "{stdout}"
    );
    assert!(stdout.contains("staged /bucket/ds: 6 files"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "no terminal escapes on a pipe");

    // Already staged: a second stage is idempotent and fetches nothing.
    let gets_before = agent.status()["requests"]["chunk_gets"].as_u64().unwrap();
    agent.kiseki_ok(&["stage", "/bucket/ds", "--job", "1", "--wait"]);
    assert_eq!(
        agent.status()["requests"]["chunk_gets"].as_u64().unwrap(),
        gets_before
    );

    // A missing dataset: exit 1, named.
    let output = agent.kiseki(&["stage", "/bucket/nosuch", "--wait"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("kiseki: ") && stderr.contains("/bucket/nosuch"),
        "{stderr}"
    );

    // Without --wait, stage returns once staging has started; the agent finishes it.
    agent.kiseki_ok(&["stage", "/bucket/ds", "--job", "2"]);
    let jobs = &agent.status()["pins"][0]["jobs"];
    assert_eq!(*jobs, serde_json::json!(["1", "2"]));
}

#[test]
fn hints_are_recorded_and_a_missing_agent_is_a_clear_error() {
    let setup = setup("small", 1, 1000);
    let agent = &setup.agent;
    agent.kiseki_ok(&["hint", "--job", "42", "--phase", "start", "epoch=1,step=10"]);
    agent.kiseki_ok(&["hint", "--job", "42", "--phase", "end"]);
    let hints = agent.status()["hints"].clone();
    assert_eq!(hints[0]["job"], "42");
    assert_eq!(hints[0]["phase"], "start");
    assert_eq!(hints[0]["values"]["step"], "10");
    assert_eq!(hints[1]["phase"], "end");
    // Without --job the pin belongs to the caller (root here), who releases it without --job.
    agent.kiseki_ok(&["stage", "/bucket/small", "--wait"]);
    assert_eq!(
        agent.status()["pins"][0]["jobs"],
        serde_json::json!(["user:0"])
    );
    let verified = agent.kiseki_ok(&["cache", "verify"]);
    assert!(verified.contains("0 bad"), "{verified}");
    let released = agent.kiseki_ok(&["release"]);
    assert!(
        released.contains("released /bucket/small (job user:0)"),
        "{released}"
    );
    let evicted = agent.kiseki_ok(&["cache", "evict", "/bucket/small"]);
    assert!(evicted.starts_with("evicted "), "{evicted}");
    let human = agent.kiseki_ok(&["status"]);
    assert!(human.contains("server requests:"), "{human}");

    let nowhere = setup.agent.socket.with_file_name("no-agent.sock");
    let output = kiseki(&nowhere, &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no cache agent answers at"), "{stderr}");
}
