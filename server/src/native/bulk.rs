//! The server side of the native bulk channel (protocol in `kiseki_proto::bulk`): sealed chunk
//! frames to clients over plain TCP, on connections that proved they hold a session key granted
//! over TLS. Serves only what `TenantNamespace::sealed_chunk` serves to the same caller over
//! gRPC; never metadata, keys or plaintext.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiseki_chunk::FRAME_BYTES_MAX;
use kiseki_crypto::ChannelKey;
use kiseki_namespace::{Namespace, TenantNamespace};
use kiseki_proto::bulk::{
    parse_request_header, proof_context, read_payload, reply_header, status_of, CLIENT_HELLO_BYTES,
    MAGIC, NONCE_BYTES, OP_GET_CHUNK, OP_PUT_CHUNK, REQUEST_BYTES, SESSION_ID_BYTES, STATUS_OK,
};
use kiseki_types::{ChunkId, ErrorKind, NamespaceError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster::tls::ClientIdentity;

/// Sessions held at once; the one closest to expiry goes first when full.
const SESSIONS_MAX: usize = 4096;
/// How long a session may open connections.
const SESSION_TTL: Duration = Duration::from_secs(3600);
/// Connections served at once; more wait in the kernel's backlog.
const CONNECTIONS_MAX: usize = 1024;
/// Longest a client may take to prove its session.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest one reply may take to send.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prometheus counters of the bulk channel (`kiseki_native_bulk_*`).
#[derive(Clone, Default)]
pub struct BulkMetrics {
    connections: Counter,
    refused: Counter,
    frames_sent: Counter,
    frames_received: Counter,
    bytes_sent: Counter,
    bytes_received: Counter,
}

impl BulkMetrics {
    /// Registers the counters.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = BulkMetrics::default();
        let counters = [
            (
                "native_bulk_connections",
                "Bulk channel connections that proved a session",
                &metrics.connections,
            ),
            (
                "native_bulk_refused",
                "Bulk channel connections refused (bad proof, unknown session, other address)",
                &metrics.refused,
            ),
            (
                "native_bulk_frames_sent",
                "Sealed chunk frames served over the bulk channel",
                &metrics.frames_sent,
            ),
            (
                "native_bulk_frames_received",
                "Sealed chunk frames stored over the bulk channel",
                &metrics.frames_received,
            ),
            (
                "native_bulk_sent_bytes",
                "Bytes of frames served over the bulk channel",
                &metrics.bytes_sent,
            ),
            (
                "native_bulk_received_bytes",
                "Bytes of frames stored over the bulk channel",
                &metrics.bytes_received,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        metrics
    }
}

/// Sessions granted over TLS, redeemed by bulk connections.
pub struct BulkSessions {
    port: u16,
    sessions: Mutex<HashMap<[u8; SESSION_ID_BYTES], Session>>,
}

struct Session {
    identity: ClientIdentity,
    key: ChannelKey,
    peer: IpAddr,
    expires: Instant,
}

/// A granted session, as the client receives it.
pub struct Grant {
    pub port: u16,
    pub session_id: [u8; SESSION_ID_BYTES],
    pub key: Vec<u8>,
    pub valid_for: Duration,
}

impl BulkSessions {
    fn new(port: u16) -> Self {
        BulkSessions {
            port,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A new session for `identity`, usable only from `peer`.
    pub fn grant(&self, identity: ClientIdentity, peer: IpAddr) -> Result<Grant, NamespaceError> {
        let unavailable = |_| NamespaceError::new(ErrorKind::Unavailable, "no random bytes");
        let key = ChannelKey::random().map_err(unavailable)?;
        let session_id = ChannelKey::random_bytes::<SESSION_ID_BYTES>().map_err(unavailable)?;
        let grant = Grant {
            port: self.port,
            session_id,
            key: key.as_bytes().to_vec(),
            valid_for: SESSION_TTL,
        };
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, session| session.expires > now);
        if sessions.len() >= SESSIONS_MAX {
            let soonest = sessions
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(id, _)| *id);
            if let Some(id) = soonest {
                sessions.remove(&id);
            }
        }
        sessions.insert(
            session_id,
            Session {
                identity,
                key,
                peer,
                expires: now + SESSION_TTL,
            },
        );
        Ok(grant)
    }

    /// The identity of a client that proved session `session_id` for `nonce` from `peer`.
    fn redeem(
        &self,
        hello: &[u8; CLIENT_HELLO_BYTES],
        nonce: &[u8; NONCE_BYTES],
        peer: IpAddr,
    ) -> Result<ClientIdentity, &'static str> {
        let mut session_id = [0u8; SESSION_ID_BYTES];
        session_id.copy_from_slice(&hello[..SESSION_ID_BYTES]);
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions
            .get(&session_id)
            .filter(|session| session.expires > Instant::now())
            .ok_or("unknown or expired bulk session")?;
        if !session.key.verify(
            &proof_context(nonce, &session_id),
            &hello[SESSION_ID_BYTES..],
        ) {
            return Err("bulk session proof does not verify");
        }
        if session.peer != peer {
            return Err("bulk session was granted to another address");
        }
        Ok(session.identity.clone())
    }
}

/// Binds `listen` and serves the bulk channel until `shutdown`; returns the sessions (for
/// `OpenBulkSession`), the bound address and the task.
pub async fn serve(
    listen: SocketAddr,
    namespace: Arc<Namespace>,
    metrics: BulkMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(Arc<BulkSessions>, SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let sessions = Arc::new(BulkSessions::new(bound.port()));
    let served = Arc::clone(&sessions);
    let task = tokio::spawn(async move {
        let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        loop {
            let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
                break;
            };
            let accepted = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "bulk listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (sessions, namespace) = (Arc::clone(&served), Arc::clone(&namespace));
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let served = serve_connection(tcp, peer, &sessions, &namespace, &metrics).await;
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "bulk connection closed");
                }
            });
        }
    });
    Ok((sessions, bound, task))
}

async fn serve_connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    sessions: &BulkSessions,
    namespace: &Namespace,
    metrics: &BulkMetrics,
) -> std::io::Result<()> {
    let nonce = ChannelKey::random_bytes::<NONCE_BYTES>()
        .map_err(|_| std::io::Error::other("no random bytes"))?;
    let mut hello = [0u8; CLIENT_HELLO_BYTES];
    let greeted = async {
        tcp.write_all(MAGIC).await?;
        tcp.write_all(&nonce).await?;
        tcp.read_exact(&mut hello).await
    };
    timed(HELLO_TIMEOUT, greeted).await?;
    let identity = match sessions.redeem(&hello, &nonce, peer.ip()) {
        Ok(identity) => identity,
        Err(why) => {
            tracing::info!(%peer, why, "bulk connection refused");
            metrics.refused.inc();
            let refusal = NamespaceError::new(ErrorKind::PermissionDenied, why);
            return timed(REPLY_TIMEOUT, reply_error(&mut tcp, &refusal)).await;
        }
    };
    let tenant = match namespace.tenant(identity.tenant).await {
        Ok(tenant) => tenant,
        Err(error) => return timed(REPLY_TIMEOUT, reply_error(&mut tcp, &error)).await,
    };
    timed(REPLY_TIMEOUT, tcp.write_all(&reply_header(STATUS_OK, 0))).await?;
    metrics.connections.inc();
    let mut request = [0u8; REQUEST_BYTES];
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, tcp.read_exact(&mut request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(_) => return Ok(()),
        }
        let (op, id, body_len) = parse_request_header(&request);
        let id = ChunkId(id);
        match op {
            OP_GET_CHUNK if body_len == 0 => {
                if let Some(sent) = timed(REPLY_TIMEOUT, send_chunk(&mut tcp, &tenant, id)).await? {
                    metrics.frames_sent.inc();
                    metrics.bytes_sent.inc_by(sent);
                }
            }
            OP_PUT_CHUNK if body_len as usize <= FRAME_BYTES_MAX => {
                let frame = timed(REPLY_TIMEOUT, read_payload(&mut tcp, body_len as usize)).await?;
                let stored = tenant
                    .store_sealed_chunk(id, frame, Some(&identity.workload))
                    .await;
                let reply = async {
                    match stored {
                        Ok(deduplicated) => {
                            metrics.frames_received.inc();
                            metrics.bytes_received.inc_by(u64::from(body_len));
                            tcp.write_all(&reply_header(STATUS_OK, 1)).await?;
                            tcp.write_all(&[u8::from(deduplicated)]).await
                        }
                        Err(error) => reply_error(&mut tcp, &error).await,
                    }
                };
                timed(REPLY_TIMEOUT, reply).await?
            }
            _ => {
                // The stream cannot be trusted past a request it does not understand.
                let error = NamespaceError::new(
                    ErrorKind::InvalidArgument,
                    format!("unknown bulk request (operation {op}, body of {body_len} bytes)"),
                );
                return timed(REPLY_TIMEOUT, reply_error(&mut tcp, &error)).await;
            }
        }
    }
}

/// Sends chunk `id`'s frame and returns its length, or sends the error reading it (`None`).
async fn send_chunk(
    tcp: &mut TcpStream,
    tenant: &TenantNamespace,
    id: ChunkId,
) -> std::io::Result<Option<u64>> {
    match tenant.sealed_chunk(id, false).await {
        Ok(frame) => {
            let len = u32::try_from(frame.len()).map_err(std::io::Error::other)?;
            tcp.write_all(&reply_header(STATUS_OK, len)).await?;
            tcp.write_all(&frame).await?;
            Ok(Some(u64::from(len)))
        }
        Err(error) => reply_error(tcp, &error).await.map(|()| None),
    }
}

async fn reply_error(tcp: &mut TcpStream, error: &NamespaceError) -> std::io::Result<()> {
    let message = truncated(&error.message, kiseki_proto::bulk::ERROR_MESSAGE_BYTES_MAX);
    tcp.write_all(&reply_header(status_of(error.kind), message.len() as u32))
        .await?;
    tcp.write_all(message.as_bytes()).await
}

fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

async fn timed<T>(
    limit: Duration,
    work: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, work).await.map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "bulk connection timed out")
    })?
}
