//! The Raft network of a shard group. Single-node only for now: a group has one voter and never
//! sends an RPC. Peers arrive with the multi-node cluster work, which replaces this factory with
//! one that speaks the cluster's transport; nothing else in the log changes.

use std::io;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

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
