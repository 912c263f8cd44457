//! One `kiseki-server` process with an erasure-coded pool, driven as an operator does: the aws
//! cli over S3, counters of pool `bulk` read from /metrics, SIGTERM to stop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::support::{run, success, Server};

/// The server (stopped and killed by [`Server`]) and what the EC tests ask of it.
pub struct EcServer {
    server: Server,
}

impl EcServer {
    pub fn start(config: &Path) -> EcServer {
        EcServer {
            server: Server::start_with_config(config),
        }
    }

    pub fn aws(&self, args: &[&str]) -> String {
        self.server.aws(args)
    }

    /// Stops the server with SIGTERM; it must exit cleanly.
    pub fn stop(self) {
        self.server.stop();
    }

    /// A counter of pool `bulk` on /metrics.
    pub fn counter(&self, name: &str) -> u64 {
        let address = self
            .server
            .metrics_url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_owned();
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let prefix = format!("kiseki_{name}_total{{pool=\"bulk\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in metrics:\n{text}"))
    }

    /// GETs every object of `bucket` into `dir` and compares it with the bytes written.
    pub fn read_all(&self, dir: &Path, bucket: &str, objects: &[(String, Vec<u8>)]) {
        for (name, bytes) in objects {
            let out = dir.join(format!("{name}.back"));
            self.aws(&[
                "s3",
                "cp",
                "--only-show-errors",
                &format!("s3://{bucket}/{name}"),
                out.to_str().unwrap(),
            ]);
            assert_eq!(&std::fs::read(&out).unwrap(), bytes, "{name}");
            std::fs::remove_file(&out).unwrap();
        }
    }
}

/// Runs `kiseki-server <args> --config <config>` (an offline admin command) and returns its output.
pub fn admin(config: &Path, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiseki-server"));
    child
        .args(args)
        .arg("--config")
        .arg(config)
        .env("KISEKI_LOG", "warn");
    success(run(&mut child, Duration::from_secs(120)), args[0])
}
