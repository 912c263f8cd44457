//! The cluster CA and node certificates (rcgen 0.14, rustls 0.23 with aws-lc-rs through tonic).
//!
//! A node's identity is the DNS name `node-<id>.kiseki` in its certificate's SAN, signed by the
//! cluster CA. Node-to-node connections are mutual TLS: a server requires a client certificate
//! of the CA and then checks, per request, that it is valid for the node id the request claims
//! (no control-plane call); a client verifies the server's certificate for the node it dialled.
//!
//! The same CA signs native clients' certificates: a client's identity is the URI SAN
//! `kiseki://tenant/<id>/workload/<name>` ([`ClientIdentity`]), the certificate carries the
//! clientAuth key usage only and is valid for a bounded time (at most
//! [`CLIENT_CERT_DAYS_MAX`] days). The native listener reads the tenant from it (see
//! `native/auth.rs`). This module never sees data or keys of tenants.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kiseki_types::TenantId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
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

/// The CA whose key is in the file `ca_key`, ready to sign.
fn load_issuer(ca_key: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let ca_key = KeyPair::from_pem(&read_string(ca_key)?)
        .with_context(|| format!("parsing {}", ca_key.display()))?;
    Ok(Issuer::new(ca_params()?, ca_key))
}

/// Issues the certificate of node `node` from the CA whose key is `ca_key`; returns the PEM
/// certificate and key. The certificate serves both ends of node-to-node TLS.
pub fn issue_node_cert(ca_key: &Path, node: u64) -> anyhow::Result<(String, String)> {
    issue_node_cert_with_names(ca_key, node, &[])
}

/// Like [`issue_node_cert`], with `extra_names` (host names, IP addresses) in the SAN too, for a
/// listener clients dial by address (the native service).
pub fn issue_node_cert_with_names(
    ca_key: &Path,
    node: u64,
    extra_names: &[String],
) -> anyhow::Result<(String, String)> {
    let issuer = load_issuer(ca_key)?;
    let mut names = vec![node_name(node)];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names)?;
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
    write_cert_pair(out, &format!("node-{node}"), cert, key)
}

/// Writes `<out>/<stem>.pem` and `<out>/<stem>.key` (the key readable by the owner only).
pub fn write_cert_pair(
    out: &Path,
    stem: &str,
    cert: &str,
    key: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cert_path = out.join(format!("{stem}.pem"));
    let key_path = out.join(format!("{stem}.key"));
    write_private(&key_path, key)?;
    std::fs::write(&cert_path, cert).with_context(|| format!("writing {}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

/// Longest validity of a client certificate, in days.
pub const CLIENT_CERT_DAYS_MAX: u32 = 397;
/// Validity of a client certificate unless asked otherwise, in days.
pub const CLIENT_CERT_DAYS_DEFAULT: u32 = 90;
/// Longest workload name in a client identity.
const WORKLOAD_BYTES_MAX: usize = 64;
/// Scheme and prefix of a client identity URI.
const IDENTITY_PREFIX: &str = "kiseki://tenant/";

/// Who a native client is: a tenant's workload. Carried in the client certificate as the URI
/// SAN `kiseki://tenant/<id>/workload/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The tenant whose namespace and keys the client reaches.
    pub tenant: TenantId,
    /// The workload within the tenant: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub workload: String,
}

impl ClientIdentity {
    /// An identity, if `workload` is a valid name.
    pub fn new(tenant: u64, workload: &str) -> Result<Self, String> {
        let valid = !workload.is_empty()
            && workload.len() <= WORKLOAD_BYTES_MAX
            && workload
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
        if !valid {
            return Err(format!(
                "workload name {workload:?} is not 1 to {WORKLOAD_BYTES_MAX} of A-Z a-z 0-9 . _ -"
            ));
        }
        Ok(ClientIdentity {
            tenant: TenantId(tenant),
            workload: workload.to_owned(),
        })
    }

    /// The URI SAN form.
    pub fn uri(&self) -> String {
        format!(
            "{IDENTITY_PREFIX}{}/workload/{}",
            self.tenant.0, self.workload
        )
    }

    /// Parses the URI SAN form; `None` if `uri` is not a Kiseki client identity.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(IDENTITY_PREFIX)?;
        let (tenant, workload) = rest.split_once("/workload/")?;
        if tenant.is_empty() || !tenant.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        ClientIdentity::new(tenant.parse().ok()?, workload).ok()
    }

    /// File stem of this identity's certificate and key: `client-tenant-<id>-<workload>`.
    pub fn file_stem(&self) -> String {
        format!("client-tenant-{}-{}", self.tenant.0, self.workload)
    }
}

/// Issues a client certificate for `identity` from the CA whose key is `ca_key`, valid from a
/// minute ago for `days` days (1 to [`CLIENT_CERT_DAYS_MAX`]); returns the PEM certificate and
/// key.
pub fn issue_client_cert(
    ca_key: &Path,
    identity: &ClientIdentity,
    days: u32,
) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(
        (1..=CLIENT_CERT_DAYS_MAX).contains(&days),
        "a client certificate is valid for 1 to {CLIENT_CERT_DAYS_MAX} days, not {days}"
    );
    let now = std::time::SystemTime::now();
    let from = now - std::time::Duration::from_secs(60);
    let until = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
    issue_client_cert_valid(ca_key, identity, from, until)
}

/// Issues a client certificate valid from `from` until `until` (tests make expired ones).
pub fn issue_client_cert_valid(
    ca_key: &Path,
    identity: &ClientIdentity,
    from: std::time::SystemTime,
    until: std::time::SystemTime,
) -> anyhow::Result<(String, String)> {
    let issuer = load_issuer(ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
    params.distinguished_name.push(
        DnType::CommonName,
        format!(
            "tenant {} workload {}",
            identity.tenant.0, identity.workload
        ),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = from.into();
    params.not_after = until.into();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_identities_round_trip_through_their_uri() {
        let identity = ClientIdentity::new(7, "train-01.a_b").unwrap();
        assert_eq!(identity.uri(), "kiseki://tenant/7/workload/train-01.a_b");
        assert_eq!(ClientIdentity::from_uri(&identity.uri()), Some(identity));
        for bad in [
            "kiseki://tenant//workload/x",
            "kiseki://tenant/+7/workload/x",
            "kiseki://tenant/7/workload/",
            "kiseki://tenant/7/workload/a/b",
            "kiseki://tenant/7",
            "https://tenant/7/workload/x",
        ] {
            assert_eq!(ClientIdentity::from_uri(bad), None, "{bad}");
        }
        assert!(ClientIdentity::new(1, &"x".repeat(65)).is_err());
    }

    #[test]
    fn client_certificates_have_a_bounded_validity() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path()).unwrap();
        let identity = ClientIdentity::new(1, "dev").unwrap();
        let ca_key = dir.path().join(CA_KEY_FILE);
        assert!(issue_client_cert(&ca_key, &identity, 0).is_err());
        assert!(issue_client_cert(&ca_key, &identity, CLIENT_CERT_DAYS_MAX + 1).is_err());
        let (cert, key) = issue_client_cert(&ca_key, &identity, 30).unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
    }
}
