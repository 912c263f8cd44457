//! Builds a storage node from its config: key source, chunk pools, namespace.

use std::sync::Arc;

use anyhow::Context;
use kiseki_chunk::{ChunkService, FsChunkStore, Placement, PoolName};
use kiseki_crypto::{InternalKms, KeyManager, KeySource};
use kiseki_namespace::{Namespace, NamespaceConfig};
use kiseki_proto::RemoteKeySource;

use crate::config::ServerConfig;
use crate::native::keys::KeyMaterialSource;

/// The key source the config asks for: an embedded key manager, or a remote key server; and
/// the same keys' raw material for the native client service.
pub fn key_source(
    config: &ServerConfig,
) -> anyhow::Result<(Arc<dyn KeySource>, KeyMaterialSource)> {
    if config.keyserver == "embedded" {
        let keys_dir = config.data_dir.join("keyserver");
        let kms = InternalKms::open(&keys_dir.join("kms"))
            .context("opening the embedded internal KMS")?;
        let manager = KeyManager::open(&keys_dir.join("keys"), Arc::new(kms))
            .context("opening the embedded key manager")?;
        let manager = Arc::new(manager);
        return Ok((manager.clone(), KeyMaterialSource::Embedded(manager)));
    }
    let remote = RemoteKeySource::connect_lazy(&config.keyserver)
        .with_context(|| format!("key server address {}", config.keyserver))?;
    let material = KeyMaterialSource::remote(&config.keyserver)
        .with_context(|| format!("key server address {}", config.keyserver))?;
    Ok((Arc::new(remote), material))
}

/// The namespace over the configured pools; new chunks go to the first pool.
pub fn namespace(config: &ServerConfig, keys: Arc<dyn KeySource>) -> anyhow::Result<Namespace> {
    let pools = config.pools.iter().map(|pool| {
        (
            PoolName(pool.name.clone()),
            config.pool_dir(pool),
            pool.device_class,
        )
    });
    let store = FsChunkStore::open(pools).context("opening chunk pools")?;
    let first = config
        .pools
        .first()
        .context("config needs at least one pool")?;
    let chunks = ChunkService::new(
        Arc::new(store),
        Placement {
            pool: PoolName(first.name.clone()),
        },
    );
    let mut namespace_config = NamespaceConfig::new(config.data_dir.join("shards"));
    namespace_config.chunk_size = config.chunk_size_bytes;
    Namespace::new(namespace_config, keys, chunks).context("namespace configuration")
}
