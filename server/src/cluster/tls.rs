//! The cluster CA and node certificates (rcgen 0.14, rustls 0.23 with aws-lc-rs through tonic).
//!
//! A node's identity is the DNS name `node-<id>.kiseki` in its certificate's SAN, signed by the
//! cluster CA. Node-to-node connections are mutual TLS: a server requires a client certificate
//! of the CA and then checks, per request, that it is valid for the node id the request claims
//! (no control-plane call); a client verifies the server's certificate for the node it dialled.
//! This module never sees data or keys of tenants.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, DnsName, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Common name of a cluster CA.
const CA_NAME: &str = "Kiseki cluster CA";
/// File names of a CA in its directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key file.
pub const CA_KEY_FILE: &str = "ca.key";

/// The DNS name a node's certificate carries.
pub fn node_name(node: u64) -> String {
    format!("node-{node}.kiseki")
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Creates a cluster CA in `dir` (refuses to overwrite one).
pub fn init_ca(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    anyhow::ensure!(
        !cert_path.exists() && !key_path.exists(),
        "{} already holds a cluster CA",
        dir.display()
    );
    let key = KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&key)?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, ca.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(cert_path)
}

/// Issues the certificate of node `node` from the CA whose key is `ca_key`; returns the PEM
/// certificate and key. The certificate serves both ends of node-to-node TLS.
pub fn issue_node_cert(ca_key: &Path, node: u64) -> anyhow::Result<(String, String)> {
    let ca_key = KeyPair::from_pem(&read_string(ca_key)?)
        .with_context(|| format!("parsing {}", ca_key.display()))?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(vec![node_name(node)])?;
    params
        .distinguished_name
        .push(DnType::CommonName, node_name(node));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a node certificate and key as `<out>/node-<id>.pem` and `.key`.
pub fn write_node_cert(
    out: &Path,
    node: u64,
    cert: &str,
    key: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cert_path = out.join(format!("node-{node}.pem"));
    let key_path = out.join(format!("node-{node}.key"));
    write_private(&key_path, key)?;
    std::fs::write(&cert_path, cert).with_context(|| format!("writing {}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

/// The TLS material of this node.
#[derive(Clone)]
pub struct NodeTls {
    ca: Certificate,
    identity: Identity,
}

impl NodeTls {
    /// Loads the CA certificate and the node's certificate and key (PEM).
    pub fn load(ca_cert: &Path, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Ok(NodeTls {
            ca: Certificate::from_pem(read(ca_cert)?),
            identity: Identity::from_pem(read(cert)?, read(key)?),
        })
    }

    /// Server side: this node's certificate, client certificates of the CA required.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// Client side towards node `target`: its certificate must be valid for its node name.
    pub fn client_config(&self, target: u64) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(node_name(target))
    }
}

/// Checks that the client certificate of a request (already verified against the cluster CA
/// by the TLS handshake) is valid for node `claimed`.
pub fn check_peer_identity(
    certs: Option<&[CertificateDer<'static>]>,
    claimed: u64,
) -> Result<(), String> {
    let Some(leaf) = certs.and_then(|certs| certs.first()) else {
        return Err("no client certificate".into());
    };
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|error| format!("unreadable client certificate: {error:?}"))?;
    let name =
        DnsName::try_from(node_name(claimed)).map_err(|error| format!("bad node name: {error}"))?;
    cert.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
        .map_err(|_| format!("client certificate is not valid for node {claimed}"))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_string(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a private key readable by the owner only (temp file, fsync, rename).
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
