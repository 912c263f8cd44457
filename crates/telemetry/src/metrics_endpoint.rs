//! `GET /metrics` over HTTP/1.1, with a bound on connections and on the time to read a request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

/// Most metrics connections served at once; more wait in the accept queue.
const CONNECTIONS_MAX: usize = 16;
/// Longest wait for a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Something that renders metrics as OpenMetrics text.
pub trait MetricsSource: Send + Sync + 'static {
    /// The current metrics.
    fn encode(&self) -> Result<String, std::fmt::Error>;
}

impl MetricsSource for Registry {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, self)?;
        Ok(text)
    }
}

/// Binds `listen` and serves `/metrics` from `source` until `shutdown` turns true. Returns the
/// bound address (useful with port 0) and the serving task.
pub async fn serve_metrics(
    listen: SocketAddr,
    source: Arc<dyn MetricsSource>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let stream = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics accept failed");
                        continue;
                    }
                },
            };
            let source = Arc::clone(&source);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let source = Arc::clone(&source);
                    async move { Ok::<_, Infallible>(respond(source.as_ref(), &request)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "metrics connection ended with an error");
                }
                drop(permit);
            });
        }
    });
    Ok((bound, task))
}

fn respond(source: &dyn MetricsSource, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at GET /metrics\n",
        );
    }
    match source.encode() {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            if let Ok(value) = CONTENT_TYPE.parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            response
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
