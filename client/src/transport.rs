//! The transport between a native client and a `kiseki-server`: metadata calls that map one to
//! one onto the namespace API, and sealed chunk frames. [`GrpcTransport`] (tonic over TCP, TLS
//! with rustls unless plain TCP is asked for explicitly) is the first implementation;
//! libfabric/verbs transports implement the same trait later.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kiseki_chunk::FRAME_BYTES_MAX;
use kiseki_crypto::TenantKeyMaterial;
use kiseki_proto::namespace::v1 as wire;
use kiseki_proto::namespace::v1::native_service_client::NativeServiceClient;
use kiseki_proto::{
    attr_from_wire, chunk_id_from_wire, extent_from_wire, extent_to_wire, frame_pieces,
    kind_from_wire, status_namespace_error, tenant_key_material, FrameAssembler,
    FrameAssemblyError, ACCESS_KEY_HEADER, H2_FRAME_BYTES_MAX, NATIVE_MESSAGE_BYTES_MAX,
    NATIVE_PROTOCOL_VERSION, SECRET_KEY_HEADER,
};
use kiseki_types::{
    Attributes, ChunkId, ErrorKind, Extent, FileKind, InodeId, NamespaceError, TenantId, Timestamp,
};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::bulk::{BulkChannel, BulkError, BulkGrant};

/// Result of a namespace or transport call.
pub type Result<T> = std::result::Result<T, NamespaceError>;

/// A POSIX special file kept as an empty file: `S_IFMT` bits (0 for none) and device number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Special {
    /// `S_IFIFO`, `S_IFSOCK`, `S_IFCHR`, `S_IFBLK`, or 0.
    pub file_type: u32,
    /// Device number of a device node.
    pub rdev: u64,
}

/// A node and its attributes as the server reported them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node.
    pub inode: InodeId,
    /// Its attributes.
    pub attrs: Attributes,
    /// Special-file type, if any.
    pub special: Special,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Name.
    pub name: String,
    /// Node.
    pub inode: InodeId,
    /// Kind.
    pub kind: FileKind,
    /// Cursor to continue after this entry.
    pub cursor: String,
    /// Its attributes, when the listing carried them (one round trip for `ls -l`).
    pub node: Option<Node>,
}

/// The extents of a byte range of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// File size.
    pub size: u64,
    /// Extents in file order, clipped to the range asked for.
    pub extents: Vec<Extent>,
    /// Whether the server stopped early (ask again after the last extent).
    pub truncated: bool,
}

/// What opening a file brought back.
#[derive(Clone, Debug)]
pub struct Opened {
    /// Fresh attributes.
    pub node: Node,
    /// The layout of the window asked for, if the server sent it.
    pub layout: Option<Layout>,
    /// The sealed frame of a small file's one chunk, if the server sent it.
    pub inline: Option<(ChunkId, Bytes)>,
}

/// File-system figures for `statfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Bytes in total.
    pub total_bytes: u64,
    /// Bytes free.
    pub free_bytes: u64,
    /// Nodes in use.
    pub files: u64,
    /// Nodes still available.
    pub files_free: u64,
}

/// What the server said about this session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The tenant the credentials act for.
    pub tenant: TenantId,
    /// Bytes per data chunk.
    pub chunk_size: u32,
}

/// Attribute changes; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrUpdate {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Access time.
    pub atime: Option<Timestamp>,
    /// Modification time.
    pub mtime: Option<Timestamp>,
}

/// How a new node is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewNode {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The calls a native client makes to a storage server.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Session facts: tenant and chunk size.
    async fn hello(&self) -> Result<SessionInfo>;
    /// The tenant's key material (so chunks are sealed and opened here).
    async fn tenant_keys(&self, tenant: TenantId) -> Result<TenantKeyMaterial>;
    /// The node named `name` in `parent`.
    async fn lookup(&self, parent: InodeId, name: &str) -> Result<Node>;
    /// A node's attributes.
    async fn getattr(&self, inode: InodeId) -> Result<Node>;
    /// Changes attributes.
    async fn setattr(&self, inode: InodeId, update: AttrUpdate) -> Result<Node>;
    /// Up to `limit` entries after `after`, with their attributes where the server has them.
    async fn read_dir(&self, dir: InodeId, after: &str, limit: u32) -> Result<Vec<DirEntry>>;
    /// Creates a file (or a special file).
    async fn create(
        &self,
        parent: InodeId,
        name: &str,
        new: NewNode,
        exclusive: bool,
        special: Special,
    ) -> Result<Node>;
    /// Creates a directory.
    async fn mkdir(&self, parent: InodeId, name: &str, new: NewNode) -> Result<Node>;
    /// Creates a symlink.
    async fn symlink(
        &self,
        parent: InodeId,
        name: &str,
        target: &str,
        new: NewNode,
    ) -> Result<Node>;
    /// A symlink's target.
    async fn read_link(&self, inode: InodeId) -> Result<String>;
    /// Adds a hard link.
    async fn link(&self, inode: InodeId, new_parent: InodeId, new_name: &str) -> Result<Node>;
    /// Removes a non-directory name.
    async fn unlink(&self, parent: InodeId, name: &str) -> Result<()>;
    /// Removes an empty directory.
    async fn rmdir(&self, parent: InodeId, name: &str) -> Result<()>;
    /// Renames atomically.
    async fn rename(
        &self,
        from_parent: InodeId,
        from_name: &str,
        to_parent: InodeId,
        to_name: &str,
        no_replace: bool,
    ) -> Result<()>;
    /// Cuts or extends a file.
    async fn truncate(&self, inode: InodeId, size: u64) -> Result<Node>;
    /// Commits extents of stored chunks at `offset`, or at the end with `append`.
    async fn write(
        &self,
        inode: InodeId,
        offset: u64,
        extents: Vec<Extent>,
        append: bool,
    ) -> Result<Node>;
    /// The extents of a byte range.
    async fn layout(&self, inode: InodeId, offset: u64, len: u64) -> Result<Layout>;
    /// Opens a file: fresh attributes and, for a reader (`layout_len` > 0), the layout of
    /// `[0, layout_len)` and the sealed frame of a file of at most `inline_max` bytes held in
    /// one chunk, in one round trip where the transport can.
    async fn open(&self, inode: InodeId, layout_len: u64, inline_max: u32) -> Result<Opened> {
        let _ = (layout_len, inline_max);
        Ok(Opened {
            node: self.getattr(inode).await?,
            layout: None,
            inline: None,
        })
    }
    /// User metadata of a node.
    async fn metadata(&self, inode: InodeId) -> Result<BTreeMap<String, Vec<u8>>>;
    /// Sets or removes one user metadata entry.
    async fn set_metadata(&self, inode: InodeId, key: &str, value: Option<Vec<u8>>) -> Result<()>;
    /// File-system figures.
    async fn statfs(&self) -> Result<FsStats>;
    /// Stores a sealed chunk frame; `true` if the server already had it.
    async fn put_chunk(&self, id: ChunkId, frame: Bytes) -> Result<bool>;
    /// A sealed chunk frame.
    async fn get_chunk(&self, id: ChunkId) -> Result<Bytes>;
    /// A sealed chunk frame fetched again inside TLS, with its body's checksum checked by the
    /// server first: the second attempt after a frame failed to open. It tells a copy damaged
    /// on the server's disk (an error here, counted by the server) from one damaged on its way.
    async fn get_chunk_checked(&self, id: ChunkId) -> Result<Bytes>;
    /// Stores a sealed chunk and commits it as `extent` of `inode` (a positional write), in
    /// one round trip where the transport can.
    async fn put_chunk_and_write(
        &self,
        frame: Bytes,
        inode: InodeId,
        extent: Extent,
    ) -> Result<Node> {
        self.put_chunk(extent.chunk, frame).await?;
        self.write(inode, 0, vec![extent], false).await
    }
}

/// A client certificate and its key (PEM), presented for mutual TLS: the server takes the
/// tenant and workload from its SAN.
#[derive(Clone)]
pub struct ClientCertificate {
    /// PEM certificate (chain), leaf first.
    pub cert_pem: Vec<u8>,
    /// PEM private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// How a [`GrpcTransport`] protects its channel.
#[derive(Clone, Debug)]
pub enum ChannelSecurity {
    /// TLS (rustls, aws-lc-rs), trusting only the CA certificates in `ca_pem` and checking that
    /// the server's certificate names `server_name` (default: the host of the endpoint URL);
    /// mutual when `client_cert` is given.
    Tls {
        /// PEM CA certificates to trust.
        ca_pem: Vec<u8>,
        /// Name the server certificate must carry, if not the endpoint's host.
        server_name: Option<String>,
        /// The client's own certificate, if it has one.
        client_cert: Option<ClientCertificate>,
    },
    /// Plain TCP: the access key and all metadata cross the network readable (tests only).
    InsecurePlaintext,
}

/// How a [`GrpcTransport`] connects.
#[derive(Clone, Debug)]
pub struct GrpcOptions {
    /// Server address: `https://127.0.0.1:9200` (TLS) or `http://...` (plaintext).
    pub endpoint: String,
    /// TLS settings, or explicitly none.
    pub security: ChannelSecurity,
    /// The tenant access key (id, secret); optional with a client certificate.
    pub access_key: Option<(String, String)>,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for one call; a stopped server fails calls within this bound.
    pub request_timeout: Duration,
    /// Fetch chunk frames over the server's bulk channel (sealed frames on plain TCP, see
    /// `kiseki_proto::bulk`) when it runs one; otherwise, and when this is off, inside TLS.
    pub bulk: bool,
}

/// The gRPC (tonic over TCP) transport.
#[derive(Clone)]
pub struct GrpcTransport {
    client: NativeServiceClient<Channel>,
    /// Connections of their own for chunk frames: bulk transfers spread over several TLS
    /// connections (and so over cores on both ends) and do not queue metadata calls.
    data: Vec<NativeServiceClient<Channel>>,
    next_data: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    access_key: Option<AccessKeyHeaders>,
    /// The bulk channel, until the server says it runs none.
    bulk: Option<std::sync::Arc<BulkChannel>>,
    bulk_offered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    request_timeout: Duration,
}

/// The access key as call metadata.
#[derive(Clone)]
struct AccessKeyHeaders {
    id: MetadataValue<tonic::metadata::Ascii>,
    secret: MetadataValue<tonic::metadata::Ascii>,
}

fn error(status: Status) -> NamespaceError {
    status_namespace_error(&status)
}

fn layout_from_wire(reply: wire::LayoutResponse) -> Result<Layout> {
    let extents = reply
        .extents
        .iter()
        .map(extent_from_wire)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            NamespaceError::new(ErrorKind::Corrupt, "layout with a malformed chunk id")
        })?;
    Ok(Layout {
        size: reply.size,
        extents,
        truncated: reply.truncated,
    })
}

fn node(reply: wire::NodeReply) -> Result<Node> {
    let attr = reply
        .attr
        .ok_or_else(|| NamespaceError::new(ErrorKind::Unavailable, "reply without attributes"))?;
    let (inode, attrs) = attr_from_wire(&attr);
    Ok(Node {
        inode,
        attrs,
        special: Special {
            file_type: attr.special_type,
            rdev: attr.rdev,
        },
    })
}

/// Connections for chunk frames, besides the one for metadata.
const DATA_CONNECTIONS: usize = 2;

impl GrpcTransport {
    /// A transport to `options.endpoint`; connects on first use (inside a Tokio runtime).
    pub fn connect_lazy(options: &GrpcOptions) -> Result<Self> {
        let invalid = |what: &str| NamespaceError::new(ErrorKind::InvalidArgument, what.to_owned());
        let endpoint = Endpoint::from_shared(options.endpoint.clone())
            .map_err(|e| invalid(&format!("invalid server address {}: {e}", options.endpoint)))?;
        let endpoint = secure(endpoint, &options.endpoint, &options.security)?
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(options.request_timeout)
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            // Room for the read-ahead's chunk frames (several 4 MiB chunks) in flight at once.
            .initial_connection_window_size(Some(64 * 1024 * 1024))
            // Chunk frames arrive in 1 MiB HTTP/2 frames rather than 16 KiB ones: a 4 MiB chunk
            // costs 4 frames to parse and wake on, not 256.
            .max_frame_size(Some(H2_FRAME_BYTES_MAX));
        let connect = || {
            NativeServiceClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(NATIVE_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(NATIVE_MESSAGE_BYTES_MAX)
        };
        let client = connect();
        let data = (0..DATA_CONNECTIONS).map(|_| connect()).collect();
        let bulk = match endpoint.uri().host() {
            Some(host) if options.bulk => Some(std::sync::Arc::new(BulkChannel::new(host))),
            _ => None,
        };
        Ok(GrpcTransport {
            client,
            data,
            next_data: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            bulk,
            bulk_offered: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            request_timeout: options.request_timeout,
            access_key: match &options.access_key {
                Some((id, secret)) => Some(AccessKeyHeaders {
                    id: id.parse().map_err(|_| invalid("access key is not ASCII"))?,
                    secret: secret
                        .parse()
                        .map_err(|_| invalid("secret key is not ASCII"))?,
                }),
                None => None,
            },
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(key) = &self.access_key {
            request
                .metadata_mut()
                .insert(ACCESS_KEY_HEADER, key.id.clone());
            request
                .metadata_mut()
                .insert(SECRET_KEY_HEADER, key.secret.clone());
        }
        request
    }

    fn client(&self) -> NativeServiceClient<Channel> {
        self.client.clone()
    }

    fn data_client(&self) -> NativeServiceClient<Channel> {
        let next = self
            .next_data
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.data[next % self.data.len()].clone()
    }

    /// Chunk frames this transport fetched over the bulk channel (the rest came inside TLS).
    pub fn bulk_frames_fetched(&self) -> u64 {
        self.bulk.as_ref().map_or(0, |bulk| bulk.frames_fetched())
    }

    /// A bulk channel session, granted over TLS (UNIMPLEMENTED when the server runs none).
    pub async fn open_bulk_session(&self) -> Result<BulkGrant> {
        let session = self
            .client()
            .open_bulk_session(self.request(wire::Empty {}))
            .await
            .map_err(|status| {
                if status.code() == tonic::Code::Unimplemented {
                    self.bulk_offered
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
                error(status)
            })?
            .into_inner();
        Ok(BulkGrant {
            port: u16::try_from(session.port).map_err(|_| {
                NamespaceError::new(ErrorKind::Unavailable, "bulk channel port out of range")
            })?,
            session_id: session.session_id,
            key: session.key,
            valid_for: Duration::from_millis(session.valid_for_ms),
        })
    }

    /// The bulk channel, unless there is none to use (then chunk frames travel inside TLS).
    fn usable_bulk(&self) -> Option<&BulkChannel> {
        let bulk = self.bulk.as_deref()?;
        self.bulk_offered
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(bulk)
    }

    /// The outcome of a bulk channel call within the request timeout; `None` when the channel
    /// itself failed (the call is then made inside TLS).
    async fn over_bulk<T>(
        &self,
        id: ChunkId,
        call: impl std::future::Future<Output = std::result::Result<T, BulkError>>,
    ) -> Option<Result<T>> {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(value)) => Some(Ok(value)),
            Ok(Err(BulkError::Server(error))) => Some(Err(error)),
            Ok(Err(BulkError::Channel(error))) => {
                if self.bulk_offered.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(chunk = %id, %error, "bulk channel failed; using TLS");
                }
                None
            }
            Err(_) => Some(Err(NamespaceError::new(
                ErrorKind::Unavailable,
                format!("chunk {id}: no reply within {:?}", self.request_timeout),
            ))),
        }
    }

    /// Chunk frames this transport stored over the bulk channel.
    pub fn bulk_frames_stored(&self) -> u64 {
        self.bulk.as_ref().map_or(0, |bulk| bulk.frames_stored())
    }

    /// Streams a chunk frame in pieces; `commit` rides on the first.
    async fn put_chunk_pieces(
        &self,
        id: ChunkId,
        frame: Bytes,
        commit: Option<wire::ChunkCommit>,
    ) -> Result<wire::PutChunkResponse> {
        let frame_len = frame.len() as u64;
        let mut commit = commit;
        let pieces: Vec<wire::ChunkPiece> = frame_pieces(&frame)
            .enumerate()
            .map(|(index, data)| {
                let first = index == 0;
                wire::ChunkPiece {
                    chunk_id: if first { id.0.to_vec() } else { Vec::new() },
                    frame_len: if first { frame_len } else { 0 },
                    data,
                    commit: commit.take(),
                }
            })
            .collect();
        let request = self.request(futures::stream::iter(pieces));
        Ok(self
            .data_client()
            .put_chunk(request)
            .await
            .map_err(error)?
            .into_inner())
    }
}

/// Applies `security` to `endpoint`; the URL scheme must agree with it, so a typo never
/// downgrades the channel to plaintext silently.
fn secure(endpoint: Endpoint, url: &str, security: &ChannelSecurity) -> Result<Endpoint> {
    let invalid = |what: String| NamespaceError::new(ErrorKind::InvalidArgument, what);
    match security {
        ChannelSecurity::Tls {
            ca_pem,
            server_name,
            client_cert,
        } => {
            if !url.starts_with("https://") {
                return Err(invalid(format!(
                    "server address {url} is not https:// (TLS); plaintext needs the explicit \
                     insecure-plaintext option"
                )));
            }
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
            if let Some(name) = server_name {
                tls = tls.domain_name(name.clone());
            }
            if let Some(cert) = client_cert {
                tls = tls.identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
            }
            endpoint
                .tls_config(tls)
                .map_err(|e| invalid(format!("TLS settings for {url}: {e}")))
        }
        ChannelSecurity::InsecurePlaintext => {
            if !url.starts_with("http://") {
                return Err(invalid(format!(
                    "server address {url} is not http:// but plaintext was asked for"
                )));
            }
            Ok(endpoint)
        }
    }
}

fn create_request(
    parent: InodeId,
    name: &str,
    new: NewNode,
    exclusive: bool,
    special: Special,
) -> wire::CreateRequest {
    wire::CreateRequest {
        parent: parent.0,
        name: name.to_owned(),
        mode: new.mode,
        uid: new.uid,
        gid: new.gid,
        exclusive,
        special_type: special.file_type,
        rdev: special.rdev,
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    async fn hello(&self) -> Result<SessionInfo> {
        let request = self.request(wire::HelloRequest {
            protocol_version: NATIVE_PROTOCOL_VERSION,
        });
        let reply = self
            .client()
            .hello(request)
            .await
            .map_err(error)?
            .into_inner();
        Ok(SessionInfo {
            tenant: TenantId(reply.tenant_id),
            chunk_size: reply.chunk_size_bytes,
        })
    }

    async fn tenant_keys(&self, tenant: TenantId) -> Result<TenantKeyMaterial> {
        let reply = self
            .client()
            .get_tenant_keys(self.request(wire::GetTenantKeysRequest {}))
            .await
            .map_err(error)?;
        tenant_key_material(tenant, reply.into_inner())
            .map_err(|e| NamespaceError::new(ErrorKind::Unavailable, format!("tenant keys: {e}")))
    }

    async fn lookup(&self, parent: InodeId, name: &str) -> Result<Node> {
        let request = self.request(wire::LookupRequest {
            parent: parent.0,
            name: name.to_owned(),
        });
        node(
            self.client()
                .lookup(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn getattr(&self, inode: InodeId) -> Result<Node> {
        node(
            self.client()
                .get_attr(self.request(wire::InodeRequest { inode: inode.0 }))
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn setattr(&self, inode: InodeId, update: AttrUpdate) -> Result<Node> {
        let request = self.request(wire::SetAttrRequest {
            inode: inode.0,
            mode: update.mode,
            uid: update.uid,
            gid: update.gid,
            atime_ns: update.atime.map(|time| time.0),
            mtime_ns: update.mtime.map(|time| time.0),
        });
        node(
            self.client()
                .set_attr(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn read_dir(&self, dir: InodeId, after: &str, limit: u32) -> Result<Vec<DirEntry>> {
        let request = self.request(wire::ReadDirRequest {
            dir: dir.0,
            after: after.to_owned(),
            limit,
            with_attrs: true,
        });
        let reply = self
            .client()
            .read_dir(request)
            .await
            .map_err(error)?
            .into_inner();
        Ok(reply
            .entries
            .into_iter()
            .map(|entry| DirEntry {
                node: entry
                    .attr
                    .map(|attr| node(wire::NodeReply { attr: Some(attr) }))
                    .and_then(Result::ok),
                name: entry.name,
                inode: InodeId(entry.inode),
                kind: kind_from_wire(entry.kind),
                cursor: entry.cursor,
            })
            .collect())
    }

    async fn create(
        &self,
        parent: InodeId,
        name: &str,
        new: NewNode,
        exclusive: bool,
        special: Special,
    ) -> Result<Node> {
        let request = self.request(create_request(parent, name, new, exclusive, special));
        node(
            self.client()
                .create(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn mkdir(&self, parent: InodeId, name: &str, new: NewNode) -> Result<Node> {
        let request = self.request(create_request(parent, name, new, true, Special::default()));
        node(
            self.client()
                .mkdir(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn symlink(
        &self,
        parent: InodeId,
        name: &str,
        target: &str,
        new: NewNode,
    ) -> Result<Node> {
        let request = self.request(wire::SymlinkRequest {
            parent: parent.0,
            name: name.to_owned(),
            target: target.to_owned(),
            uid: new.uid,
            gid: new.gid,
        });
        node(
            self.client()
                .symlink(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn read_link(&self, inode: InodeId) -> Result<String> {
        let reply = self
            .client()
            .read_link(self.request(wire::InodeRequest { inode: inode.0 }))
            .await
            .map_err(error)?;
        Ok(reply.into_inner().target)
    }

    async fn link(&self, inode: InodeId, new_parent: InodeId, new_name: &str) -> Result<Node> {
        let request = self.request(wire::LinkRequest {
            inode: inode.0,
            new_parent: new_parent.0,
            new_name: new_name.to_owned(),
        });
        node(
            self.client()
                .link(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn unlink(&self, parent: InodeId, name: &str) -> Result<()> {
        let request = self.request(wire::NameRequest {
            parent: parent.0,
            name: name.to_owned(),
        });
        self.client().unlink(request).await.map_err(error).map(drop)
    }

    async fn rmdir(&self, parent: InodeId, name: &str) -> Result<()> {
        let request = self.request(wire::NameRequest {
            parent: parent.0,
            name: name.to_owned(),
        });
        self.client().rmdir(request).await.map_err(error).map(drop)
    }

    async fn rename(
        &self,
        from_parent: InodeId,
        from_name: &str,
        to_parent: InodeId,
        to_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        let request = self.request(wire::RenameRequest {
            from_parent: from_parent.0,
            from_name: from_name.to_owned(),
            to_parent: to_parent.0,
            to_name: to_name.to_owned(),
            no_replace,
        });
        self.client().rename(request).await.map_err(error).map(drop)
    }

    async fn truncate(&self, inode: InodeId, size: u64) -> Result<Node> {
        let request = self.request(wire::TruncateRequest {
            inode: inode.0,
            size,
        });
        node(
            self.client()
                .truncate(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn write(
        &self,
        inode: InodeId,
        offset: u64,
        extents: Vec<Extent>,
        append: bool,
    ) -> Result<Node> {
        let request = self.request(wire::WriteRequest {
            inode: inode.0,
            extents: extents.iter().map(extent_to_wire).collect(),
            offset,
            append,
        });
        node(
            self.client()
                .write(request)
                .await
                .map_err(error)?
                .into_inner(),
        )
    }

    async fn layout(&self, inode: InodeId, offset: u64, len: u64) -> Result<Layout> {
        let request = self.request(wire::LayoutRequest {
            inode: inode.0,
            offset,
            len,
        });
        let reply = self
            .client()
            .layout(request)
            .await
            .map_err(error)?
            .into_inner();
        layout_from_wire(reply)
    }

    async fn open(&self, inode: InodeId, layout_len: u64, inline_max: u32) -> Result<Opened> {
        let request = self.request(wire::OpenRequest {
            inode: inode.0,
            layout_len,
            inline_file_bytes_max: inline_max,
        });
        let reply = self
            .client()
            .open(request)
            .await
            .map_err(error)?
            .into_inner();
        let inline = match chunk_id_from_wire(&reply.inline_chunk_id) {
            Some(id) if !reply.inline_frame.is_empty() => {
                Some((id, Bytes::from(reply.inline_frame)))
            }
            _ => None,
        };
        Ok(Opened {
            node: node(wire::NodeReply { attr: reply.attr })?,
            layout: reply.layout.map(layout_from_wire).transpose()?,
            inline,
        })
    }

    async fn metadata(&self, inode: InodeId) -> Result<BTreeMap<String, Vec<u8>>> {
        let reply = self
            .client()
            .get_metadata(self.request(wire::InodeRequest { inode: inode.0 }))
            .await
            .map_err(error)?;
        Ok(reply
            .into_inner()
            .entries
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect())
    }

    async fn set_metadata(&self, inode: InodeId, key: &str, value: Option<Vec<u8>>) -> Result<()> {
        let request = self.request(wire::SetMetadataRequest {
            inode: inode.0,
            key: key.to_owned(),
            value,
        });
        self.client()
            .set_metadata(request)
            .await
            .map_err(error)
            .map(drop)
    }

    async fn statfs(&self) -> Result<FsStats> {
        let reply = self
            .client()
            .stat_fs(self.request(wire::Empty {}))
            .await
            .map_err(error)?
            .into_inner();
        Ok(FsStats {
            total_bytes: reply.total_bytes,
            free_bytes: reply.free_bytes,
            files: reply.files,
            files_free: reply.files_free,
        })
    }

    async fn put_chunk(&self, id: ChunkId, frame: Bytes) -> Result<bool> {
        if let Some(bulk) = self.usable_bulk() {
            let grant = || self.open_bulk_session();
            if let Some(stored) = self.over_bulk(id, bulk.put_chunk(id, &frame, grant)).await {
                return stored;
            }
        }
        Ok(self.put_chunk_pieces(id, frame, None).await?.deduplicated)
    }

    async fn put_chunk_and_write(
        &self,
        frame: Bytes,
        inode: InodeId,
        extent: Extent,
    ) -> Result<Node> {
        let commit = wire::ChunkCommit {
            inode: inode.0,
            file_offset: extent.file_offset,
            len: extent.len,
        };
        let reply = self
            .put_chunk_pieces(extent.chunk, frame, Some(commit))
            .await?;
        node(wire::NodeReply { attr: reply.attr })
    }

    async fn get_chunk(&self, id: ChunkId) -> Result<Bytes> {
        if let Some(bulk) = self.usable_bulk() {
            let grant = || self.open_bulk_session();
            if let Some(fetched) = self.over_bulk(id, bulk.get_chunk(id, grant)).await {
                return fetched;
            }
        }
        self.get_chunk_over_tls(id, false).await
    }

    async fn get_chunk_checked(&self, id: ChunkId) -> Result<Bytes> {
        self.get_chunk_over_tls(id, true).await
    }
}

impl GrpcTransport {
    /// A frame inside TLS, its body's checksum checked by the server when `verify`.
    async fn get_chunk_over_tls(&self, id: ChunkId, verify: bool) -> Result<Bytes> {
        let request = self.request(wire::GetChunkRequest {
            chunk_id: id.0.to_vec(),
            verify,
        });
        let mut stream = self
            .data_client()
            .get_chunk(request)
            .await
            .map_err(error)?
            .into_inner();
        let corrupt = |error: FrameAssemblyError| {
            NamespaceError::new(ErrorKind::Corrupt, format!("chunk {id}: {error}"))
        };
        let mut frame: Option<FrameAssembler> = None;
        while let Some(piece) = stream.message().await.map_err(error)? {
            let assembler = match &mut frame {
                Some(assembler) => assembler,
                None => frame.insert(
                    FrameAssembler::new(piece.frame_len, FRAME_BYTES_MAX).map_err(corrupt)?,
                ),
            };
            assembler.push(piece.data).map_err(corrupt)?;
        }
        match frame {
            Some(assembler) => assembler.finish().map_err(corrupt),
            None => Err(NamespaceError::new(
                ErrorKind::Corrupt,
                format!("chunk {id}: empty reply"),
            )),
        }
    }
}

/// Calls a client made to its server, by kind (what `kiseki status` shows as "requests").
#[derive(Debug, Default)]
pub struct RequestCounts {
    metadata: std::sync::atomic::AtomicU64,
    chunk_gets: std::sync::atomic::AtomicU64,
    chunk_puts: std::sync::atomic::AtomicU64,
}

/// A copy of [`RequestCounts`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCountsSnapshot {
    /// Namespace calls (lookup, getattr, listings, layouts, writes, ...).
    pub metadata: u64,
    /// Chunk frames fetched.
    pub chunk_gets: u64,
    /// Chunk frames stored.
    pub chunk_puts: u64,
}

impl RequestCountsSnapshot {
    /// Every call.
    pub fn total(&self) -> u64 {
        self.metadata + self.chunk_gets + self.chunk_puts
    }
}

impl RequestCounts {
    fn bump(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> RequestCountsSnapshot {
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        RequestCountsSnapshot {
            metadata: load(&self.metadata),
            chunk_gets: load(&self.chunk_gets),
            chunk_puts: load(&self.chunk_puts),
        }
    }
}

/// A [`Transport`] that counts every call it passes on to `inner`.
pub struct CountingTransport {
    inner: std::sync::Arc<dyn Transport>,
    counts: std::sync::Arc<RequestCounts>,
}

impl CountingTransport {
    /// Wraps `inner`; the counts are shared with whoever holds the returned `Arc`.
    pub fn new(inner: std::sync::Arc<dyn Transport>) -> (Self, std::sync::Arc<RequestCounts>) {
        let counts = std::sync::Arc::new(RequestCounts::default());
        (
            CountingTransport {
                inner,
                counts: std::sync::Arc::clone(&counts),
            },
            counts,
        )
    }

    fn metadata_call(&self) -> &dyn Transport {
        RequestCounts::bump(&self.counts.metadata);
        &*self.inner
    }
}

#[async_trait]
impl Transport for CountingTransport {
    async fn hello(&self) -> Result<SessionInfo> {
        self.metadata_call().hello().await
    }
    async fn tenant_keys(&self, tenant: TenantId) -> Result<TenantKeyMaterial> {
        self.metadata_call().tenant_keys(tenant).await
    }
    async fn lookup(&self, parent: InodeId, name: &str) -> Result<Node> {
        self.metadata_call().lookup(parent, name).await
    }
    async fn getattr(&self, inode: InodeId) -> Result<Node> {
        self.metadata_call().getattr(inode).await
    }
    async fn setattr(&self, inode: InodeId, update: AttrUpdate) -> Result<Node> {
        self.metadata_call().setattr(inode, update).await
    }
    async fn read_dir(&self, dir: InodeId, after: &str, limit: u32) -> Result<Vec<DirEntry>> {
        self.metadata_call().read_dir(dir, after, limit).await
    }
    async fn create(
        &self,
        parent: InodeId,
        name: &str,
        new: NewNode,
        exclusive: bool,
        special: Special,
    ) -> Result<Node> {
        self.metadata_call()
            .create(parent, name, new, exclusive, special)
            .await
    }
    async fn mkdir(&self, parent: InodeId, name: &str, new: NewNode) -> Result<Node> {
        self.metadata_call().mkdir(parent, name, new).await
    }
    async fn symlink(
        &self,
        parent: InodeId,
        name: &str,
        target: &str,
        new: NewNode,
    ) -> Result<Node> {
        self.metadata_call()
            .symlink(parent, name, target, new)
            .await
    }
    async fn read_link(&self, inode: InodeId) -> Result<String> {
        self.metadata_call().read_link(inode).await
    }
    async fn link(&self, inode: InodeId, new_parent: InodeId, new_name: &str) -> Result<Node> {
        self.metadata_call().link(inode, new_parent, new_name).await
    }
    async fn unlink(&self, parent: InodeId, name: &str) -> Result<()> {
        self.metadata_call().unlink(parent, name).await
    }
    async fn rmdir(&self, parent: InodeId, name: &str) -> Result<()> {
        self.metadata_call().rmdir(parent, name).await
    }
    async fn rename(
        &self,
        from_parent: InodeId,
        from_name: &str,
        to_parent: InodeId,
        to_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        self.metadata_call()
            .rename(from_parent, from_name, to_parent, to_name, no_replace)
            .await
    }
    async fn truncate(&self, inode: InodeId, size: u64) -> Result<Node> {
        self.metadata_call().truncate(inode, size).await
    }
    async fn write(
        &self,
        inode: InodeId,
        offset: u64,
        extents: Vec<Extent>,
        append: bool,
    ) -> Result<Node> {
        self.metadata_call()
            .write(inode, offset, extents, append)
            .await
    }
    async fn layout(&self, inode: InodeId, offset: u64, len: u64) -> Result<Layout> {
        self.metadata_call().layout(inode, offset, len).await
    }
    async fn open(&self, inode: InodeId, layout_len: u64, inline_max: u32) -> Result<Opened> {
        self.metadata_call()
            .open(inode, layout_len, inline_max)
            .await
    }
    async fn metadata(&self, inode: InodeId) -> Result<BTreeMap<String, Vec<u8>>> {
        self.metadata_call().metadata(inode).await
    }
    async fn set_metadata(&self, inode: InodeId, key: &str, value: Option<Vec<u8>>) -> Result<()> {
        self.metadata_call().set_metadata(inode, key, value).await
    }
    async fn statfs(&self) -> Result<FsStats> {
        self.metadata_call().statfs().await
    }
    async fn put_chunk(&self, id: ChunkId, frame: Bytes) -> Result<bool> {
        RequestCounts::bump(&self.counts.chunk_puts);
        self.inner.put_chunk(id, frame).await
    }
    async fn get_chunk(&self, id: ChunkId) -> Result<Bytes> {
        RequestCounts::bump(&self.counts.chunk_gets);
        self.inner.get_chunk(id).await
    }
    async fn get_chunk_checked(&self, id: ChunkId) -> Result<Bytes> {
        RequestCounts::bump(&self.counts.chunk_gets);
        self.inner.get_chunk_checked(id).await
    }
    async fn put_chunk_and_write(
        &self,
        frame: Bytes,
        inode: InodeId,
        extent: Extent,
    ) -> Result<Node> {
        RequestCounts::bump(&self.counts.chunk_puts);
        self.inner.put_chunk_and_write(frame, inode, extent).await
    }
}
