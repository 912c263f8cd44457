//! Fragment devices across nodes: [`RemoteFragmentStore`], a `FragmentStore` that is a device of
//! a peer (reached over the node-to-node mTLS channel), and [`FragmentService`], the server side
//! that serves this node's local fragment devices to its peers.
//!
//! Fragments stay opaque here (whole fragment files; readers check them). Every call is bounded
//! by a timeout; a device the peer does not have is an error, never silently another device.
//!
//! The server side runs on every cluster node; the client side is a peer's device in the
//! erasure-coded pools of a cluster (`crate::pools`), which span every node's devices.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kiseki_chunk::{ChunkError, DeviceInfo, FragmentKey, FragmentStore, StoreFuture};
use kiseki_proto::cluster::v1 as wire;
use kiseki_proto::cluster::v1::fragments_client::FragmentsClient;
use kiseki_proto::cluster::v1::fragments_server::Fragments;
use kiseki_types::{ChunkId, TenantId};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::peers::{status_error, Peers};
use super::tls::check_peer_identity;
use super::CLUSTER_MESSAGE_BYTES_MAX;

/// Longest a remote fragment call may take.
const FRAGMENT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn key_to_wire(key: FragmentKey) -> wire::FragmentKey {
    wire::FragmentKey {
        tenant: key.tenant.0,
        chunk_id: key.chunk.0.to_vec(),
        index: u32::from(key.index),
    }
}

fn key_from_wire(key: Option<&wire::FragmentKey>) -> Option<FragmentKey> {
    let key = key?;
    Some(FragmentKey {
        tenant: TenantId(key.tenant),
        chunk: ChunkId(key.chunk_id.as_slice().try_into().ok()?),
        index: u8::try_from(key.index).ok()?,
    })
}

/// A fragment device on another node.
pub struct RemoteFragmentStore {
    info: DeviceInfo,
    peers: Arc<Peers>,
}

impl RemoteFragmentStore {
    /// The device `info.device` of node `info.node`, reached through `peers`.
    pub fn new(info: DeviceInfo, peers: Arc<Peers>) -> Self {
        RemoteFragmentStore { info, peers }
    }

    fn client(&self) -> Result<FragmentsClient<Channel>, ChunkError> {
        let channel = self
            .peers
            .channel(self.info.node)
            .map_err(|error| self.error(error.to_string()))?;
        Ok(FragmentsClient::new(channel)
            .max_decoding_message_size(CLUSTER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX))
    }

    fn error(&self, message: String) -> ChunkError {
        ChunkError::Io {
            path: self.info.to_string(),
            source: std::io::Error::other(message),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(FRAGMENT_CALL_TIMEOUT);
        request
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, ChunkError> {
        match tokio::time::timeout(FRAGMENT_CALL_TIMEOUT, call).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(self.error(status_error(self.info.node, &status).to_string())),
            Err(_) => Err(self.error(format!(
                "no answer within {} s",
                FRAGMENT_CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn get(&self, key: FragmentKey, header_only: bool) -> Result<Bytes, ChunkError> {
        let mut client = self.client()?;
        let request = self.request(wire::FragmentRequest {
            from_node: self.peers.node_id(),
            device: self.info.device.clone(),
            key: Some(key_to_wire(key)),
            header_only,
        });
        let reply = self.bounded(client.get_fragment(request)).await?;
        if !reply.found {
            return Err(ChunkError::NotFound {
                tenant: key.tenant,
                id: key.chunk,
            });
        }
        Ok(Bytes::from(reply.fragment))
    }
}

impl FragmentStore for RemoteFragmentStore {
    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn put_fragment(&self, key: FragmentKey, bytes: Bytes) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut client = self.client()?;
            let request = self.request(wire::PutFragmentRequest {
                from_node: self.peers.node_id(),
                device: self.info.device.clone(),
                key: Some(key_to_wire(key)),
                fragment: bytes.to_vec(),
            });
            self.bounded(client.put_fragment(request)).await.map(|_| ())
        })
    }

    fn get_fragment(&self, key: FragmentKey) -> StoreFuture<'_, Bytes> {
        Box::pin(self.get(key, false))
    }

    fn get_fragment_header(&self, key: FragmentKey) -> StoreFuture<'_, Bytes> {
        Box::pin(self.get(key, true))
    }

    fn delete_fragment(&self, key: FragmentKey) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut client = self.client()?;
            let request = self.request(wire::FragmentRequest {
                from_node: self.peers.node_id(),
                device: self.info.device.clone(),
                key: Some(key_to_wire(key)),
                header_only: false,
            });
            self.bounded(client.delete_fragment(request))
                .await
                .map(|_| ())
        })
    }

    fn list_fragments(&self) -> StoreFuture<'_, Vec<FragmentKey>> {
        Box::pin(async move {
            let mut client = self.client()?;
            let request = self.request(wire::ListFragmentsRequest {
                from_node: self.peers.node_id(),
                device: self.info.device.clone(),
            });
            let reply = self.bounded(client.list_fragments(request)).await?;
            reply
                .keys
                .iter()
                .map(|key| key_from_wire(Some(key)))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.error("malformed fragment key in a listing".into()))
        })
    }
}

/// Serves this node's local fragment devices, by device name.
pub struct FragmentService {
    devices: HashMap<String, Arc<dyn FragmentStore>>,
}

impl FragmentService {
    /// A service over `devices` (local ones; their names must be unique on this node).
    pub fn new(devices: impl IntoIterator<Item = Arc<dyn FragmentStore>>) -> Self {
        FragmentService {
            devices: devices
                .into_iter()
                .map(|device| (device.device().device.clone(), device))
                .collect(),
        }
    }

    fn device<T>(
        &self,
        request: &Request<T>,
        from: u64,
        name: &str,
    ) -> Result<&Arc<dyn FragmentStore>, Status> {
        let certs = request.peer_certs();
        check_peer_identity(certs.as_deref().map(Vec::as_slice), from)
            .map_err(|reason| Status::permission_denied(format!("peer identity: {reason}")))?;
        self.devices
            .get(name)
            .ok_or_else(|| Status::not_found(format!("no fragment device {name:?} on this node")))
    }
}

fn fragment_status(error: &ChunkError) -> Status {
    match error {
        ChunkError::NoSpace { .. } => Status::resource_exhausted(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

fn wire_key(key: Option<&wire::FragmentKey>) -> Result<FragmentKey, Status> {
    key_from_wire(key).ok_or_else(|| Status::invalid_argument("malformed fragment key"))
}

#[tonic::async_trait]
impl Fragments for FragmentService {
    async fn put_fragment(
        &self,
        request: Request<wire::PutFragmentRequest>,
    ) -> Result<Response<wire::PutFragmentReply>, Status> {
        let message = request.get_ref();
        let device = Arc::clone(self.device(&request, message.from_node, &message.device)?);
        let message = request.into_inner();
        let key = wire_key(message.key.as_ref())?;
        device
            .put_fragment(key, Bytes::from(message.fragment))
            .await
            .map_err(|error| fragment_status(&error))?;
        Ok(Response::new(wire::PutFragmentReply {}))
    }

    async fn get_fragment(
        &self,
        request: Request<wire::FragmentRequest>,
    ) -> Result<Response<wire::GetFragmentReply>, Status> {
        let message = request.get_ref();
        let device = self.device(&request, message.from_node, &message.device)?;
        let key = wire_key(message.key.as_ref())?;
        let result = if message.header_only {
            device.get_fragment_header(key).await
        } else {
            device.get_fragment(key).await
        };
        match result {
            Ok(bytes) => Ok(Response::new(wire::GetFragmentReply {
                found: true,
                fragment: bytes.to_vec(),
            })),
            Err(ChunkError::NotFound { .. }) => Ok(Response::new(wire::GetFragmentReply {
                found: false,
                fragment: Vec::new(),
            })),
            Err(error) => Err(fragment_status(&error)),
        }
    }

    async fn delete_fragment(
        &self,
        request: Request<wire::FragmentRequest>,
    ) -> Result<Response<wire::DeleteFragmentReply>, Status> {
        let message = request.get_ref();
        let device = self.device(&request, message.from_node, &message.device)?;
        let key = wire_key(message.key.as_ref())?;
        device
            .delete_fragment(key)
            .await
            .map_err(|error| fragment_status(&error))?;
        Ok(Response::new(wire::DeleteFragmentReply {}))
    }

    async fn list_fragments(
        &self,
        request: Request<wire::ListFragmentsRequest>,
    ) -> Result<Response<wire::ListFragmentsReply>, Status> {
        let message = request.get_ref();
        let device = self.device(&request, message.from_node, &message.device)?;
        let keys = device
            .list_fragments()
            .await
            .map_err(|error| fragment_status(&error))?;
        Ok(Response::new(wire::ListFragmentsReply {
            keys: keys.into_iter().map(key_to_wire).collect(),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kiseki_chunk::{DeviceClass, MemoryFragmentStore};
    use kiseki_proto::cluster::v1::fragments_server::FragmentsServer;
    use tokio::net::TcpListener;
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::cluster::tls::{self, NodeTls};

    fn node_tls(dir: &std::path::Path, node: u64) -> NodeTls {
        let (cert, key) = tls::issue_node_cert(&dir.join(tls::CA_KEY_FILE), node).unwrap();
        let (cert, key) = tls::write_node_cert(dir, node, &cert, &key).unwrap();
        NodeTls::load(&dir.join(tls::CA_CERT_FILE), &cert, &key).unwrap()
    }

    #[tokio::test]
    async fn a_peer_device_stores_lists_and_deletes_fragments() {
        let dir = tempfile::tempdir().unwrap();
        tls::init_ca(dir.path()).unwrap();
        let server_tls = node_tls(dir.path(), 1);
        let client_tls = node_tls(dir.path(), 2);
        let info = DeviceInfo {
            node: 1,
            device: "d0".into(),
            class: DeviceClass::FastNvme,
        };
        let local: Arc<dyn FragmentStore> = Arc::new(MemoryFragmentStore::new(info.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .tls_config(server_tls.server_config())
            .unwrap()
            .add_service(FragmentsServer::new(FragmentService::new([local])))
            .serve_with_incoming(TcpIncoming::from(listener));
        let server = tokio::spawn(server);

        let peers = Arc::new(Peers::new(2, &[(1, address.to_string())], &client_tls).unwrap());
        let remote = RemoteFragmentStore::new(info.clone(), Arc::clone(&peers));
        let key = FragmentKey {
            tenant: TenantId(7),
            chunk: ChunkId([3; 32]),
            index: 2,
        };
        assert!(matches!(
            remote.get_fragment(key).await,
            Err(ChunkError::NotFound { .. })
        ));
        let fragment = Bytes::from(vec![5u8; 100_000]);
        remote.put_fragment(key, fragment.clone()).await.unwrap();
        assert_eq!(remote.get_fragment(key).await.unwrap(), fragment);
        assert_eq!(remote.list_fragments().await.unwrap(), vec![key]);
        remote.delete_fragment(key).await.unwrap();
        assert!(remote.list_fragments().await.unwrap().is_empty());

        let missing_device = DeviceInfo {
            device: "nope".into(),
            ..info
        };
        let error = RemoteFragmentStore::new(missing_device, peers)
            .list_fragments()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("no fragment device"), "{error}");
        server.abort();
    }
}
