//! Streaming: a 1 GiB PUT and a 1 GiB GET (single requests, not multipart) raise the server's
//! resident memory by less than 128 MiB (VmHWM, the peak, against VmRSS before).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "s3/support.rs"]
mod support;

use std::io::Write;

use support::{success, test_bytes, Server};

const GIB: usize = 1024 * 1024 * 1024;
const RSS_GROWTH_KIB_MAX: u64 = 128 * 1024;

#[test]
fn one_gib_put_and_get_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let file = dir.path().join("one-gib.bin");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let block = test_bytes(8 * 1024 * 1024, 5);
    for index in 0..GIB / block.len() {
        // Distinct blocks, so chunk dedup does not make the write cheaper than it is.
        out.write_all(&(index as u64).to_le_bytes()).unwrap();
        out.write_all(&block[8..]).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    server.aws(&["s3", "mb", "s3://memory"]);

    let before = server.memory_kib("VmRSS");
    let sent = success(
        server.python(
            "s3_large.py",
            &["put", "memory", "big", file.to_str().unwrap()],
        ),
        "1 GiB PUT",
    );
    let peak = server.memory_kib("VmHWM");
    eprintln!("PUT: VmRSS before {before} KiB, VmHWM after {peak} KiB");
    assert!(
        peak < before + RSS_GROWTH_KIB_MAX,
        "a 1 GiB PUT raised the server's peak RSS from {before} to {peak} KiB"
    );

    let got = success(
        server.python("s3_large.py", &["get", "memory", "big"]),
        "1 GiB GET",
    );
    let peak = server.memory_kib("VmHWM");
    eprintln!("GET: VmRSS before {before} KiB, VmHWM after {peak} KiB");
    assert!(
        peak < before + RSS_GROWTH_KIB_MAX,
        "a 1 GiB GET raised the server's peak RSS from {before} to {peak} KiB"
    );
    assert_eq!(sent.trim(), got.trim(), "the object read back differs");
    server.stop();
}
