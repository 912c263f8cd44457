//! TLS of the native client channel (rustls with the aws-lc-rs provider, through tonic).
//!
//! A site configures a PEM certificate chain and key (`native_tls: {cert, key}`). Without them,
//! the server keeps a development CA in `<data_dir>/tls/` (created once, key readable by the
//! server's user only) and issues itself a fresh server certificate from it on every start, for
//! `localhost`, the loopback addresses, the host name and the listen address; clients trust that
//! CA with `kiseki-client-fuse --ca <data_dir>/tls/ca.pem`. Plain TCP needs the explicit
//! `insecure_plaintext` switch (tests and trusted links only).
//!
//! Clients are not authenticated by certificate yet: mutual TLS with the cluster CA, which also
//! scopes the tenant keys a client may fetch to its workload, comes with the cluster issue.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::Deserialize;
use tonic::transport::{Identity, ServerTlsConfig};

/// Directory under the data dir holding the development CA and the issued server certificate.
const DEV_TLS_DIR: &str = "tls";
/// Common name of the development CA (also how an issued certificate names its issuer).
const DEV_CA_NAME: &str = "Kiseki development CA";

/// The `native_tls` section of the server config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeTlsConfig {
    /// PEM certificate chain of this server (leaf first).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Serve plain TCP instead of TLS (tests and trusted links only).
    #[serde(default)]
    pub insecure_plaintext: bool,
}

impl NativeTlsConfig {
    /// Checks what serde cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cert.is_some() == self.key.is_some(),
            "native_tls needs both cert and key, or neither"
        );
        anyhow::ensure!(
            !(self.insecure_plaintext && self.cert.is_some()),
            "native_tls: insecure_plaintext contradicts a configured certificate"
        );
        Ok(())
    }
}

/// How the native listener is secured, resolved at start.
pub enum NativeSecurity {
    /// TLS with this identity.
    Tls {
        /// The server's certificate chain and key.
        identity: Identity,
        /// The certificate file served.
        cert_path: PathBuf,
        /// The development CA clients should trust, when the server issued its own certificate.
        dev_ca_path: Option<PathBuf>,
    },
    /// Plain TCP (explicitly asked for).
    InsecurePlaintext,
}

impl NativeSecurity {
    /// Resolves `config`: the configured certificate, or one issued from the development CA.
    pub fn prepare(
        config: &NativeTlsConfig,
        data_dir: &Path,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        config.check()?;
        if config.insecure_plaintext {
            return Ok(NativeSecurity::InsecurePlaintext);
        }
        if let (Some(cert_path), Some(key_path)) = (&config.cert, &config.key) {
            let cert = read(cert_path)?;
            let key = read(key_path)?;
            return Ok(NativeSecurity::Tls {
                identity: Identity::from_pem(cert, key),
                cert_path: cert_path.clone(),
                dev_ca_path: None,
            });
        }
        let dir = data_dir.join(DEV_TLS_DIR);
        let (cert, key) = issue_dev_certificate(&dir, listen)?;
        Ok(NativeSecurity::Tls {
            identity: Identity::from_pem(cert, key),
            cert_path: dir.join("server.pem"),
            dev_ca_path: Some(dir.join("ca.pem")),
        })
    }

    /// The tonic server TLS settings, if any.
    pub fn server_config(&self) -> Option<ServerTlsConfig> {
        match self {
            NativeSecurity::Tls { identity, .. } => {
                Some(ServerTlsConfig::new().identity(identity.clone()))
            }
            NativeSecurity::InsecurePlaintext => None,
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn dev_ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, DEV_CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Loads (or creates once) the development CA in `dir`, issues a server certificate for the
/// local names and `listen`, writes it beside the CA and returns its PEM chain and key.
fn issue_dev_certificate(dir: &Path, listen: SocketAddr) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let ca_key = if ca_key_path.exists() && ca_path.exists() {
        KeyPair::from_pem(&std::fs::read_to_string(&ca_key_path)?)
            .with_context(|| format!("parsing {}", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let ca = dev_ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        std::fs::write(&ca_path, ca.pem())
            .with_context(|| format!("writing {}", ca_path.display()))?;
        key
    };
    let issuer = Issuer::new(dev_ca_params()?, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
        {
            names.push(host.to_owned());
        }
    }
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.retain(|name| !name.is_empty());
    names.sort();
    names.dedup();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kiseki-server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let key_pem = key.serialize_pem();
    write_private(&dir.join("server.key"), &key_pem)?;
    std::fs::write(dir.join("server.pem"), cert.pem())
        .with_context(|| format!("writing {}", dir.join("server.pem").display()))?;
    Ok((cert.pem(), key_pem))
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
