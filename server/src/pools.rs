//! Builds the node's chunk store from the `pools:` config: single-directory pools
//! ([`FsChunkStore`]) and erasure-coded pools over several device directories
//! ([`ErasureChunkStore`]), behind one [`ChunkStore`] that routes writes to the pool of the
//! placement and finds reads in whichever pool holds the chunk. Also runs the periodic scrub of
//! erasure-coded pools, offline `scrub`/`rebuild` passes, and exposes their counters as metrics.
//!
//! In a cluster, an erasure-coded pool spans the nodes: its devices are this node's own device
//! directories (recorded as devices of this node) plus the devices of the same names on every
//! peer, reached through [`crate::cluster::ClusterNode::remote_fragment_store`]. Every node of a
//! cluster therefore declares the same erasure-coded pools with the same device names (relative
//! paths, or absolute paths that are equal on every node), so that all nodes compute the same
//! placement.
//!
//! Every erasure-coded pool shares the node's [`PlacementJournal`]: stores note where they put
//! fragments, `crate::placements` records them in the shard logs. A pool's placement epoch is a
//! hash of its device list, so it changes when a device is added.
//!
//! This module owns wiring only: coding, placement and repair live in `kiseki-chunk`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use kiseki_chunk::{
    ChunkError, ChunkStore, DeviceInfo, EcPolicy, EcProfile, ErasureChunkStore, FragmentStore,
    FsChunkStore, FsFragmentStore, Placement, PlacementJournal, PoolName, RepairReport,
    StoreFuture,
};
use kiseki_types::{ChunkId, TenantId};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::{PoolConfig, ServerConfig};

/// The node id recorded in the device descriptors of local devices of a single-node server.
const LOCAL_NODE: u64 = 0;
/// Shortest accepted periodic scrub interval.
pub const SCRUB_INTERVAL_SECS_MIN: u64 = 10;

/// The node's pools.
pub struct Pools {
    /// The store the chunk service writes to and reads from.
    pub store: Arc<dyn ChunkStore>,
    /// Erasure-coded pools, for repair and metrics.
    pub erasure: Vec<ErasurePool>,
    /// Directories of the single-directory pools (whole chunk files).
    pub directories: Vec<PathBuf>,
    /// Layouts the erasure-coded pools noted, to be recorded in the shard logs.
    pub journal: Arc<PlacementJournal>,
}

/// What an erasure-coded pool needs from the cluster: this node's id, its peers' ids, and a
/// fragment store for a device of a peer.
pub trait ClusterDevices {
    /// This node's id.
    fn node_id(&self) -> u64;
    /// The other nodes' ids.
    fn peer_ids(&self) -> Vec<u64>;
    /// The device `info.device` of peer `info.node`.
    fn remote_device(&self, info: DeviceInfo) -> Arc<dyn FragmentStore>;
}

/// One erasure-coded pool.
pub struct ErasurePool {
    /// Pool name.
    pub name: String,
    /// The store.
    pub store: Arc<ErasureChunkStore>,
    /// This node's own devices of the pool (served to the peers in a cluster).
    pub local_devices: Vec<Arc<dyn FragmentStore>>,
    /// Periodic scrub interval, if any.
    pub scrub_interval: Option<Duration>,
}

/// The erasure-coding policy a pool config asks for (`None` for a single-directory pool).
pub fn policy(pool: &PoolConfig) -> anyhow::Result<Option<EcPolicy>> {
    let profile = match (&pool.ec, pool.replicate) {
        (Some(_), Some(_)) => anyhow::bail!("pool {}: give either ec or replicate", pool.name),
        (Some(ec), None) => ec
            .parse::<EcProfile>()
            .with_context(|| format!("pool {}", pool.name))?,
        (None, Some(copies)) => EcProfile::Replicate { copies }
            .new()
            .with_context(|| format!("pool {}", pool.name))?,
        (None, None) if pool.devices.is_empty() => return Ok(None),
        (None, None) => anyhow::bail!("pool {}: devices need ec: K+M or replicate: N", pool.name),
    };
    let mut policy = EcPolicy::uniform(profile);
    if let Some(bytes) = pool.small_chunk_bytes_max {
        policy.small_chunk_bytes_max = usize::try_from(bytes).unwrap_or(usize::MAX);
        policy.small_profile = EcProfile::Replicate {
            copies: pool.small_chunk_copies.unwrap_or(3),
        }
        .new()
        .with_context(|| format!("pool {} small_chunk_copies", pool.name))?;
    }
    for (tenant, text) in &pool.tenant_ec {
        let profile = text
            .parse::<EcProfile>()
            .with_context(|| format!("pool {} tenant {tenant}", pool.name))?;
        policy.tenants.insert(TenantId(*tenant), profile);
    }
    Ok(Some(policy))
}

/// Checks a pool config: a directory or devices, a valid profile.
pub fn check(pool: &PoolConfig) -> anyhow::Result<()> {
    let has_path = !pool.path.as_os_str().is_empty();
    anyhow::ensure!(
        has_path == pool.devices.is_empty(),
        "pool {}: give either path or devices",
        pool.name
    );
    policy(pool)?;
    if let Some(secs) = pool.scrub_interval_secs {
        anyhow::ensure!(
            secs >= SCRUB_INTERVAL_SECS_MIN,
            "pool {}: scrub_interval_secs must be at least {SCRUB_INTERVAL_SECS_MIN}",
            pool.name
        );
    }
    Ok(())
}

fn device_dir(config: &ServerConfig, device: &PathBuf) -> PathBuf {
    if device.is_absolute() {
        device.clone()
    } else {
        config.data_dir.join(device)
    }
}

fn open_erasure(
    config: &ServerConfig,
    pool: &PoolConfig,
    policy: EcPolicy,
    cluster: Option<&dyn ClusterDevices>,
    journal: &Arc<PlacementJournal>,
) -> anyhow::Result<ErasurePool> {
    let node = cluster.map_or(LOCAL_NODE, |cluster| cluster.node_id());
    let mut local_devices: Vec<Arc<dyn FragmentStore>> = Vec::new();
    for device in &pool.devices {
        let info = DeviceInfo {
            node,
            device: device.display().to_string(),
            class: pool.device_class,
        };
        let dir = device_dir(config, device);
        let store = FsFragmentStore::open(info, &dir)
            .with_context(|| format!("pool {}: device {}", pool.name, dir.display()))?;
        local_devices.push(Arc::new(store));
    }
    let mut devices = local_devices.clone();
    if let Some(cluster) = cluster {
        for peer in cluster.peer_ids() {
            for device in &pool.devices {
                devices.push(cluster.remote_device(DeviceInfo {
                    node: peer,
                    device: device.display().to_string(),
                    class: pool.device_class,
                }));
            }
        }
        // The same order on every node (placement ties break by position).
        devices.sort_by(|a, b| {
            let (a, b) = (a.device(), b.device());
            (a.node, &a.device).cmp(&(b.node, &b.device))
        });
    }
    let infos: Vec<DeviceInfo> = devices.iter().map(|d| d.device().clone()).collect();
    let epoch = kiseki_chunk::device_list_epoch(&infos);
    let store = ErasureChunkStore::open(PoolName(pool.name.clone()), devices, policy, epoch)
        .with_context(|| format!("pool {}", pool.name))?
        .with_journal(Arc::clone(journal));
    Ok(ErasurePool {
        name: pool.name.clone(),
        store: Arc::new(store),
        local_devices,
        scrub_interval: pool.scrub_interval_secs.map(Duration::from_secs),
    })
}

impl Pools {
    /// Opens every configured pool of a single-node server. With only single-directory pools
    /// the store is the plain [`FsChunkStore`] it always was.
    #[cfg(test)]
    pub fn open(config: &ServerConfig) -> anyhow::Result<Self> {
        Self::open_in(config, None)
    }

    /// Opens every configured pool; in a cluster (`cluster`), erasure-coded pools span the
    /// devices of every node.
    pub fn open_in(
        config: &ServerConfig,
        cluster: Option<&dyn ClusterDevices>,
    ) -> anyhow::Result<Self> {
        let mut directories = Vec::new();
        let mut erasure = Vec::new();
        let journal = Arc::new(PlacementJournal::new());
        for pool in &config.pools {
            check(pool)?;
            match policy(pool)? {
                Some(policy) => {
                    erasure.push(open_erasure(config, pool, policy, cluster, &journal)?)
                }
                None => directories.push((
                    PoolName(pool.name.clone()),
                    config.pool_dir(pool),
                    pool.device_class,
                )),
            }
        }
        let dirs = directories.iter().map(|(_, dir, _)| dir.clone()).collect();
        let fs = FsChunkStore::open(directories).context("opening chunk pools")?;
        if erasure.is_empty() {
            return Ok(Pools {
                store: Arc::new(fs),
                erasure,
                directories: dirs,
                journal,
            });
        }
        let mut routes: Vec<(PoolName, Arc<dyn ChunkStore>)> = Vec::new();
        let fs: Arc<dyn ChunkStore> = Arc::new(fs);
        for pool in &config.pools {
            let name = PoolName(pool.name.clone());
            match erasure.iter().find(|ec| ec.name == pool.name) {
                Some(ec) => routes.push((name, Arc::clone(&ec.store) as Arc<dyn ChunkStore>)),
                None => routes.push((name, Arc::clone(&fs))),
            }
        }
        let erasure_names = erasure.iter().map(|ec| PoolName(ec.name.clone())).collect();
        Ok(Pools {
            store: Arc::new(PoolRouter {
                routes,
                erasure: erasure_names,
                journal: Arc::clone(&journal),
            }),
            erasure,
            directories: dirs,
            journal,
        })
    }

    /// The names of the erasure-coded pools (their chunks are not copied whole to replicas:
    /// the coding is their redundancy).
    pub fn erasure_names(&self) -> Vec<PoolName> {
        self.erasure
            .iter()
            .map(|pool| PoolName(pool.name.clone()))
            .collect()
    }

    /// Registers the erasure-coding counters on `/metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        if self.erasure.is_empty() {
            return;
        }
        let pools = self
            .erasure
            .iter()
            .map(|pool| (pool.name.clone(), Arc::clone(&pool.store)))
            .collect();
        registry.register_collector(Box::new(EcCollector { pools }));
    }

    /// Starts the periodic scrubs; they stop when `shutdown` turns true.
    pub fn start_scrubs(&self, shutdown: watch::Receiver<bool>) {
        for pool in &self.erasure {
            let Some(interval) = pool.scrub_interval else {
                continue;
            };
            let store = Arc::clone(&pool.store);
            let name = pool.name.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.wait_for(|stop| *stop) => return,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    match store.scrub().await {
                        Ok(report) => log_report(&name, "scrub", &report),
                        Err(error) => tracing::error!(pool = %name, %error, "scrub failed"),
                    }
                }
            });
        }
    }

    /// Runs one scrub (or rebuild) of every erasure-coded pool; for the `scrub`/`rebuild`
    /// commands.
    pub async fn repair_all(&self, verify: bool) -> anyhow::Result<Vec<(String, RepairReport)>> {
        let mut reports = Vec::new();
        for pool in &self.erasure {
            let report = if verify {
                pool.store.scrub().await
            } else {
                pool.store.rebuild().await
            }
            .with_context(|| format!("pool {}", pool.name))?;
            reports.push((pool.name.clone(), report));
        }
        Ok(reports)
    }
}

fn log_report(pool: &str, what: &str, report: &RepairReport) {
    if report.clean() && report.fragments_rebuilt == 0 {
        tracing::info!(pool, what, chunks = report.chunks_scanned, "clean");
    } else {
        tracing::warn!(pool, what, ?report, "repaired or found damage");
    }
}

/// Routes each chunk operation to the right pool.
struct PoolRouter {
    routes: Vec<(PoolName, Arc<dyn ChunkStore>)>,
    /// The erasure-coded pools among the routes.
    erasure: Vec<PoolName>,
    /// Recorded placements: which erasure-coded pool holds a chunk.
    journal: Arc<PlacementJournal>,
}

impl PoolRouter {
    /// The store of `pool`.
    fn route(&self, pool: &PoolName) -> Option<&Arc<dyn ChunkStore>> {
        self.routes
            .iter()
            .find(|(name, _)| name == pool)
            .map(|(_, store)| store)
    }

    /// Each distinct store once (several directory pools share one [`FsChunkStore`]).
    fn stores(&self) -> Vec<&Arc<dyn ChunkStore>> {
        let mut stores: Vec<&Arc<dyn ChunkStore>> = Vec::new();
        for (_, store) in &self.routes {
            if !stores.iter().any(|seen| Arc::ptr_eq(seen, store)) {
                stores.push(store);
            }
        }
        stores
    }

    /// The stores in the order a read tries them: the pool a recorded placement names, then
    /// directory pools (one file lookup), then the other erasure-coded pools (which may probe
    /// every device for a chunk they do not hold).
    fn read_order(&self, tenant: TenantId, id: ChunkId) -> Vec<&Arc<dyn ChunkStore>> {
        let recorded = self.journal.recorded(tenant, id).map(|layout| layout.pool);
        let rank = |name: &PoolName| {
            if Some(name) == recorded.as_ref() {
                0
            } else if !self.erasure.contains(name) {
                1
            } else {
                2
            }
        };
        let mut routes: Vec<&(PoolName, Arc<dyn ChunkStore>)> = self.routes.iter().collect();
        routes.sort_by_key(|(name, _)| rank(name));
        let mut stores: Vec<&Arc<dyn ChunkStore>> = Vec::new();
        for (_, store) in routes {
            if !stores.iter().any(|seen| Arc::ptr_eq(seen, store)) {
                stores.push(store);
            }
        }
        stores
    }
}

impl ChunkStore for PoolRouter {
    fn put<'a>(
        &'a self,
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        placement: &'a Placement,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let store = self
                .route(&placement.pool)
                .ok_or_else(|| ChunkError::UnknownPool(placement.pool.0.clone()))?;
            store.put(tenant, id, frame, placement).await
        })
    }

    fn get(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, Bytes> {
        Box::pin(async move {
            let mut last = ChunkError::NotFound { tenant, id };
            for store in self.read_order(tenant, id) {
                match store.get(tenant, id).await {
                    Ok(frame) => return Ok(frame),
                    Err(ChunkError::NotFound { .. }) => {}
                    Err(error) => last = error,
                }
            }
            Err(last)
        })
    }

    fn contains(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            for store in self.stores() {
                if store.contains(tenant, id).await? {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    fn delete(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            for store in self.stores() {
                store.delete(tenant, id).await?;
            }
            Ok(())
        })
    }

    fn carries(&self, pool: &PoolName) -> bool {
        self.route(pool).is_some_and(|store| store.carries(pool))
    }

    fn put_carried(
        &self,
        tenant: TenantId,
        id: ChunkId,
        frame: &[u8],
        placement: &Placement,
    ) -> Result<(), ChunkError> {
        self.route(&placement.pool)
            .ok_or_else(|| ChunkError::UnknownPool(placement.pool.0.clone()))?
            .put_carried(tenant, id, frame, placement)
    }

    fn sync_carried(&self) -> Result<(), ChunkError> {
        for store in self.stores() {
            store.sync_carried()?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

/// Reads the counters of the erasure-coded pools at scrape time.
struct EcCollector {
    pools: Vec<(String, Arc<ErasureChunkStore>)>,
}

impl std::fmt::Debug for EcCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcCollector").finish_non_exhaustive()
    }
}

impl Collector for EcCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: HashMap<&str, kiseki_chunk::EcStats> = self
            .pools
            .iter()
            .map(|(name, store)| (name.as_str(), store.counters().snapshot()))
            .collect();
        type Field = fn(&kiseki_chunk::EcStats) -> u64;
        let series: [(&str, &str, Field); 9] = [
            (
                "ec_fragments_written",
                "Fragments written by chunk writes",
                |s| s.fragments_written,
            ),
            (
                "ec_degraded_reads",
                "Chunk reads that reconstructed from parity",
                |s| s.degraded_reads,
            ),
            (
                "ec_corrupt_fragments",
                "Fragments that failed their checksums",
                |s| s.corrupt_fragments,
            ),
            (
                "ec_fragments_rebuilt",
                "Fragments regenerated by rebuild or scrub",
                |s| s.fragments_rebuilt,
            ),
            ("ec_rebuilt_bytes", "Bytes of regenerated fragments", |s| {
                s.bytes_rebuilt
            }),
            ("ec_scrub_repaired", "Fragments a scrub replaced", |s| {
                s.scrub_repaired
            }),
            (
                "ec_chunks_unrecoverable",
                "Chunks found with fewer than k good fragments",
                |s| s.chunks_unrecoverable,
            ),
            (
                "ec_placement_scans",
                "Chunk reads that probed devices beyond the recorded or ranked fragment positions",
                |s| s.placement_scans,
            ),
            (
                "ec_placement_recorded_lookups",
                "Fragment lookups that used the chunk's recorded placement",
                |s| s.placement_recorded_lookups,
            ),
        ];
        for (name, help, field) in series {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (pool, stat) in &stats {
                let labels = PoolLabels {
                    pool: (*pool).to_owned(),
                };
                ConstCounter::new(field(stat)).encode(family.encode_family(&labels)?)?;
            }
        }
        let progress: [(&str, &str, Field); 2] = [
            (
                "ec_repair_chunks_scanned",
                "Chunks the running or last rebuild/scrub has looked at",
                |s| s.rebuild_chunks_scanned,
            ),
            (
                "ec_repair_chunks_total",
                "Chunks the running or last rebuild/scrub has to look at",
                |s| s.rebuild_chunks_total,
            ),
        ];
        for (name, help, field) in progress {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (pool, stat) in &stats {
                let labels = PoolLabels {
                    pool: (*pool).to_owned(),
                };
                let value = i64::try_from(field(stat)).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool(yaml: &str) -> PoolConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn pools_take_a_directory_or_devices_with_a_profile() {
        let plain = pool("name: a\ndevice_class: fast-nvme\npath: chunks\n");
        assert!(check(&plain).is_ok());
        assert!(policy(&plain).unwrap().is_none());

        let coded = pool(
            "name: b\ndevice_class: bulk-nvme\nec: 8+3\nsmall_chunk_bytes_max: 65536\n\
             tenant_ec: {5: 4+2}\ndevices: [d0, d1]\n",
        );
        let policy = policy(&coded).unwrap().unwrap();
        assert_eq!(policy.default, EcProfile::ReedSolomon { k: 8, m: 3 });
        assert_eq!(policy.small_profile, EcProfile::Replicate { copies: 3 });
        assert_eq!(
            policy.profile_for(TenantId(5), 1 << 20),
            EcProfile::ReedSolomon { k: 4, m: 2 }
        );

        for (bad, why) in [
            ("name: c\ndevice_class: bulk-nvme\npath: x\ndevices: [d0]\nec: 4+2\n", "either path or devices"),
            ("name: c\ndevice_class: bulk-nvme\ndevices: [d0]\n", "ec: K+M or replicate: N"),
            ("name: c\ndevice_class: bulk-nvme\ndevices: [d0]\nec: 4-2\n", "pool c"),
            ("name: c\ndevice_class: bulk-nvme\ndevices: [d0]\nec: 4+2\nreplicate: 3\n", "either ec or replicate"),
            ("name: c\ndevice_class: bulk-nvme\ndevices: [d0]\nreplicate: 1\nscrub_interval_secs: 1\n", "scrub_interval_secs"),
        ] {
            let error = check(&pool(bad)).unwrap_err();
            assert!(format!("{error:#}").contains(why), "{bad}: {error:#}");
        }
    }

    #[test]
    fn too_few_devices_for_the_profile_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::with_data_dir(dir.path().to_path_buf());
        config.pools = vec![pool(
            "name: bulk\ndevice_class: bulk-nvme\nec: 4+2\ndevices: [d0, d1, d2, d3, d4]\n",
        )];
        let error = Pools::open(&config).err().unwrap();
        assert!(
            format!("{error:#}").contains("cannot place 6 fragments (4+2) on 5 distinct devices"),
            "{error:#}"
        );
    }
}
