//! The Raft network of a shard group: [`SingleNodeNetworkFactory`] for a single-node server (a
//! group of one voter that never sends an RPC), [`ClusterNetworkFactory`] for a cluster node,
//! whose RPCs go through the cluster's [`ShardTransport`].

use std::io;
use std::sync::Arc;

use kiseki_types::ShardId;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cluster::{decode, encode, PeerCall, ShardTransport, TransportError};
use crate::TypeConfig;

/// Creates [`SingleNodeNetwork`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleNodeNetworkFactory;

/// A connection to a peer that cannot exist yet: every RPC fails as unreachable.
#[derive(Clone, Copy, Debug)]
pub struct SingleNodeNetwork {
    target: u64,
}

impl SingleNodeNetwork {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, BasicNode, E> {
        let error = io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "shard peer {} unreachable: shard groups are single-node until the multi-node \
                 cluster issue adds peers and their transport",
                self.target
            ),
        );
        RPCError::Unreachable(Unreachable::new(&error))
    }
}

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetworkFactory {
    type Network = SingleNodeNetwork;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> SingleNodeNetwork {
        SingleNodeNetwork { target }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl RaftNetwork<TypeConfig> for SingleNodeNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        Err(self.unreachable())
    }
}

/// Creates [`ClusterNetwork`]s: connections to the copies of one shard on other nodes.
#[derive(Clone)]
pub struct ClusterNetworkFactory {
    shard: ShardId,
    transport: Arc<dyn ShardTransport>,
}

impl ClusterNetworkFactory {
    /// A factory for `shard`'s group over `transport`.
    pub fn new(shard: ShardId, transport: Arc<dyn ShardTransport>) -> Self {
        ClusterNetworkFactory { shard, transport }
    }
}

/// openraft's RPCs to one peer of a shard group, over the cluster transport. Payloads are
/// openraft's own messages in bincode; the peer answers with openraft's result, so a remote
/// refusal comes back as openraft's `RemoteError`.
#[derive(Clone)]
pub struct ClusterNetwork {
    target: u64,
    shard: ShardId,
    transport: Arc<dyn ShardTransport>,
}

impl RaftNetworkFactory<TypeConfig> for ClusterNetworkFactory {
    type Network = ClusterNetwork;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> ClusterNetwork {
        ClusterNetwork {
            target,
            shard: self.shard,
            transport: Arc::clone(&self.transport),
        }
    }
}

impl ClusterNetwork {
    async fn send<Req, Resp, E>(
        &self,
        call: PeerCall,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = encode(request).map_err(|message| network_error(&message))?;
        let reply = self
            .transport
            .call(self.target, self.shard, call, payload, option.hard_ttl())
            .await
            .map_err(|error| match error {
                TransportError::Unreachable { .. } => {
                    RPCError::Unreachable(Unreachable::new(&io::Error::other(error.to_string())))
                }
                TransportError::Failed { .. } => network_error(&error.to_string()),
            })?;
        let result: Result<Resp, RaftError<u64, E>> =
            decode(&reply).map_err(|message| network_error(&message))?;
        result.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

fn network_error<E: std::error::Error>(message: &str) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&io::Error::other(message.to_owned())))
}

impl RaftNetwork<TypeConfig> for ClusterNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.send(PeerCall::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.send(PeerCall::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        self.send(PeerCall::Vote, &rpc, &option).await
    }
}
