//! The native client service (`kiseki.namespace.v1.NativeService`): the server side of the
//! transport `kiseki-client-fuse` uses. Each metadata call is one `TenantNamespace` call; chunk
//! frames arrive and leave sealed (the client seals and opens them), so plaintext never crosses
//! the network.
//!
//! Transport security: TLS (rustls, see `tls.rs` and `accept.rs`) unless plain TCP is
//! explicitly configured.
//! Clients authenticate with a client certificate of the cluster CA (mutual TLS; the tenant is
//! in its SAN) or with an access key inside the TLS channel (see `auth.rs`).

mod accept;
mod auth;
pub mod bulk;
mod client_cert;
pub mod keys;
pub mod request_metrics;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use kiseki_chunk::FRAME_BYTES_MAX;
use kiseki_namespace::{AttrChanges, Namespace, Owner, TenantNamespace, POSIX_SPECIAL_KEY};
use kiseki_proto::namespace::v1 as wire;
use kiseki_proto::namespace::v1::native_service_server::{NativeService, NativeServiceServer};
use kiseki_proto::{
    attr_to_wire, chunk_id_from_wire, extent_from_wire, extent_to_wire, frame_pieces, kind_to_wire,
    namespace_error_status, FrameAssembler, FrameAssemblyError, LAYOUT_EXTENTS_MAX,
    NATIVE_MESSAGE_BYTES_MAX, NATIVE_PROTOCOL_VERSION, READDIR_ENTRIES_MAX,
};
use kiseki_types::{ChunkId, ErrorKind, Extent, InodeId, NamespaceError, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use self::auth::Authenticator;
use self::keys::KeyMaterialSource;
use self::tls::NativeSecurity;
use crate::cluster::tls::ClientIdentity;

/// Most calls in flight on one connection.
const REQUESTS_PER_CONNECTION_MAX: usize = 256;
/// Largest file whose chunk frame an `Open` reply carries.
const INLINE_FILE_BYTES_MAX: u64 = 1 << 20;
/// Longest time one call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the native service serves from.
pub struct NativeBackends {
    pub namespace: Arc<Namespace>,
    pub data_dir: PathBuf,
    pub keys: KeyMaterialSource,
    /// The bulk channel's sessions, when the channel is on.
    pub bulk: Option<Arc<bulk::BulkSessions>>,
    pub metrics: request_metrics::RequestMetrics,
}

/// Binds `listen`; serves the native service on the returned address until `shutdown`, over
/// TLS unless `security` is explicitly plaintext.
pub async fn serve(
    listen: SocketAddr,
    security: &NativeSecurity,
    backends: NativeBackends,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>)> {
    let builder = tonic::transport::Server::builder();
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let NativeBackends {
        namespace,
        data_dir,
        keys,
        bulk,
        metrics,
    } = backends;
    let service = NativeServer {
        namespace,
        auth: Authenticator::new(
            data_dir.clone(),
            security.client_certs(),
            security.client_ca(),
        ),
        keys,
        data_dir,
        bulk,
        damaged_chunks: metrics.damaged_chunks.clone(),
    };
    let service = NativeServiceServer::new(service)
        .max_decoding_message_size(NATIVE_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(NATIVE_MESSAGE_BYTES_MAX);
    let service = request_metrics::Counted::new(service, metrics);
    let server = builder
        .concurrency_limit_per_connection(REQUESTS_PER_CONNECTION_MAX)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        // Whole chunks arrive in 1 MiB pieces: windows that hold several keep uploads flowing.
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(kiseki_proto::H2_FRAME_BYTES_MAX))
        .add_service(service);
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    // TLS is accepted here rather than by tonic: see `tls.rs` on client certificates.
    let task = match security.acceptor() {
        Some(acceptor) => tokio::spawn(
            server.serve_with_incoming_shutdown(accept::tls_incoming(listener, acceptor), stopped),
        ),
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(server.serve_with_incoming_shutdown(incoming, stopped))
        }
    };
    Ok((bound, task))
}

struct NativeServer {
    namespace: Arc<Namespace>,
    auth: Authenticator,
    keys: KeyMaterialSource,
    data_dir: PathBuf,
    bulk: Option<Arc<bulk::BulkSessions>>,
    damaged_chunks: prometheus_client::metrics::counter::Counter,
}

fn status(error: NamespaceError) -> Status {
    namespace_error_status(&error)
}

fn invalid(message: &str) -> Status {
    status(NamespaceError::new(ErrorKind::InvalidArgument, message))
}

/// The special-file type and device number recorded on a node, if any.
fn special_of(namespace: &TenantNamespace, inode: InodeId) -> (u32, u64) {
    let Ok(metadata) = namespace.user_metadata(inode) else {
        return (0, 0);
    };
    let Some(value) = metadata.get(POSIX_SPECIAL_KEY) else {
        return (0, 0);
    };
    let text = String::from_utf8_lossy(value);
    let mut parts = text.split(' ').map(|part| part.parse::<u64>().unwrap_or(0));
    let kind = parts.next().unwrap_or(0);
    (u32::try_from(kind).unwrap_or(0), parts.next().unwrap_or(0))
}

fn node_reply(
    namespace: &TenantNamespace,
    inode: InodeId,
) -> Result<Response<wire::NodeReply>, Status> {
    let attrs = namespace.attributes(inode).map_err(status)?;
    let special = special_of(namespace, inode);
    Ok(Response::new(wire::NodeReply {
        attr: Some(attr_to_wire(inode, &attrs, special)),
    }))
}

fn chunk_id(bytes: &[u8]) -> Result<ChunkId, Status> {
    chunk_id_from_wire(bytes).ok_or_else(|| invalid("chunk id is not 32 bytes"))
}

impl NativeServer {
    async fn tenant<T>(&self, request: &Request<T>) -> Result<Arc<TenantNamespace>, Status> {
        Ok(self.caller(request).await?.0)
    }

    /// The caller's namespace and identity (tenant and workload).
    async fn caller<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Arc<TenantNamespace>, ClientIdentity), Status> {
        let identity = self
            .auth
            .authenticate(request.metadata(), request.peer_certs())?;
        let namespace = self
            .namespace
            .tenant(identity.tenant)
            .await
            .map_err(status)?;
        Ok((namespace, identity))
    }
}

type PieceStream = Pin<Box<dyn Stream<Item = Result<wire::ChunkPiece, Status>> + Send>>;

#[tonic::async_trait]
impl NativeService for NativeServer {
    async fn hello(
        &self,
        request: Request<wire::HelloRequest>,
    ) -> Result<Response<wire::HelloResponse>, Status> {
        let namespace = self.tenant(&request).await?;
        Ok(Response::new(wire::HelloResponse {
            tenant_id: namespace.tenant().0,
            chunk_size_bytes: namespace.chunk_size_bytes(),
            protocol_version: NATIVE_PROTOCOL_VERSION,
            root_inode: InodeId::ROOT.0,
        }))
    }

    async fn get_tenant_keys(
        &self,
        request: Request<wire::GetTenantKeysRequest>,
    ) -> Result<Response<kiseki_proto::keyserver::v1::GetTenantKeysResponse>, Status> {
        let namespace = self.tenant(&request).await?;
        let tenant = namespace.tenant();
        tracing::info!(%tenant, data_dir = %self.data_dir.display(), "tenant keys handed to a native client");
        let response = self
            .keys
            .tenant_keys(tenant)
            .await
            .map_err(|error| kiseki_proto::key_error_status(&error))?;
        Ok(Response::new(response))
    }

    async fn lookup(
        &self,
        request: Request<wire::LookupRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let (inode, _) = namespace
            .lookup(InodeId(message.parent), &message.name)
            .map_err(status)?;
        node_reply(&namespace, inode)
    }

    async fn get_attr(
        &self,
        request: Request<wire::InodeRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        node_reply(&namespace, InodeId(request.get_ref().inode))
    }

    async fn open(
        &self,
        request: Request<wire::OpenRequest>,
    ) -> Result<Response<wire::OpenReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let inode = InodeId(message.inode);
        let attrs = namespace.attributes(inode).map_err(status)?;
        let mut reply = wire::OpenReply {
            attr: Some(attr_to_wire(inode, &attrs, special_of(&namespace, inode))),
            ..Default::default()
        };
        if message.layout_len == 0 || attrs.kind != kiseki_types::FileKind::File {
            return Ok(Response::new(reply));
        }
        let layout = namespace
            .layout(inode, 0, message.layout_len, LAYOUT_EXTENTS_MAX)
            .map_err(status)?;
        let inline_max = u64::from(message.inline_file_bytes_max).min(INLINE_FILE_BYTES_MAX);
        if let [only] = layout.extents.as_slice() {
            if !layout.truncated && layout.size <= inline_max {
                reply.inline_frame = namespace
                    .sealed_chunk(only.chunk, false)
                    .await
                    .map_err(status)?
                    .to_vec();
                reply.inline_chunk_id = only.chunk.0.to_vec();
            }
        }
        reply.layout = Some(wire::LayoutResponse {
            size: layout.size,
            extents: layout.extents.iter().map(extent_to_wire).collect(),
            truncated: layout.truncated,
        });
        Ok(Response::new(reply))
    }

    async fn set_attr(
        &self,
        request: Request<wire::SetAttrRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let changes = AttrChanges {
            mode: message.mode,
            uid: message.uid,
            gid: message.gid,
            atime: message.atime_ns.map(Timestamp),
            mtime: message.mtime_ns.map(Timestamp),
        };
        let inode = InodeId(message.inode);
        namespace
            .set_attributes(inode, changes)
            .await
            .map_err(status)?;
        node_reply(&namespace, inode)
    }

    async fn read_dir(
        &self,
        request: Request<wire::ReadDirRequest>,
    ) -> Result<Response<wire::ReadDirResponse>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let after = (!message.after.is_empty()).then_some(message.after.as_str());
        let limit = message.limit.clamp(1, READDIR_ENTRIES_MAX) as usize;
        let entries = namespace
            .read_directory(InodeId(message.dir), after, limit)
            .map_err(status)?;
        let with_attrs = message.with_attrs;
        let entries = entries
            .into_iter()
            .map(|entry| {
                let attr = with_attrs
                    .then(|| namespace.attributes(entry.inode).ok())
                    .flatten()
                    .map(|attrs| {
                        attr_to_wire(entry.inode, &attrs, special_of(&namespace, entry.inode))
                    });
                wire::DirEntry {
                    name: entry.name,
                    inode: entry.inode.0,
                    kind: kind_to_wire(entry.kind) as i32,
                    cursor: entry.cursor,
                    attr,
                }
            })
            .collect();
        Ok(Response::new(wire::ReadDirResponse { entries }))
    }

    async fn create(
        &self,
        request: Request<wire::CreateRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let owner = Owner {
            uid: message.uid,
            gid: message.gid,
        };
        let parent = InodeId(message.parent);
        let exclusive = message.exclusive || message.special_type != 0;
        let inode = namespace
            .create(owner, parent, &message.name, message.mode, exclusive)
            .await
            .map_err(status)?;
        if message.special_type != 0 {
            let value = format!("{} {}", message.special_type, message.rdev).into_bytes();
            if let Err(error) = namespace
                .set_user_metadata(inode, POSIX_SPECIAL_KEY, Some(value))
                .await
            {
                // Leave no half-made special file behind.
                let _ = namespace.unlink(parent, &message.name).await;
                return Err(status(error));
            }
        }
        node_reply(&namespace, inode)
    }

    async fn mkdir(
        &self,
        request: Request<wire::CreateRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let owner = Owner {
            uid: message.uid,
            gid: message.gid,
        };
        let inode = namespace
            .mkdir(owner, InodeId(message.parent), &message.name, message.mode)
            .await
            .map_err(status)?;
        node_reply(&namespace, inode)
    }

    async fn symlink(
        &self,
        request: Request<wire::SymlinkRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let owner = Owner {
            uid: message.uid,
            gid: message.gid,
        };
        let inode = namespace
            .symlink(
                owner,
                InodeId(message.parent),
                &message.name,
                &message.target,
            )
            .await
            .map_err(status)?;
        node_reply(&namespace, inode)
    }

    async fn read_link(
        &self,
        request: Request<wire::InodeRequest>,
    ) -> Result<Response<wire::ReadLinkResponse>, Status> {
        let namespace = self.tenant(&request).await?;
        let target = namespace
            .read_link(InodeId(request.get_ref().inode))
            .map_err(status)?;
        Ok(Response::new(wire::ReadLinkResponse { target }))
    }

    async fn link(
        &self,
        request: Request<wire::LinkRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let inode = InodeId(message.inode);
        namespace
            .link(inode, InodeId(message.new_parent), &message.new_name)
            .await
            .map_err(status)?;
        node_reply(&namespace, inode)
    }

    async fn unlink(
        &self,
        request: Request<wire::NameRequest>,
    ) -> Result<Response<wire::Empty>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        namespace
            .unlink(InodeId(message.parent), &message.name)
            .await
            .map_err(status)?;
        Ok(Response::new(wire::Empty {}))
    }

    async fn rmdir(
        &self,
        request: Request<wire::NameRequest>,
    ) -> Result<Response<wire::Empty>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        namespace
            .rmdir(InodeId(message.parent), &message.name)
            .await
            .map_err(status)?;
        Ok(Response::new(wire::Empty {}))
    }

    async fn rename(
        &self,
        request: Request<wire::RenameRequest>,
    ) -> Result<Response<wire::Empty>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        namespace
            .rename(
                InodeId(message.from_parent),
                &message.from_name,
                InodeId(message.to_parent),
                &message.to_name,
                message.no_replace,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(wire::Empty {}))
    }

    async fn truncate(
        &self,
        request: Request<wire::TruncateRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let inode = InodeId(message.inode);
        namespace
            .truncate(inode, message.size)
            .await
            .map_err(status)?;
        node_reply(&namespace, inode)
    }

    async fn write(
        &self,
        request: Request<wire::WriteRequest>,
    ) -> Result<Response<wire::NodeReply>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.into_inner();
        let extents = message
            .extents
            .iter()
            .map(extent_from_wire)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("extent with a malformed chunk id"))?;
        let inode = InodeId(message.inode);
        namespace
            .commit_extents(inode, message.offset, extents, message.append)
            .await
            .map_err(status)?;
        node_reply(&namespace, inode)
    }

    async fn layout(
        &self,
        request: Request<wire::LayoutRequest>,
    ) -> Result<Response<wire::LayoutResponse>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.get_ref();
        let layout = namespace
            .layout(
                InodeId(message.inode),
                message.offset,
                message.len,
                LAYOUT_EXTENTS_MAX,
            )
            .map_err(status)?;
        Ok(Response::new(wire::LayoutResponse {
            size: layout.size,
            extents: layout.extents.iter().map(extent_to_wire).collect(),
            truncated: layout.truncated,
        }))
    }

    async fn get_metadata(
        &self,
        request: Request<wire::InodeRequest>,
    ) -> Result<Response<wire::MetadataResponse>, Status> {
        let namespace = self.tenant(&request).await?;
        let metadata: BTreeMap<String, Vec<u8>> = namespace
            .user_metadata(InodeId(request.get_ref().inode))
            .map_err(status)?;
        let entries = metadata
            .into_iter()
            .map(|(key, value)| wire::MetadataEntry { key, value })
            .collect();
        Ok(Response::new(wire::MetadataResponse { entries }))
    }

    async fn set_metadata(
        &self,
        request: Request<wire::SetMetadataRequest>,
    ) -> Result<Response<wire::Empty>, Status> {
        let namespace = self.tenant(&request).await?;
        let message = request.into_inner();
        if message.key == POSIX_SPECIAL_KEY {
            return Err(status(NamespaceError::new(
                ErrorKind::PermissionDenied,
                "reserved metadata key",
            )));
        }
        namespace
            .set_user_metadata(InodeId(message.inode), &message.key, message.value)
            .await
            .map_err(status)?;
        Ok(Response::new(wire::Empty {}))
    }

    async fn stat_fs(
        &self,
        request: Request<wire::Empty>,
    ) -> Result<Response<wire::StatFsResponse>, Status> {
        let namespace = self.tenant(&request).await?;
        let (total_bytes, free_bytes) = auth::disk_space(&self.data_dir);
        let files = namespace.node_count() as u64;
        Ok(Response::new(wire::StatFsResponse {
            total_bytes,
            free_bytes,
            files,
            files_free: kiseki_types::InodeId::LOCAL_MAX - files,
            block_size: 4096,
            name_max: kiseki_types::limits::NAME_BYTES_MAX as u32,
        }))
    }

    async fn put_chunk(
        &self,
        request: Request<Streaming<wire::ChunkPiece>>,
    ) -> Result<Response<wire::PutChunkResponse>, Status> {
        let (namespace, caller) = self.caller(&request).await?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| invalid("empty chunk stream"))?;
        let id = chunk_id(&first.chunk_id)?;
        let assembly_error = |error: FrameAssemblyError| invalid(&error.to_string());
        let mut frame =
            FrameAssembler::new(first.frame_len, FRAME_BYTES_MAX).map_err(assembly_error)?;
        frame.push(first.data).map_err(assembly_error)?;
        while let Some(piece) = stream.message().await? {
            frame.push(piece.data).map_err(assembly_error)?;
        }
        let frame = frame.finish().map_err(assembly_error)?;
        let Some(commit) = first.commit else {
            let deduplicated = namespace
                .store_sealed_chunk(id, frame, Some(&caller.workload))
                .await
                .map_err(status)?;
            return Ok(Response::new(wire::PutChunkResponse {
                deduplicated,
                attr: None,
            }));
        };
        // A small file in one call: the frame may ride in the commit's log entry.
        let inode = InodeId(commit.inode);
        let extent = Extent {
            file_offset: commit.file_offset,
            len: commit.len,
            chunk: id,
            chunk_offset: 0,
        };
        let deduplicated = namespace
            .commit_small_write(inode, extent, frame, Some(&caller.workload))
            .await
            .map_err(status)?;
        let attr = node_reply(&namespace, inode)?.into_inner().attr;
        Ok(Response::new(wire::PutChunkResponse { deduplicated, attr }))
    }

    type GetChunkStream = PieceStream;

    async fn get_chunk(
        &self,
        request: Request<wire::GetChunkRequest>,
    ) -> Result<Response<PieceStream>, Status> {
        let namespace = self.tenant(&request).await?;
        let id = chunk_id(&request.get_ref().chunk_id)?;
        let check_body = request.get_ref().verify;
        let frame: Bytes = match namespace.sealed_chunk(id, check_body).await {
            Ok(frame) => frame,
            Err(error) => {
                // The client's tag check failed, and our copy is here with a sound header but
                // fails its body checksum (this path is rare: the second read costs nothing).
                if check_body
                    && error.kind == ErrorKind::Corrupt
                    && namespace.sealed_chunk(id, false).await.is_ok()
                {
                    self.damaged_chunks.inc();
                    tracing::error!(
                        tenant = %namespace.tenant(),
                        chunk = %id,
                        %error,
                        "chunk damaged on this server's disk"
                    );
                }
                return Err(status(error));
            }
        };
        let frame_len = frame.len() as u64;
        let pieces: Vec<Result<wire::ChunkPiece, Status>> = frame_pieces(&frame)
            .enumerate()
            .map(|(index, data)| {
                let first = index == 0;
                Ok(wire::ChunkPiece {
                    chunk_id: if first { id.0.to_vec() } else { Vec::new() },
                    frame_len: if first { frame_len } else { 0 },
                    data,
                    commit: None,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(pieces))))
    }

    async fn open_bulk_session(
        &self,
        request: Request<wire::Empty>,
    ) -> Result<Response<wire::BulkSession>, Status> {
        let Some(bulk) = &self.bulk else {
            return Err(Status::unimplemented("this server runs no bulk channel"));
        };
        let peer = request
            .remote_addr()
            .ok_or_else(|| Status::failed_precondition("the caller's address is unknown"))?;
        let (_, identity) = self.caller(&request).await?;
        let grant = bulk.grant(identity, peer.ip()).map_err(status)?;
        Ok(Response::new(wire::BulkSession {
            port: u32::from(grant.port),
            session_id: grant.session_id.to_vec(),
            key: grant.key,
            valid_for_ms: grant.valid_for.as_millis() as u64,
        }))
    }
}
