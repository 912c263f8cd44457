//! The S3 listener: HTTP/1.1 with hyper, a bound on open connections, a timeout on request
//! headers (slow or stalled clients cannot hold a connection forever), request counting, and a
//! graceful stop: on shutdown, requests in flight are answered, then connections close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use kiseki_namespace::Namespace;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::auth::{KeyLookup, OperationName, SignedOnly};
use super::handlers::KisekiS3;
use super::S3Metrics;
use crate::access_keys::AccessKeys;

/// Connections served at once; more wait in the listen backlog.
const CONNECTIONS_MAX: usize = 1024;
/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest XML request body (CompleteMultipartUpload of 10,000 parts, DeleteObjects of 1,000 keys).
const XML_BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Time requests in flight get to finish after shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// A running S3 gateway.
pub struct S3Gateway {
    /// The address it listens on.
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl S3Gateway {
    /// Waits until the gateway has stopped (after the shutdown signal).
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.task.await.context("S3 gateway task")
    }
}

fn service(namespace: Arc<Namespace>, keys: Arc<AccessKeys>) -> S3Service {
    let mut builder = S3ServiceBuilder::new(KisekiS3::new(namespace, Arc::clone(&keys)));
    builder.set_auth(KeyLookup(keys));
    builder.set_access(SignedOnly);
    let mut config = S3Config::default();
    config.xml_max_body_size = XML_BODY_BYTES_MAX;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(config))));
    builder.build()
}

/// Binds `listen` and serves S3 until `shutdown` turns true.
pub async fn start(
    listen: SocketAddr,
    namespace: Arc<Namespace>,
    keys: Arc<AccessKeys>,
    metrics: S3Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<S3Gateway> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the S3 listener {listen}"))?;
    let address = listener.local_addr()?;
    let service = service(namespace, keys);
    let task = tokio::spawn(accept_loop(listener, service, metrics, shutdown));
    Ok(S3Gateway { address, task })
}

async fn accept_loop(
    listener: TcpListener,
    service: S3Service,
    metrics: S3Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = stop_asked(&mut shutdown) => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot { Ok(slot) => slot, Err(_) => break },
        };
        let stream = tokio::select! {
            _ = stop_asked(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "S3 accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (service, metrics, shutdown) = (service.clone(), metrics.clone(), shutdown.clone());
        connections.spawn(async move {
            serve_connection(stream, service, metrics, shutdown).await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("S3 connections still open after the shutdown grace period; closing them");
        connections.abort_all();
    }
}

fn request_has_body<B>(request: &hyper::Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(hyper::header::TRANSFER_ENCODING)
        || headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok())
            .is_some_and(|length| length.trim() != "0")
}

/// Resolves once shutdown is asked (the watch guard is dropped before anything else awaits).
async fn stop_asked(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    stream: TcpStream,
    service: S3Service,
    metrics: S3Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let handler =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let (service, metrics) = (service.clone(), metrics.clone());
            async move {
                let operation = OperationName::default();
                request.extensions_mut().insert(operation.clone());
                let has_body = request_has_body(&request);
                let mut result = service.call(request.map(s3s::Body::from)).await;
                let status = result
                    .as_ref()
                    .map_or(500, |response| response.status().as_u16());
                if let Ok(response) = &mut result {
                    // An error may be answered before the request body is read; the unread rest
                    // must not be taken for the next request on a kept-alive connection.
                    if has_body && status >= 400 {
                        response.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                }
                metrics.record(operation.0.get().map_or("Unknown", String::as_str), status);
                result
            }
        });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), handler);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "S3 connection ended with an error");
            }
        }
        _ = stop_asked(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
