//! The client side of the native bulk channel (protocol and security argument in
//! `kiseki_proto::bulk`): sealed chunk frames over plain TCP connections that prove a session
//! granted over TLS. Frames arrive as the server stored them and are opened by the caller with
//! the tenant's key, so nothing here sees plaintext. Holds a few connections, one request at a
//! time on each; never carries metadata or keys.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiseki_chunk::FRAME_BYTES_MAX;
use kiseki_crypto::ChannelKey;
use kiseki_proto::bulk::{
    kind_of, parse_reply_header, proof_context, read_payload, request_header, CLIENT_HELLO_BYTES,
    ERROR_MESSAGE_BYTES_MAX, MAGIC, NONCE_BYTES, OP_GET_CHUNK, OP_PUT_CHUNK, REPLY_HEADER_BYTES,
    SESSION_ID_BYTES, STATUS_OK,
};
use kiseki_types::{ChunkId, ErrorKind, NamespaceError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Connections open at once (each carries one request at a time): enough for the read-ahead
/// and a staging run's fetches in flight.
const CONNECTIONS_MAX: usize = 8;
/// A session is renewed this long before the server would expire it.
const SESSION_RENEW_MARGIN: Duration = Duration::from_secs(60);

/// A session as the server granted it over TLS.
pub struct BulkGrant {
    /// Port of the bulk channel on the server's host.
    pub port: u16,
    /// Session id.
    pub session_id: Vec<u8>,
    /// Session key.
    pub key: Vec<u8>,
    /// How long it is valid.
    pub valid_for: Duration,
}

struct Session {
    address: SocketAddr,
    id: [u8; SESSION_ID_BYTES],
    key: ChannelKey,
    renew_at: Instant,
}

/// Connections of one client to one server's bulk channel.
pub struct BulkChannel {
    host: String,
    session: tokio::sync::Mutex<Option<std::sync::Arc<Session>>>,
    idle: Mutex<Vec<TcpStream>>,
    connections: Semaphore,
    fetched: AtomicU64,
    stored: AtomicU64,
}

/// Why a fetch over the bulk channel failed.
pub enum BulkError {
    /// The server answered with this error (the chunk is missing, the caller may not read it).
    Server(NamespaceError),
    /// The channel itself failed (connection, session); the frame may still come over TLS.
    Channel(NamespaceError),
}

fn channel_error(what: &str, error: impl std::fmt::Display) -> BulkError {
    BulkError::Channel(NamespaceError::new(
        ErrorKind::Unavailable,
        format!("bulk channel: {what}: {error}"),
    ))
}

impl BulkChannel {
    /// A channel to the bulk port of `host` (the host the TLS service was reached at).
    pub fn new(host: &str) -> Self {
        BulkChannel {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            session: tokio::sync::Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            connections: Semaphore::new(CONNECTIONS_MAX),
            fetched: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        }
    }

    /// Frames fetched over this channel so far.
    pub fn frames_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Frames stored over this channel so far.
    pub fn frames_stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// The sealed frame of chunk `id`. `grant` asks the server for a session over TLS when
    /// there is none yet, it is about to expire, or the server no longer knows it.
    pub async fn get_chunk<F, Fut>(&self, id: ChunkId, grant: F) -> Result<Bytes, BulkError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<BulkGrant, NamespaceError>>,
    {
        let frame = self
            .call(OP_GET_CHUNK, id, None, FRAME_BYTES_MAX, &grant)
            .await?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        Ok(frame)
    }

    /// Stores the sealed `frame` of chunk `id` (the server verifies it as it does over TLS);
    /// `true` if the server had it already.
    pub async fn put_chunk<F, Fut>(
        &self,
        id: ChunkId,
        frame: &Bytes,
        grant: F,
    ) -> Result<bool, BulkError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<BulkGrant, NamespaceError>>,
    {
        let reply = self.call(OP_PUT_CHUNK, id, Some(frame), 1, &grant).await?;
        self.stored.fetch_add(1, Ordering::Relaxed);
        Ok(reply.first() == Some(&1))
    }

    /// One request: on an idle connection if there is one, else (or if that one turns out
    /// closed) on a new connection. Both operations are idempotent (content-addressed), so a
    /// retry never does harm.
    async fn call<F, Fut>(
        &self,
        op: u8,
        id: ChunkId,
        body: Option<&Bytes>,
        reply_max: usize,
        grant: &F,
    ) -> Result<Bytes, BulkError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<BulkGrant, NamespaceError>>,
    {
        let _permit = self
            .connections
            .acquire()
            .await
            .map_err(|error| channel_error("closed", error))?;
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(tcp) = reused {
            match self.exchange(tcp, op, id, body, reply_max).await {
                Err(BulkError::Channel(_)) => {}
                done => return done,
            }
        }
        // A refused or failed connection may mean a restarted server (which forgot the session
        // and may listen on another port): one more try with a new session.
        let tcp = match self.connect(grant, false).await {
            Ok(tcp) => tcp,
            Err(_) => self.connect(grant, true).await?,
        };
        self.exchange(tcp, op, id, body, reply_max).await
    }

    /// Sends one request on `tcp` and reads the reply; a healthy connection goes back to the
    /// idle set.
    async fn exchange(
        &self,
        mut tcp: TcpStream,
        op: u8,
        id: ChunkId,
        body: Option<&Bytes>,
        reply_max: usize,
    ) -> Result<Bytes, BulkError> {
        let body: &[u8] = body.map_or(&[], |body| body.as_ref());
        let body_len =
            u32::try_from(body.len()).map_err(|_| channel_error("request", "body over 4 GiB"))?;
        let sent = async {
            tcp.write_all(&request_header(op, &id.0, body_len)).await?;
            tcp.write_all(body).await
        };
        sent.await
            .map_err(|error| channel_error("sending a request", error))?;
        let reply = read_reply(&mut tcp, reply_max).await?;
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tcp);
        Ok(reply)
    }

    /// A new connection that proved the session (a fresh one when `renew`).
    async fn connect<F, Fut>(&self, grant: &F, renew: bool) -> Result<TcpStream, BulkError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<BulkGrant, NamespaceError>>,
    {
        let session = self.session(grant, renew).await?;
        let mut tcp = TcpStream::connect(session.address)
            .await
            .map_err(|error| channel_error(&format!("connecting to {}", session.address), error))?;
        let _ = tcp.set_nodelay(true);
        let mut greeting = [0u8; MAGIC.len() + NONCE_BYTES];
        tcp.read_exact(&mut greeting)
            .await
            .map_err(|error| channel_error("reading the greeting", error))?;
        if &greeting[..MAGIC.len()] != MAGIC {
            return Err(channel_error("greeting", "not a Kiseki bulk channel"));
        }
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&greeting[MAGIC.len()..]);
        let mut hello = [0u8; CLIENT_HELLO_BYTES];
        hello[..SESSION_ID_BYTES].copy_from_slice(&session.id);
        hello[SESSION_ID_BYTES..]
            .copy_from_slice(&session.key.prove(&proof_context(&nonce, &session.id)));
        tcp.write_all(&hello)
            .await
            .map_err(|error| channel_error("sending the session proof", error))?;
        read_reply(&mut tcp, 0).await?;
        Ok(tcp)
    }

    async fn session<F, Fut>(
        &self,
        grant: &F,
        renew: bool,
    ) -> Result<std::sync::Arc<Session>, BulkError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<BulkGrant, NamespaceError>>,
    {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref() {
            if !renew && session.renew_at > Instant::now() {
                return Ok(std::sync::Arc::clone(session));
            }
        }
        let granted = grant().await.map_err(BulkError::Channel)?;
        let invalid = |what: &str| channel_error("session", what);
        let id: [u8; SESSION_ID_BYTES] = granted
            .session_id
            .as_slice()
            .try_into()
            .map_err(|_| invalid("session id of the wrong length"))?;
        let key =
            ChannelKey::from_bytes(&granted.key).map_err(|_| invalid("key of the wrong length"))?;
        let address = (self.host.as_str(), granted.port)
            .to_socket_addrs()
            .map_err(|error| channel_error(&format!("resolving {}", self.host), error))?
            .next()
            .ok_or_else(|| invalid("the server's host has no address"))?;
        let session = std::sync::Arc::new(Session {
            address,
            id,
            key,
            renew_at: Instant::now() + granted.valid_for.saturating_sub(SESSION_RENEW_MARGIN),
        });
        // Connections of the old session stay valid until the server forgets it.
        *current = Some(std::sync::Arc::clone(&session));
        Ok(session)
    }
}

/// Reads a reply: its payload when the status is OK (at most `payload_max` bytes), else the
/// server's error.
async fn read_reply(tcp: &mut TcpStream, payload_max: usize) -> Result<Bytes, BulkError> {
    let mut header = [0u8; REPLY_HEADER_BYTES];
    tcp.read_exact(&mut header)
        .await
        .map_err(|error| channel_error("reading a reply", error))?;
    let (status, len) = parse_reply_header(&header);
    let len = len as usize;
    if status == STATUS_OK {
        if len > payload_max {
            return Err(channel_error(
                "reply",
                format!("{len} bytes, more than {payload_max}"),
            ));
        }
        return read_payload(tcp, len)
            .await
            .map_err(|error| channel_error("reading a reply", error));
    }
    if len > ERROR_MESSAGE_BYTES_MAX {
        return Err(channel_error(
            "reply",
            format!("error message of {len} bytes"),
        ));
    }
    let message = read_payload(tcp, len)
        .await
        .map_err(|error| channel_error("reading a reply", error))?;
    Err(BulkError::Server(NamespaceError::new(
        kind_of(status),
        String::from_utf8_lossy(&message).into_owned(),
    )))
}
