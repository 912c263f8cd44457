//! The server's Prometheus metrics: per-shard log progress and group commit, per-tenant
//! namespace size. Refreshed from the namespace once a second; scraped at `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use kiseki_namespace::Namespace;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    tenant: u64,
    shard: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: u64,
}

/// Gauges mirrored from the namespace.
struct ServerGauges {
    last_log_index: Family<ShardLabels, Gauge>,
    applied_index: Family<ShardLabels, Gauge>,
    snapshot_index: Family<ShardLabels, Gauge>,
    group_commits: Family<ShardLabels, Gauge>,
    deltas_flushed: Family<ShardLabels, Gauge>,
    leader: Family<ShardLabels, Gauge>,
    nodes: Family<TenantLabels, Gauge>,
}

/// Registers the server's metrics and returns the registry to serve.
pub fn start(namespace: Arc<Namespace>, mut shutdown: watch::Receiver<bool>) -> Registry {
    let mut registry = Registry::with_prefix("kiseki");
    let gauges = ServerGauges {
        last_log_index: Family::default(),
        applied_index: Family::default(),
        snapshot_index: Family::default(),
        group_commits: Family::default(),
        deltas_flushed: Family::default(),
        leader: Family::default(),
        nodes: Family::default(),
    };
    registry.register(
        "shard_last_log_index",
        "Index of the last entry in the shard log",
        gauges.last_log_index.clone(),
    );
    registry.register(
        "shard_applied_index",
        "Index of the last entry applied to the shard view",
        gauges.applied_index.clone(),
    );
    registry.register(
        "shard_snapshot_index",
        "Index covered by the shard's latest snapshot",
        gauges.snapshot_index.clone(),
    );
    registry.register(
        "shard_group_commits",
        "Durable log commits (one fsync each) since start",
        gauges.group_commits.clone(),
    );
    registry.register(
        "shard_deltas_flushed",
        "Deltas made durable since start",
        gauges.deltas_flushed.clone(),
    );
    registry.register(
        "shard_is_leader",
        "1 when this node leads the shard's Raft group",
        gauges.leader.clone(),
    );
    registry.register(
        "namespace_nodes",
        "Files, directories and symlinks in a tenant's namespace",
        gauges.nodes.clone(),
    );
    tokio::spawn(async move {
        loop {
            refresh(&namespace, &gauges).await;
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
        }
    });
    registry
}

fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

async fn refresh(namespace: &Namespace, gauges: &ServerGauges) {
    for tenant in namespace.open_tenants().await {
        let tenant_id = tenant.tenant().0;
        gauges
            .nodes
            .get_or_create(&TenantLabels { tenant: tenant_id })
            .set(as_gauge(tenant.node_count() as u64));
        let Some(log) = tenant.log_metrics().await else {
            continue;
        };
        let labels = ShardLabels {
            tenant: tenant_id,
            shard: 0,
        };
        gauges
            .last_log_index
            .get_or_create(&labels)
            .set(as_gauge(log.last_log_index.unwrap_or(0)));
        gauges
            .applied_index
            .get_or_create(&labels)
            .set(as_gauge(log.last_applied_index.unwrap_or(0)));
        gauges
            .snapshot_index
            .get_or_create(&labels)
            .set(as_gauge(log.snapshot_index.unwrap_or(0)));
        gauges
            .group_commits
            .get_or_create(&labels)
            .set(as_gauge(log.group_commits));
        gauges
            .deltas_flushed
            .get_or_create(&labels)
            .set(as_gauge(log.deltas_flushed));
        gauges
            .leader
            .get_or_create(&labels)
            .set(i64::from(log.is_leader));
    }
}
