//! The server's part of the site YAML config. Unknown keys are rejected with the key named, so a
//! typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiseki_chunk::DeviceClass;
use serde::Deserialize;

/// Configuration of one `kiseki-server`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where shard logs, chunks (unless a pool says otherwise), keys and credentials live.
    pub data_dir: PathBuf,
    /// Address of the Prometheus `/metrics` endpoint.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// Bytes per data chunk.
    #[serde(default = "default_chunk_size")]
    pub chunk_size_bytes: u32,
    /// Chunk pools; the first is where new chunks go.
    #[serde(default = "default_pools")]
    pub pools: Vec<PoolConfig>,
    /// `embedded` (a key manager inside this process) or the URL of a `kiseki-keyserver`.
    #[serde(default = "default_keyserver")]
    pub keyserver: String,
    /// The development tenant created on start, with an S3 access key.
    #[serde(default)]
    pub dev_tenant: Option<DevTenantConfig>,
    /// Development only: mount the dev tenant's namespace here with `kiseki-client-fuse` (a
    /// path, or a map: mount_point, agent_socket, cache_dir, cache_disk_bytes).
    #[serde(default)]
    pub dev_mount: Option<crate::dev_mount::DevMountConfig>,
    /// Address of the native client service (`kiseki-client-fuse` connects here).
    #[serde(default = "default_native_listen")]
    pub native_listen: SocketAddr,
    /// TLS of the native client service, client certificates included (without a configured
    /// certificate: a development cluster CA in `data_dir/cluster-ca/`).
    #[serde(default)]
    pub native_tls: crate::native::tls::NativeTlsConfig,
    /// Address of the native bulk channel: sealed chunk frames to clients over plain TCP, on
    /// connections authenticated by a session granted over TLS (`kiseki_proto::bulk`). Off
    /// when absent; frames then travel inside TLS.
    #[serde(default)]
    pub native_bulk_listen: Option<SocketAddr>,
    /// Address of the S3 endpoint (port 0 picks a free port, printed on start).
    #[serde(default = "default_s3_listen")]
    pub s3_listen: SocketAddr,
    /// NFSv3 listeners and exports; no NFS without it.
    #[serde(default)]
    pub nfs: Option<crate::nfs::NfsConfig>,
    /// The multi-node cluster this server is a node of; a single-node cluster without it.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Which pool new chunks go to per tenant and workload (the first pool without a rule).
    #[serde(default)]
    pub placement: PlacementConfig,
}

/// The `placement:` section: pool names per tenant and per workload.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// `tenant id: pool` for the tenant's writes without a workload rule.
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<u64, String>,
    /// `"<tenant id>/<workload>": pool`, for writes of a native client whose identity (client
    /// certificate or access key) names that workload.
    #[serde(default)]
    pub workloads: std::collections::BTreeMap<String, String>,
}

impl PlacementConfig {
    /// The policy over `pools` (the first is the default), or an error naming the unknown pool
    /// or the malformed workload key.
    pub fn policy(&self, pools: &[PoolConfig]) -> anyhow::Result<kiseki_chunk::PlacementPolicy> {
        use kiseki_chunk::{Placement, PlacementPolicy, PoolName};
        let placement = |name: &str| -> anyhow::Result<Placement> {
            anyhow::ensure!(
                pools.iter().any(|pool| pool.name == name),
                "placement names pool {name:?}, which is not in pools"
            );
            Ok(Placement {
                pool: PoolName(name.to_owned()),
            })
        };
        let first = pools.first().context("config needs at least one pool")?;
        let mut policy = PlacementPolicy::new(placement(&first.name)?);
        for (tenant, pool) in &self.tenants {
            policy = policy.with_tenant(kiseki_types::TenantId(*tenant), placement(pool)?);
        }
        for (key, pool) in &self.workloads {
            let (tenant, workload) = key
                .split_once('/')
                .and_then(|(tenant, workload)| Some((tenant.parse::<u64>().ok()?, workload)))
                .filter(|(_, workload)| !workload.is_empty())
                .with_context(|| {
                    format!("placement workload {key:?} is not \"<tenant id>/<workload>\"")
                })?;
            policy =
                policy.with_workload(kiseki_types::TenantId(tenant), workload, placement(pool)?);
        }
        Ok(policy)
    }
}

/// One chunk pool of one device class: a directory (`path`), or device directories (`devices`)
/// with an erasure-coding profile (`ec` or `replicate`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name.
    pub name: String,
    /// Device class of the directory.
    pub device_class: DeviceClass,
    /// Directory, relative to `data_dir` unless absolute (a single-directory pool).
    #[serde(default)]
    pub path: PathBuf,
    /// Device directories of an erasure-coded pool, relative to `data_dir` unless absolute.
    #[serde(default)]
    pub devices: Vec<PathBuf>,
    /// Erasure-coding profile of a pool with devices: `K+M` (e.g. `4+2`, `8+3`).
    #[serde(default)]
    pub ec: Option<String>,
    /// Or whole copies of each chunk on that many devices.
    #[serde(default)]
    pub replicate: Option<u8>,
    /// Chunks whose frames are shorter than this are replicated instead of coded.
    #[serde(default)]
    pub small_chunk_bytes_max: Option<u64>,
    /// Copies of those small chunks (default 3).
    #[serde(default)]
    pub small_chunk_copies: Option<u8>,
    /// Per-tenant profiles (`tenant id: K+M`).
    #[serde(default)]
    pub tenant_ec: std::collections::BTreeMap<u64, String>,
    /// Scrub the pool's fragments this often (no periodic scrub without it).
    #[serde(default)]
    pub scrub_interval_secs: Option<u64>,
}

/// The development tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevTenantConfig {
    /// Tenant id.
    pub id: u64,
    /// Workload that owns the printed access key.
    #[serde(default = "default_workload")]
    pub workload: String,
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9100))
}

fn default_s3_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}

fn default_native_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9200))
}

fn default_chunk_size() -> u32 {
    kiseki_types::limits::CHUNK_SIZE_BYTES_DEFAULT
}

fn default_pools() -> Vec<PoolConfig> {
    vec![PoolConfig {
        name: "default".into(),
        device_class: DeviceClass::FastNvme,
        path: "chunks".into(),
        devices: Vec::new(),
        ec: None,
        replicate: None,
        small_chunk_bytes_max: None,
        small_chunk_copies: None,
        tenant_ec: Default::default(),
        scrub_interval_secs: None,
    }]
}

fn default_keyserver() -> String {
    "embedded".into()
}

fn default_workload() -> String {
    "dev".into()
}

impl ServerConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let config: ServerConfig = serde_yaml::from_str(&text)
            .with_context(|| format!("invalid config {}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    /// Defaults for a server whose data lives in `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            metrics_listen: default_metrics_listen(),
            chunk_size_bytes: default_chunk_size(),
            pools: default_pools(),
            keyserver: default_keyserver(),
            dev_tenant: None,
            dev_mount: None,
            native_listen: default_native_listen(),
            native_tls: Default::default(),
            native_bulk_listen: None,
            s3_listen: default_s3_listen(),
            nfs: None,
            cluster: None,
            placement: PlacementConfig::default(),
        }
    }

    /// Checks what serde cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(nfs) = &self.nfs {
            nfs.check()?;
        }
        self.native_tls.check()?;
        if let Some(cluster) = &self.cluster {
            cluster.check()?;
        }
        anyhow::ensure!(!self.pools.is_empty(), "config needs at least one pool");
        for pool in &self.pools {
            crate::pools::check(pool)?;
        }
        self.placement.policy(&self.pools)?;
        let limits =
            kiseki_types::limits::CHUNK_SIZE_BYTES_MIN..=kiseki_types::limits::CHUNK_SIZE_BYTES_MAX;
        anyhow::ensure!(
            limits.contains(&self.chunk_size_bytes),
            "chunk_size_bytes {} is outside {}..={}",
            self.chunk_size_bytes,
            limits.start(),
            limits.end()
        );
        Ok(())
    }

    /// The directory of a pool.
    pub fn pool_dir(&self, pool: &PoolConfig) -> PathBuf {
        if pool.path.is_absolute() {
            pool.path.clone()
        } else {
            self.data_dir.join(&pool.path)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn placement_rules_pick_workload_then_tenant_then_first_pool() {
        let config: ServerConfig = serde_yaml::from_str(
            "data_dir: /x\n\
             pools:\n  \
               - { name: general, device_class: bulk-nvme, path: g }\n  \
               - { name: fast, device_class: fast-nvme, path: f }\n\
             placement:\n  \
               tenants: { 2: fast }\n  \
               workloads: { \"1/training\": fast }\n",
        )
        .unwrap();
        config.check().unwrap();
        let policy = config.placement.policy(&config.pools).unwrap();
        let pool = |tenant, workload| {
            policy
                .placement_for(kiseki_types::TenantId(tenant), workload)
                .pool
                .0
                .clone()
        };
        assert_eq!(pool(1, Some("training")), "fast");
        assert_eq!(pool(1, Some("etl")), "general");
        assert_eq!(pool(1, None), "general");
        assert_eq!(pool(2, Some("anything")), "fast");
        assert_eq!(pool(3, None), "general");

        for (rule, complaint) in [
            ("tenants: { 1: nowhere }", "\"nowhere\""),
            (
                "workloads: { \"training\": fast }",
                "<tenant id>/<workload>",
            ),
            (
                "workloads: { \"x/training\": fast }",
                "<tenant id>/<workload>",
            ),
            ("workloads: { \"1/\": fast }", "<tenant id>/<workload>"),
        ] {
            let config: ServerConfig =
                serde_yaml::from_str(&format!("data_dir: /x\nplacement:\n  {rule}\n")).unwrap();
            let error = config.check().unwrap_err().to_string();
            assert!(error.contains(complaint), "{rule}: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let error = serde_yaml::from_str::<ServerConfig>("data_dir: /x\nchunk_sise_bytes: 5\n")
            .unwrap_err();
        assert!(error.to_string().contains("chunk_sise_bytes"), "{error}");
    }

    #[test]
    fn the_dev_config_in_the_repository_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../site-configs/dev-single-node.yaml");
        let config = ServerConfig::load(&path).unwrap();
        assert_eq!(config.dev_tenant.map(|tenant| tenant.id), Some(1));
    }
}
