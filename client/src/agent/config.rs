//! The compute-node configuration (`site-configs/compute-node.yaml`): mount point, server,
//! cache directory and sizes, cache modes per path, named datasets. Unknown keys are refused
//! by name, so a typo never silently changes a node's behaviour. Parsing only: no I/O here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::cache::CacheMode;

/// The compute-node YAML file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Where to mount.
    pub mount_point: Option<PathBuf>,
    /// The kiseki-server native service URL.
    pub server: Option<String>,
    /// PEM CA file of the server's certificate.
    pub ca: Option<PathBuf>,
    /// Name the server certificate must carry.
    pub server_name: Option<String>,
    /// PEM client certificate (mutual TLS; the tenant comes from it, no access key needed).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// The agent's control socket.
    pub agent_socket: Option<PathBuf>,
    /// Let users other than the mounting one access the mount.
    pub allow_other: Option<bool>,
    /// Let the kernel check permissions against the mode bits.
    pub default_permissions: Option<bool>,
    /// The node cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Named datasets: name → namespace path (`/bucket/prefix`) or `s3://bucket/prefix`.
    #[serde(default)]
    pub datasets: BTreeMap<String, String>,
}

/// The `cache:` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// L2 directory on local NVMe (its contents are discarded at start).
    pub dir: Option<PathBuf>,
    /// L1 size (bytes, or "512MiB", "4GiB", ...).
    #[serde(default, deserialize_with = "size_option")]
    pub memory_bytes: Option<u64>,
    /// L2 size.
    #[serde(default, deserialize_with = "size_option")]
    pub disk_bytes: Option<u64>,
    /// Mode of paths without one of their own: `organic` (default) or `bypass`.
    pub default_mode: Option<CacheMode>,
    /// Modes of namespace paths (and everything under them).
    #[serde(default)]
    pub modes: Vec<PathMode>,
}

/// A cache mode for a namespace path.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMode {
    /// Namespace path (`/bucket/dir`) or dataset name.
    pub path: String,
    /// `organic` or `bypass` (`pinned` comes from staging).
    pub mode: CacheMode,
}

impl NodeConfig {
    /// Parses the YAML text of a compute-node config.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }
}

/// A size: a plain number of bytes or a number with a unit (`KiB`, `MiB`, `GiB`, `TiB`, or
/// `K`/`M`/`G`/`T` meaning the same binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1073741824, 512MiB, 4GiB)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn size_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Size::Bytes(bytes)) => Ok(Some(bytes)),
        Some(Size::Text(text)) => parse_size(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn the_shipped_compute_node_config_parses() {
        let text = include_str!("../../../site-configs/compute-node.yaml");
        let config = NodeConfig::parse(text).unwrap();
        assert_eq!(config.cache.disk_bytes, Some(64 << 30));
        assert_eq!(config.cache.modes[0].mode, CacheMode::Bypass);
        assert!(config.datasets.contains_key("imagenet"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error = NodeConfig::parse("cache:\n  disk_byte: 4GiB\n").unwrap_err();
        assert!(error.contains("disk_byte"), "{error}");
        let config = NodeConfig::parse(
            "mount_point: /kiseki\ncache:\n  disk_bytes: 4GiB\n  default_mode: organic\n  modes:\n    - path: /ckpt\n      mode: bypass\ndatasets:\n  imagenet: s3://ml/imagenet\n",
        )
        .unwrap();
        assert_eq!(config.cache.disk_bytes, Some(4 << 30));
        assert_eq!(config.cache.modes[0].mode, CacheMode::Bypass);
        assert_eq!(config.datasets["imagenet"], "s3://ml/imagenet");
    }
}
