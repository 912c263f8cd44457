//! The node-to-node gRPC service: shard calls (Raft and forwarding) dispatched to this node's
//! copy of the shard, chunk copies into and out of the local store, and membership changes.
//!
//! Every request names its sender; the sender's client certificate (verified against the
//! cluster CA in the handshake) must be valid for that node's name, or the call is refused.
//! It never serves tenants' clients: those use the native and S3 endpoints.

use std::sync::Arc;

use bytes::Bytes;
use kiseki_chunk::{ChunkError, ChunkHeader, ChunkStore, Placement, PoolName};
use kiseki_log::MembershipChange;
use kiseki_namespace::Namespace;
use kiseki_proto::cluster::v1::cluster_server::Cluster;
use kiseki_proto::cluster::v1::{
    GetChunkReply, GetChunkRequest, HasChunksReply, HasChunksRequest, MembershipReply,
    MembershipRequest, PutChunkReply, PutChunkRequest, ShardCall, ShardReply, ShardRequest,
};
use kiseki_types::{ChunkId, ShardId, TenantId};
use tonic::{Request, Response, Status};

use super::peers::peer_call;
use super::recopy::HAS_CHUNKS_IDS_MAX;
use super::tls::check_peer_identity;

/// The cluster service of one node.
pub struct ClusterService {
    pub(super) namespace: Arc<Namespace>,
    pub(super) local: Arc<dyn ChunkStore>,
    pub(super) placement: Placement,
}

fn authenticate<T>(request: &Request<T>, claimed: u64) -> Result<(), Status> {
    let certs = request.peer_certs();
    check_peer_identity(certs.as_deref().map(Vec::as_slice), claimed).map_err(|reason| {
        tracing::warn!(claimed, %reason, "refused a cluster call");
        Status::permission_denied(format!("peer identity: {reason}"))
    })
}

fn shard_of(tenant: u64, index: u32) -> Result<ShardId, Status> {
    let index = u16::try_from(index).map_err(|_| Status::invalid_argument("shard index"))?;
    Ok(ShardId {
        tenant: TenantId(tenant),
        index,
    })
}

fn chunk_id(bytes: &[u8]) -> Result<ChunkId, Status> {
    let id: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Status::invalid_argument("chunk id must be 32 bytes"))?;
    Ok(ChunkId(id))
}

fn chunk_status(error: &ChunkError) -> Status {
    match error {
        ChunkError::NoSpace { .. } => Status::resource_exhausted(error.to_string()),
        ChunkError::Corrupt { .. } => Status::invalid_argument(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn shard(&self, request: Request<ShardRequest>) -> Result<Response<ShardReply>, Status> {
        let from = request.get_ref().from_node;
        authenticate(&request, from)?;
        let request = request.into_inner();
        let shard = shard_of(request.tenant, request.shard_index)?;
        let call = ShardCall::try_from(request.call)
            .ok()
            .and_then(peer_call)
            .ok_or_else(|| Status::invalid_argument("unknown shard call"))?;
        let peer = self
            .namespace
            .shard_peer(shard)
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        let payload = peer
            .handle(call, &request.payload)
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        Ok(Response::new(ShardReply { payload }))
    }

    async fn put_chunk(
        &self,
        request: Request<PutChunkRequest>,
    ) -> Result<Response<PutChunkReply>, Status> {
        authenticate(&request, request.get_ref().from_node)?;
        let request = request.into_inner();
        let tenant = TenantId(request.tenant);
        let id = chunk_id(&request.chunk_id)?;
        // The frame must at least be one of this chunk (tenant and id bound in the header).
        ChunkHeader::decode(&request.frame, tenant, id).map_err(|error| chunk_status(&error))?;
        let named;
        let placement = if request.pool.is_empty() {
            &self.placement
        } else {
            named = Placement {
                pool: PoolName(request.pool),
            };
            &named
        };
        self.local
            .put(tenant, id, Bytes::from(request.frame), placement)
            .await
            .map_err(|error| chunk_status(&error))?;
        Ok(Response::new(PutChunkReply {}))
    }

    async fn get_chunk(
        &self,
        request: Request<GetChunkRequest>,
    ) -> Result<Response<GetChunkReply>, Status> {
        authenticate(&request, request.get_ref().from_node)?;
        let request = request.into_inner();
        let id = chunk_id(&request.chunk_id)?;
        match self.local.get(TenantId(request.tenant), id).await {
            Ok(frame) => Ok(Response::new(GetChunkReply {
                found: true,
                frame: frame.to_vec(),
            })),
            Err(ChunkError::NotFound { .. }) => Ok(Response::new(GetChunkReply {
                found: false,
                frame: Vec::new(),
            })),
            Err(error) => Err(chunk_status(&error)),
        }
    }

    async fn has_chunks(
        &self,
        request: Request<HasChunksRequest>,
    ) -> Result<Response<HasChunksReply>, Status> {
        authenticate(&request, request.get_ref().from_node)?;
        let request = request.into_inner();
        if request.chunk_ids.len() > HAS_CHUNKS_IDS_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {HAS_CHUNKS_IDS_MAX} chunk ids per call"
            )));
        }
        let tenant = TenantId(request.tenant);
        let mut present = Vec::with_capacity(request.chunk_ids.len());
        for id in &request.chunk_ids {
            let held = self
                .local
                .contains(tenant, chunk_id(id)?)
                .await
                .map_err(|error| chunk_status(&error))?;
            present.push(held);
        }
        Ok(Response::new(HasChunksReply { present }))
    }

    async fn change_membership(
        &self,
        request: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        authenticate(&request, request.get_ref().from_node)?;
        let request = request.into_inner();
        let shard = shard_of(request.tenant, request.shard_index)?;
        let peer = self
            .namespace
            .shard_peer(shard)
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        let unavailable = |error: kiseki_log::LogError| Status::unavailable(error.to_string());
        for learner in request.add_learners {
            peer.change_membership(MembershipChange::AddLearner(learner))
                .await
                .map_err(unavailable)?;
        }
        if !request.voters.is_empty() {
            let voters = request.voters.into_iter().collect();
            peer.change_membership(MembershipChange::SetVoters(voters))
                .await
                .map_err(unavailable)?;
        }
        if !request.remove.is_empty() {
            let nodes = request.remove.into_iter().collect();
            peer.change_membership(MembershipChange::RemoveNodes(nodes))
                .await
                .map_err(unavailable)?;
        }
        // Let this node see the change it asked for before reporting the membership.
        peer.read_barrier().await.map_err(unavailable)?;
        let (voters, learners) = peer.membership().map_err(unavailable)?;
        Ok(Response::new(MembershipReply {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
            leader: peer.leader(),
        }))
    }
}
