//! The `nfs:` section of the server config: listeners and exports. Unknown keys are rejected
//! by name, like the rest of the config.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use serde::Deserialize;

/// NFS listeners and exports.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NfsConfig {
    /// Address serving NFSv3 and MOUNT (clients give it as `nfsport` and `mountport`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// An extra address serving MOUNT (and NFS), for clients that want a separate mount port.
    #[serde(default)]
    pub mount_listen: Option<SocketAddr>,
    /// The exported directories.
    #[serde(default)]
    pub exports: Vec<ExportConfig>,
}

/// One export: a directory of a tenant's namespace, offered to a list of client networks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// The path clients mount (`/<name>`); sub-directories of it can be mounted too.
    pub name: String,
    /// The tenant whose namespace is exported.
    pub tenant: u64,
    /// Directory of the tenant's namespace to export (created if missing).
    #[serde(default = "default_path")]
    pub path: String,
    /// Client networks allowed (CIDR such as `10.1.0.0/16`, or a single address); others are
    /// refused at MOUNT and on every call.
    pub clients: Vec<String>,
    /// Refuse every change.
    #[serde(default)]
    pub read_only: bool,
    /// Map uid 0 and gid 0 to the anonymous ids.
    #[serde(default = "default_true")]
    pub root_squash: bool,
    /// User id of squashed and unauthenticated callers.
    #[serde(default = "default_anon")]
    pub anon_uid: u32,
    /// Group id of squashed and unauthenticated callers.
    #[serde(default = "default_anon")]
    pub anon_gid: u32,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2049))
}

fn default_path() -> String {
    "/".into()
}

fn default_true() -> bool {
    true
}

fn default_anon() -> u32 {
    65534
}

impl NfsConfig {
    /// NFS on `listen` with no exports.
    pub fn with_listen(listen: SocketAddr) -> Self {
        NfsConfig {
            listen,
            mount_listen: None,
            exports: Vec::new(),
        }
    }

    /// Checks what serde cannot: names, client networks, duplicate exports.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut names = std::collections::HashSet::new();
        for export in &self.exports {
            let name = export.mount_path();
            anyhow::ensure!(name.len() > 1, "nfs export name {:?} is empty", export.name);
            anyhow::ensure!(
                names.insert(name.clone()),
                "nfs export {name:?} is defined twice"
            );
            kiseki_namespace::names::split_path(&export.path).map_err(|error| {
                anyhow::anyhow!("nfs export {name:?}: path {:?}: {error}", export.path)
            })?;
            anyhow::ensure!(
                !export.clients.is_empty(),
                "nfs export {name:?} lists no clients"
            );
            for client in &export.clients {
                Cidr::parse(client).with_context(|| format!("nfs export {name:?}"))?;
            }
        }
        Ok(())
    }
}

impl ExportConfig {
    /// The development export: `/dev`, the whole namespace of tenant `tenant`, to loopback
    /// clients, without root squash.
    pub fn development(tenant: u64) -> Self {
        ExportConfig {
            name: "dev".into(),
            tenant,
            path: default_path(),
            clients: vec!["127.0.0.0/8".into(), "::1".into()],
            read_only: false,
            root_squash: false,
            anon_uid: default_anon(),
            anon_gid: default_anon(),
        }
    }

    /// The path clients mount: the name with one leading `/` and no trailing one.
    pub fn mount_path(&self) -> String {
        format!("/{}", self.name.trim_matches('/'))
    }
}

/// A client network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    address: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a single address.
    pub fn parse(text: &str) -> anyhow::Result<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .trim()
            .parse()
            .with_context(|| format!("client {text:?} is not an address or CIDR"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .with_context(|| format!("client {text:?}: bad prefix length"))?,
            None => bits,
        };
        anyhow::ensure!(
            prefix <= bits,
            "client {text:?}: prefix longer than {bits} bits"
        );
        Ok(Cidr {
            address: address.to_canonical(),
            prefix,
        })
    }

    /// Whether `address` is inside the network.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => prefix_matches(
                u128::from(u32::from(network)),
                u128::from(u32::from(address)),
                self.prefix,
                32,
            ),
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_matches(u128::from(network), u128::from(address), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_matches(network: u128, address: u128, prefix: u8, bits: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - u32::from(prefix);
    (network >> shift) == (address >> shift)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_only() {
        let network = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(network.contains("10.1.200.3".parse().unwrap()));
        assert!(!network.contains("10.2.0.1".parse().unwrap()));
        assert!(
            network.contains("::ffff:10.1.0.9".parse().unwrap()),
            "IPv4-mapped peers match"
        );
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("192.0.2.1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("tenant").is_err());
    }

    #[test]
    fn unknown_export_keys_are_rejected_by_name() {
        let error = serde_yaml::from_str::<NfsConfig>(
            "exports:\n  - name: a\n    tenant: 1\n    clients: [127.0.0.1]\n    read_olny: true\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("read_olny"), "{error}");
    }
}
