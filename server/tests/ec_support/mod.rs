//! One `kiseki-server` process with an erasure-coded pool, driven as an operator does: the aws
//! cli over S3, counters of pool `bulk` read from /metrics, SIGTERM to stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{run, success};

pub struct EcServer {
    child: Option<Child>,
    endpoint: String,
    metrics: String,
    access_key: String,
    secret_key: String,
}

fn banner_value(banner: &[String], label: &str) -> String {
    banner
        .iter()
        .find_map(|line| line.trim().strip_prefix(label).map(|r| r.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {label:?} in {banner:?}"))
}
impl EcServer {
    pub fn start(config: &Path) -> EcServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiseki-server"))
            .arg("--config")
            .arg(config)
            .env("KISEKI_LOG", "warn,s3s=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut banner = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let ready = line == "ready";
            banner.push(line);
            if ready {
                break;
            }
        }
        assert_eq!(
            banner.last().map(String::as_str),
            Some("ready"),
            "{banner:?}"
        );
        let endpoint = banner_value(&banner, "S3 endpoint:");
        EcServer {
            child: Some(child),
            endpoint: endpoint.split_whitespace().next().unwrap().to_owned(),
            metrics: banner_value(&banner, "metrics:"),
            access_key: banner_value(&banner, "S3 access key:"),
            secret_key: banner_value(&banner, "S3 secret key:"),
        }
    }

    pub fn aws(&self, args: &[&str]) -> String {
        let mut command = Command::new("aws");
        command
            .args(["--endpoint-url", &self.endpoint])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE");
        success(run(&mut command, Duration::from_secs(120)), "aws")
    }

    /// A counter of pool `bulk` on /metrics.
    pub fn counter(&self, name: &str) -> u64 {
        let address = self
            .metrics
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

    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        assert!(Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EcServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
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
