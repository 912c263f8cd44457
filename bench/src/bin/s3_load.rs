//! `s3-load`: an S3 load generator for comparing S3 servers (and a plain HTTP server as the
//! ceiling) with the same client, the same requests and the same sizes.
//!
//! Phases, in order, each optional: one large PUT streamed from memory pieces (never the whole
//! object in memory), one large GET streamed and discarded, then small PUTs and small GETs from
//! `--concurrency` workers for `--seconds` or `--ops-max` operations, whichever ends first.
//! Requests are HTTP/1.1 on hyper, one kept-alive connection per worker, signed with AWS
//! Signature V4 and `UNSIGNED-PAYLOAD` (as SDKs do over TLS), or unsigned (`--unsigned`, for
//! nginx serving the same paths with WebDAV PUT). Every body carries a per-run stamp, so no
//! two PUTs of a run, nor of two runs, store equal bytes (no deduplication); every GET is
//! checked: the large one by CRC32C against what was PUT, the small ones by length and stamp.
//!
//! The large GET is repeated (`--large-get-repeat`) and the fastest counts, to damp the noise of
//! other work on a shared machine. Prints a report and one `RESULT|s3|system|figure|value|unit` line per figure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use kiseki_bench::{fill_pseudo_random, percentile, MIB};

/// Size of the pieces a large PUT body is produced in.
const PIECE_BYTES: usize = 1 << 20;
/// Bytes at the start of every piece and small body that make it unique: run nonce, offset.
const STAMP_BYTES: usize = 16;
/// Time any single request may take before the run fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Region the signatures name (path-style requests to a single-region server).
const REGION: &str = "us-east-1";

type Body = BoxBody<Bytes, Infallible>;

#[derive(Parser, Debug)]
#[command(about = "S3 load generator: large PUT/GET streamed, small PUT/GET with concurrency")]
struct Options {
    /// Server to load, `http://host:port` (path-style requests).
    #[arg(long)]
    endpoint: String,
    /// Name of the system in the report and `RESULT` lines.
    #[arg(long)]
    system: String,
    /// Access key (SigV4).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "")]
    access_key: String,
    /// Secret key (SigV4).
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "",
        hide_env_values = true
    )]
    secret_key: String,
    /// Plain unsigned HTTP (a file server such as nginx with WebDAV PUT); no bucket is created.
    #[arg(long)]
    unsigned: bool,
    /// Bucket (first path segment).
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Size of the large object, MiB.
    #[arg(long, default_value_t = 1024)]
    large_mib: u64,
    /// Size of each small object, bytes.
    #[arg(long, default_value_t = 4096)]
    small_bytes: usize,
    /// Concurrent small requests (one connection each).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Time bound of each small phase, seconds.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Operation bound of each small phase.
    #[arg(long, default_value_t = 20_000)]
    ops_max: u64,
    /// Phases to run, comma separated: large-put, large-get, small-put, small-get.
    #[arg(long, default_value = "large-put,large-get,small-put,small-get")]
    phases: String,
    /// Large GETs (the fastest counts: the machine may be shared, a GET is cheap to repeat).
    #[arg(long, default_value_t = 3)]
    large_get_repeat: usize,
    /// Client threads (tokio workers); the client shares the machine with the server.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    ensure!(options.concurrency > 0, "--concurrency must be at least 1");
    ensure!(
        options.small_bytes >= STAMP_BYTES * 4,
        "--small-bytes must be at least {}",
        STAMP_BYTES * 4
    );
    let runtime = if options.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let target = Arc::new(Target::new(&options)?);
    let system = options.system.as_str();
    let phases: Vec<&str> = options.phases.split(',').map(str::trim).collect();
    for phase in &phases {
        ensure!(
            ["large-put", "large-get", "small-put", "small-get"].contains(phase),
            "unknown phase {phase:?}"
        );
    }
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    println!(
        "s3-load {system}: {} (signed: {}), large {} MiB, small {} B x {} concurrent, <= {} s / {} ops",
        options.endpoint,
        !options.unsigned,
        options.large_mib,
        options.small_bytes,
        options.concurrency,
        options.seconds,
        options.ops_max
    );
    let mut connection = Connection::default();
    if !options.unsigned {
        create_bucket(&target, &mut connection, &options.bucket).await?;
    }
    let large_key = format!("/{}/large-{nonce:x}", options.bucket);
    let large_bytes = options.large_mib << 20;
    let mut large_crc = None;
    if phases.contains(&"large-put") {
        let (elapsed, crc) =
            large_put(&target, &mut connection, &large_key, large_bytes, nonce).await?;
        report_rate(system, "large_put", large_bytes, elapsed);
        large_crc = Some(crc);
    }
    if phases.contains(&"large-get") {
        ensure!(
            large_crc.is_some(),
            "large-get needs large-put in the same run"
        );
        let mut times = Vec::new();
        for _ in 0..options.large_get_repeat.max(1) {
            let (elapsed, crc) =
                large_get(&target, &mut connection, &large_key, large_bytes).await?;
            ensure!(
                Some(crc) == large_crc,
                "large GET returned other bytes than were PUT"
            );
            times.push(elapsed);
        }
        let seconds: Vec<String> = times
            .iter()
            .map(|time| format!("{:.2}", time.as_secs_f64()))
            .collect();
        println!(
            "  large object read back byte-exact (CRC32C) {} times: {} s; the best counts",
            times.len(),
            seconds.join(", ")
        );
        let best = times.iter().min().copied().unwrap_or_default();
        report_rate(system, "large_get", large_bytes, best);
    }
    let small = Arc::new(SmallRun {
        target: Arc::clone(&target),
        prefix: format!("/{}/small-{nonce:x}", options.bucket),
        bytes: options.small_bytes,
        nonce,
        deadline_after: Duration::from_secs_f64(options.seconds),
        ops_max: options.ops_max,
    });
    let mut written = vec![0u64; options.concurrency];
    if phases.contains(&"small-put") {
        let outcome = small_phase(&small, SmallOp::Put, &written).await?;
        written = outcome.per_worker.clone();
        outcome.report(system, "small_put");
    }
    if phases.contains(&"small-get") {
        ensure!(
            written.iter().all(|&count| count > 0),
            "small-get needs small-put in the same run"
        );
        let outcome = small_phase(&small, SmallOp::Get, &written).await?;
        outcome.report(system, "small_get");
    }
    Ok(())
}

fn report_rate(system: &str, figure: &str, bytes: u64, elapsed: Duration) {
    let rate = bytes as f64 / MIB / elapsed.as_secs_f64();
    println!(
        "  {figure:<10} {:>8.1} MiB/s  ({} MiB in {:.2} s)",
        rate,
        bytes >> 20,
        elapsed.as_secs_f64()
    );
    println!("RESULT|s3|{system}|{figure}|{rate:.1}|MiB/s");
}

/// Where requests go and how they are signed.
struct Target {
    address: SocketAddr,
    authority: String,
    signer: Option<Signer>,
}

impl Target {
    fn new(options: &Options) -> anyhow::Result<Target> {
        let authority = options
            .endpoint
            .strip_prefix("http://")
            .context("--endpoint must be http://host:port")?
            .trim_end_matches('/')
            .to_owned();
        let address = std::net::ToSocketAddrs::to_socket_addrs(&authority)?
            .next()
            .with_context(|| format!("resolving {authority}"))?;
        let signer = if options.unsigned {
            None
        } else {
            ensure!(
                !options.access_key.is_empty() && !options.secret_key.is_empty(),
                "--access-key and --secret-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or --unsigned"
            );
            Some(Signer::new(&options.access_key, &options.secret_key))
        };
        Ok(Target {
            address,
            authority,
            signer,
        })
    }

    /// A request for `path` (already URI-safe: letters, digits, `/-._`).
    fn request(
        &self,
        method: Method,
        path: &str,
        body: Body,
        length: u64,
    ) -> anyhow::Result<Request<Body>> {
        debug_assert!(path
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/-._".contains(&byte)));
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if method == Method::PUT {
            builder = builder.header(hyper::header::CONTENT_LENGTH, length);
        }
        if let Some(signer) = &self.signer {
            let now = SystemTime::now();
            for (name, value) in signer.sign(method.as_str(), path, &self.authority, now) {
                builder = builder.header(name, value);
            }
        }
        Ok(builder.body(body)?)
    }
}

/// One kept-alive HTTP/1.1 connection, opened again when the server closed it.
#[derive(Default)]
struct Connection {
    sender: Option<SendRequest<Body>>,
}

impl Connection {
    async fn send(
        &mut self,
        target: &Target,
        request: Request<Body>,
    ) -> anyhow::Result<Response<Incoming>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(target.address)
                .await
                .with_context(|| format!("connecting to {}", target.address))?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        Ok(sender.send_request(request).await?)
    }
}

/// Fails with the status and body of an unsuccessful response.
async fn check_status(response: Response<Incoming>, what: &str) -> anyhow::Result<Incoming> {
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&text));
    }
    Ok(body)
}

async fn create_bucket(
    target: &Target,
    connection: &mut Connection,
    bucket: &str,
) -> anyhow::Result<()> {
    let request = target.request(Method::PUT, &format!("/{bucket}"), empty(), 0)?;
    let response = connection.send(target, request).await?;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    // An existing bucket of ours is fine (repeated runs against one server).
    if status.is_success() || String::from_utf8_lossy(&text).contains("BucketAlreadyOwnedByYou") {
        return Ok(());
    }
    bail!(
        "creating bucket {bucket}: HTTP {status}: {}",
        String::from_utf8_lossy(&text)
    )
}

fn empty() -> Body {
    Empty::new().boxed()
}

/// The bytes of the large object at `offset` (one piece): a pseudo-random template with the
/// run nonce and the offset stamped at its start.
fn piece(template: &[u8], nonce: u64, offset: u64, len: usize) -> Bytes {
    let mut piece = BytesMut::with_capacity(len);
    piece.extend_from_slice(&template[..len]);
    let stamp_len = STAMP_BYTES.min(len);
    let mut stamp = [0u8; STAMP_BYTES];
    stamp[..8].copy_from_slice(&nonce.to_le_bytes());
    stamp[8..].copy_from_slice(&offset.to_le_bytes());
    piece[..stamp_len].copy_from_slice(&stamp[..stamp_len]);
    piece.freeze()
}

/// PUTs `bytes` bytes produced piece by piece; returns the time to the response and the CRC32C
/// of what was sent.
async fn large_put(
    target: &Target,
    connection: &mut Connection,
    path: &str,
    bytes: u64,
    nonce: u64,
) -> anyhow::Result<(Duration, u32)> {
    let mut template = vec![0u8; PIECE_BYTES];
    fill_pseudo_random(&mut template, nonce);
    let template = Arc::new(template);
    let crc = Arc::new(AtomicU32::new(0));
    let pieces = futures::stream::unfold(0u64, {
        let (template, crc) = (Arc::clone(&template), Arc::clone(&crc));
        move |offset| {
            let (template, crc) = (Arc::clone(&template), Arc::clone(&crc));
            async move {
                if offset >= bytes {
                    return None;
                }
                let len = (bytes - offset).min(PIECE_BYTES as u64) as usize;
                let piece = piece(&template, nonce, offset, len);
                let sum = crc32c::crc32c_append(crc.load(Ordering::Relaxed), &piece);
                crc.store(sum, Ordering::Relaxed);
                Some((Ok::<_, Infallible>(Frame::data(piece)), offset + len as u64))
            }
        }
    });
    let request = target.request(Method::PUT, path, StreamBody::new(pieces).boxed(), bytes)?;
    let started = Instant::now();
    let response = tokio::time::timeout(REQUEST_TIMEOUT, connection.send(target, request))
        .await
        .context("large PUT timed out")??;
    let body = check_status(response, "large PUT").await?;
    body.collect().await?;
    Ok((started.elapsed(), crc.load(Ordering::Relaxed)))
}

/// GETs the large object, counting and checksumming the bytes as they arrive.
async fn large_get(
    target: &Target,
    connection: &mut Connection,
    path: &str,
    bytes: u64,
) -> anyhow::Result<(Duration, u32)> {
    let started = Instant::now();
    let read = async {
        let request = target.request(Method::GET, path, empty(), 0)?;
        let response = connection.send(target, request).await?;
        let mut body = check_status(response, "large GET").await?;
        let (mut received, mut crc) = (0u64, 0u32);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                received += data.len() as u64;
                crc = crc32c::crc32c_append(crc, &data);
            }
        }
        ensure!(
            received == bytes,
            "large GET returned {received} bytes, expected {bytes}"
        );
        anyhow::Ok(crc)
    };
    let crc = tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .context("large GET timed out")??;
    Ok((started.elapsed(), crc))
}

#[derive(Clone, Copy, PartialEq)]
enum SmallOp {
    Put,
    Get,
}

/// What every worker of a small phase shares.
struct SmallRun {
    target: Arc<Target>,
    prefix: String,
    bytes: usize,
    nonce: u64,
    deadline_after: Duration,
    ops_max: u64,
}

impl SmallRun {
    fn path(&self, worker: usize, index: u64) -> String {
        format!("{}/{worker}/{index}", self.prefix)
    }

    /// The body of small object `index` of `worker`: its path and the nonce at the start, so a
    /// GET can check it got the right object, then pseudo-random bytes.
    fn body(&self, worker: usize, index: u64) -> Bytes {
        let mut body = vec![0u8; self.bytes];
        fill_pseudo_random(&mut body, self.nonce ^ index ^ ((worker as u64) << 48));
        let path = self.path(worker, index);
        let head = self.head(&path);
        body[..head.len()].copy_from_slice(&head);
        Bytes::from(body)
    }

    fn head(&self, path: &str) -> Vec<u8> {
        let mut head = self.nonce.to_le_bytes().to_vec();
        head.extend_from_slice(path.as_bytes());
        head.truncate(self.bytes);
        head
    }
}

struct SmallOutcome {
    elapsed: Duration,
    latencies: Vec<Duration>,
    per_worker: Vec<u64>,
}

impl SmallOutcome {
    fn report(&self, system: &str, figure: &str) {
        let ops = self.latencies.len() as f64;
        let rate = ops / self.elapsed.as_secs_f64();
        let p50 = percentile(&self.latencies, 0.50).as_secs_f64() * 1e3;
        let p99 = percentile(&self.latencies, 0.99).as_secs_f64() * 1e3;
        println!(
            "  {figure:<10} {rate:>8.0} ops/s  ({ops} ops in {:.2} s), p50 {p50:.2} ms, p99 {p99:.2} ms",
            self.elapsed.as_secs_f64()
        );
        println!("RESULT|s3|{system}|{figure}|{rate:.0}|ops/s");
        println!("RESULT|s3|{system}|{figure}_p50|{p50:.2}|ms");
        println!("RESULT|s3|{system}|{figure}_p99|{p99:.2}|ms");
    }
}

/// Runs `op` from every worker until the deadline or `ops_max` operations. For GETs, worker
/// `w` cycles over the `written[w]` objects it PUT.
async fn small_phase(
    run: &Arc<SmallRun>,
    op: SmallOp,
    written: &[u64],
) -> anyhow::Result<SmallOutcome> {
    let claimed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + run.deadline_after;
    let mut workers = tokio::task::JoinSet::new();
    for (worker, &count) in written.iter().enumerate() {
        let (run, claimed) = (Arc::clone(run), Arc::clone(&claimed));
        workers.spawn(async move {
            small_worker(&run, op, worker, count, &claimed, deadline)
                .await
                .with_context(|| format!("worker {worker}"))
        });
    }
    let mut per_worker = vec![0u64; written.len()];
    let mut latencies = Vec::new();
    while let Some(result) = workers.join_next().await {
        let (worker, worker_latencies) = result??;
        per_worker[worker] = worker_latencies.len() as u64;
        latencies.extend(worker_latencies);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(SmallOutcome {
        elapsed,
        latencies,
        per_worker,
    })
}

async fn small_worker(
    run: &SmallRun,
    op: SmallOp,
    worker: usize,
    written: u64,
    claimed: &AtomicU64,
    deadline: Instant,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let mut connection = Connection::default();
    let mut latencies = Vec::new();
    let mut index = 0u64;
    while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < run.ops_max {
        let key = match op {
            SmallOp::Put => index,
            SmallOp::Get => index % written,
        };
        let path = run.path(worker, key);
        // The body is made before the clock starts: the client's own work is not latency.
        let body = match op {
            SmallOp::Put => Some(run.body(worker, key)),
            SmallOp::Get => None,
        };
        let started = Instant::now();
        let once = small_once(run, &mut connection, &path, body);
        tokio::time::timeout(REQUEST_TIMEOUT, once)
            .await
            .with_context(|| format!("{path} timed out"))??;
        latencies.push(started.elapsed());
        index += 1;
    }
    Ok((worker, latencies))
}

async fn small_once(
    run: &SmallRun,
    connection: &mut Connection,
    path: &str,
    body: Option<Bytes>,
) -> anyhow::Result<()> {
    let target = &run.target;
    match body {
        Some(body) => {
            let length = body.len() as u64;
            let request = target.request(Method::PUT, path, Full::new(body).boxed(), length)?;
            let response = connection.send(target, request).await?;
            check_status(response, path).await?.collect().await?;
        }
        None => {
            let request = target.request(Method::GET, path, empty(), 0)?;
            let response = connection.send(target, request).await?;
            let body = check_status(response, path)
                .await?
                .collect()
                .await?
                .to_bytes();
            ensure!(
                body.len() == run.bytes && body.starts_with(&run.head(path)),
                "GET {path}: {} bytes, not the object that was PUT",
                body.len()
            );
        }
    }
    Ok(())
}

/// AWS Signature V4 for path-style S3 requests without a query, `UNSIGNED-PAYLOAD`.
struct Signer {
    access_key: String,
    secret_key: String,
    /// The signing key of the current day, derived once per day.
    day_key: std::sync::Mutex<Option<(String, aws_lc_rs::hmac::Key)>>,
}

impl Signer {
    fn new(access_key: &str, secret_key: &str) -> Signer {
        Signer {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            day_key: std::sync::Mutex::new(None),
        }
    }

    fn signing_key(&self, date: &str) -> aws_lc_rs::hmac::Key {
        use aws_lc_rs::hmac;
        let mut cached = self
            .day_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((day, key)) = cached.as_ref() {
            if day == date {
                return key.clone();
            }
        }
        let derive = |key: &[u8], data: &str| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        };
        let secret = format!("AWS4{}", self.secret_key);
        let key = derive(secret.as_bytes(), date);
        let key = derive(key.as_ref(), REGION);
        let key = derive(key.as_ref(), "s3");
        let key = derive(key.as_ref(), "aws4_request");
        let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_ref());
        *cached = Some((date.to_owned(), key.clone()));
        key
    }

    /// The headers that sign a request (`path` is already in canonical, encoded form).
    fn sign(
        &self,
        method: &str,
        path: &str,
        host: &str,
        time: SystemTime,
    ) -> [(&'static str, String); 3] {
        use aws_lc_rs::{digest, hmac};
        let (date, datetime) = amz_date(time);
        let payload = "UNSIGNED-PAYLOAD";
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{datetime}\n\n{signed_headers}\n{payload}"
        );
        let scope = format!("{date}/{REGION}/s3/aws4_request");
        let canonical_hash = hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
        let to_sign = format!("AWS4-HMAC-SHA256\n{datetime}\n{scope}\n{canonical_hash}");
        let signature = hex::encode(hmac::sign(&self.signing_key(&date), to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        [
            ("x-amz-content-sha256", payload.to_owned()),
            ("x-amz-date", datetime),
            ("authorization", authorization),
        ]
    }
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` (UTC) of `time`.
fn amz_date(time: SystemTime) -> (String, String) {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let date = format!("{year:04}{month:02}{day:02}");
    let datetime = format!(
        "{date}T{:02}{:02}{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    (date, datetime)
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(
            amz_date(time),
            ("20150830".to_owned(), "20150830T123600Z".to_owned())
        );
    }

    #[test]
    fn signature_matches_an_independent_implementation() {
        // Expected value computed with Python's hmac/hashlib from the SigV4 description.
        let signer = Signer::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let [_, (_, date), (_, authorization)] =
            signer.sign("GET", "/bench/key", "127.0.0.1:9000", time);
        assert_eq!(date, "20150830T123600Z");
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=e79e58a386904d65539fb690697696668a0fd304c8af52e892b277b965712b51"
        );
    }
}
