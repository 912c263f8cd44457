//! TLS of the native client channel (rustls with the aws-lc-rs provider, through tonic),
//! mutual when a client CA is known.
//!
//! A site configures a PEM certificate chain and key (`native_tls: {cert, key}`) and, for
//! client certificates, the CA that signs them (`client_ca`, normally the cluster CA) and
//! whether one is required (`require_client_cert`). Without a configured certificate the server
//! keeps a development cluster CA in `<data_dir>/cluster-ca/` (created once, as
//! `kiseki-server cluster-ca init` would; key readable by the server's user only), issues its
//! node certificate from it into `<data_dir>/tls/` (`node-<id>.kiseki` plus `localhost`, the
//! loopback addresses, the host name and the listen address; reissued only when those names
//! change) and accepts client certificates of that CA; `issue_dev_client_cert` makes the
//! development tenant's. Clients trust the CA with `kiseki-client-fuse --ca
//! <data_dir>/cluster-ca/ca.pem` and present `--cert/--key`. Plain TCP needs the explicit
//! `insecure_plaintext` switch (tests and trusted links only).
//!
//! Client certificates: the handshake asks for one and checks that the client holds its key
//! (the signature over the handshake), but lets every chain in, and a client without a
//! certificate too. `auth.rs` verifies the chain against the client CA (webpki, once per
//! certificate) and takes the tenant from the SAN, so a certificate of another CA, an expired
//! one or one without an identity is refused with a gRPC status that says which, and a missing
//! one with a clear `UNAUTHENTICATED` when certificates are required. Nothing but `auth.rs`
//! may read the peer certificates of this listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::{self, server::danger, DistinguishedName, SignatureScheme};
use tokio_rustls::TlsAcceptor;

use super::client_cert;
use crate::cluster::tls::{self as cluster_tls, ClientIdentity};

/// Directory under the data dir holding the development cluster CA.
const DEV_CA_DIR: &str = "cluster-ca";
/// Directory under the data dir holding the issued node and client certificates.
const DEV_TLS_DIR: &str = "tls";
/// A development client certificate is reissued when it has less than this left.
const DEV_CLIENT_CERT_RENEW_SECONDS: i64 = 7 * 86_400;

/// The `native_tls` section of the server config.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeTlsConfig {
    /// PEM certificate chain of this server (leaf first).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// PEM CA certificate that signs client certificates (the cluster CA). Default without a
    /// configured `cert`: the development cluster CA.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse calls without a client certificate (an access key alone is not enough).
    #[serde(default)]
    pub require_client_cert: bool,
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
        anyhow::ensure!(
            !(self.insecure_plaintext && (self.client_ca.is_some() || self.require_client_cert)),
            "native_tls: client certificates need TLS, not insecure_plaintext"
        );
        anyhow::ensure!(
            !(self.require_client_cert && self.cert.is_some() && self.client_ca.is_none()),
            "native_tls: require_client_cert needs client_ca (the CA of client certificates)"
        );
        Ok(())
    }
}

/// What the native listener does with client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCerts {
    /// None are asked for: clients authenticate with access keys.
    Off,
    /// Asked for; a client without one may use an access key.
    Optional,
    /// Every call needs one.
    Required,
}

/// How the native listener is secured, resolved at start.
pub enum NativeSecurity {
    /// TLS with these settings.
    Tls {
        /// The rustls settings (certificate, key, client certificate handling, ALPN h2).
        config: Arc<rustls::ServerConfig>,
        /// The certificate file served.
        cert_path: PathBuf,
        /// The development cluster CA clients should trust (and that signs client
        /// certificates), when the server issued its own certificate.
        dev_ca_path: Option<PathBuf>,
        /// The CA of client certificates (DER), if any.
        client_ca: Option<CertificateDer<'static>>,
        /// What is asked of clients.
        client_certs: ClientCerts,
    },
    /// Plain TCP (explicitly asked for).
    InsecurePlaintext,
}

impl NativeSecurity {
    /// Resolves `config`: the configured certificate, or one issued for node `node_id` from the
    /// development cluster CA.
    pub fn prepare(
        config: &NativeTlsConfig,
        data_dir: &Path,
        listen: SocketAddr,
        node_id: u64,
    ) -> anyhow::Result<Self> {
        config.check()?;
        if config.insecure_plaintext {
            return Ok(NativeSecurity::InsecurePlaintext);
        }
        let (cert_path, key_path, dev_ca_path) = match (&config.cert, &config.key) {
            (Some(cert_path), Some(key_path)) => (cert_path.clone(), key_path.clone(), None),
            _ => {
                let ca_dir = ensure_dev_ca(data_dir)?;
                let (cert, key) = ensure_dev_node_cert(&ca_dir, data_dir, listen, node_id)?;
                (cert, key, Some(ca_dir.join(cluster_tls::CA_CERT_FILE)))
            }
        };
        let client_ca_path = config.client_ca.clone().or_else(|| dev_ca_path.clone());
        let client_ca = match &client_ca_path {
            Some(path) => Some(
                CertificateDer::from_pem_slice(&read(path)?)
                    .with_context(|| format!("no PEM certificate in {}", path.display()))?,
            ),
            None => None,
        };
        let client_certs = match (&client_ca, config.require_client_cert) {
            (None, _) => ClientCerts::Off,
            (Some(_), false) => ClientCerts::Optional,
            (Some(_), true) => ClientCerts::Required,
        };
        let rustls_config = server_config(&cert_path, &key_path, client_ca.as_ref())?;
        Ok(NativeSecurity::Tls {
            config: Arc::new(rustls_config),
            cert_path,
            dev_ca_path,
            client_ca,
            client_certs,
        })
    }

    /// The TLS acceptor of the listener, if it serves TLS.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        match self {
            NativeSecurity::Tls { config, .. } => Some(TlsAcceptor::from(Arc::clone(config))),
            NativeSecurity::InsecurePlaintext => None,
        }
    }

    /// What the listener asks of clients.
    pub fn client_certs(&self) -> ClientCerts {
        match self {
            NativeSecurity::Tls { client_certs, .. } => *client_certs,
            NativeSecurity::InsecurePlaintext => ClientCerts::Off,
        }
    }

    /// The CA client certificates must chain to, if clients may present one.
    pub fn client_ca(&self) -> Option<CertificateDer<'static>> {
        match self {
            NativeSecurity::Tls { client_ca, .. } => client_ca.clone(),
            NativeSecurity::InsecurePlaintext => None,
        }
    }

    /// The development client certificate of `tenant`'s `workload` (PEM certificate and key
    /// paths), issued from the development cluster CA once and again when it nears expiry;
    /// `None` when the server does not keep a development CA.
    pub fn issue_dev_client_cert(
        &self,
        data_dir: &Path,
        tenant: u64,
        workload: &str,
    ) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
        let NativeSecurity::Tls {
            dev_ca_path: Some(_),
            ..
        } = self
        else {
            return Ok(None);
        };
        let identity = ClientIdentity::new(tenant, workload).map_err(anyhow::Error::msg)?;
        let dir = data_dir.join(DEV_TLS_DIR);
        let stem = identity.file_stem();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        let current = std::fs::read(&cert_path)
            .ok()
            .and_then(|pem| client_cert::parse_pem(&pem).ok())
            .is_some_and(|cert| {
                cert.identity == identity
                    && cert.seconds_left(client_cert::now_unix()) > DEV_CLIENT_CERT_RENEW_SECONDS
            });
        if current && key_path.exists() {
            return Ok(Some((cert_path, key_path)));
        }
        let ca_key = data_dir.join(DEV_CA_DIR).join(cluster_tls::CA_KEY_FILE);
        let (cert, key) = cluster_tls::issue_client_cert(
            &ca_key,
            &identity,
            cluster_tls::CLIENT_CERT_DAYS_DEFAULT,
        )?;
        cluster_tls::write_cert_pair(&dir, &stem, &cert, &key).map(Some)
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The rustls settings: the certificate chain and key in the PEM files, HTTP/2, and client
/// certificates asked for (see the module doc) when a client CA is known.
fn server_config(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&CertificateDer<'static>>,
) -> anyhow::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the certificates in {}", cert_path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "no certificate in {}",
        cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
        .with_context(|| format!("parsing the private key in {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(ca.clone())
                .context("the client CA certificate is not usable as a trust anchor")?;
            let webpki =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()?;
            builder.with_client_cert_verifier(Arc::new(ChainCheckedLater { webpki }))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("the native service's TLS certificate or key")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Asks for a client certificate and checks the client's signature with it (proof that it
/// holds the key), but leaves the chain to `auth.rs`, which can then say what is wrong with
/// it in a gRPC status rather than a bare TLS alert.
#[derive(Debug)]
struct ChainCheckedLater {
    webpki: Arc<dyn danger::ClientCertVerifier>,
}

impl danger::ClientCertVerifier for ChainCheckedLater {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<danger::ClientCertVerified, rustls::Error> {
        Ok(danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The development cluster CA's directory, the CA created there once.
fn ensure_dev_ca(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join(DEV_CA_DIR);
    let exists = |file| dir.join(file).exists();
    if !(exists(cluster_tls::CA_CERT_FILE) && exists(cluster_tls::CA_KEY_FILE)) {
        cluster_tls::init_ca(&dir)
            .with_context(|| format!("creating the development cluster CA in {}", dir.display()))?;
    }
    Ok(dir)
}

/// The names clients may dial this node by: `localhost`, the loopback addresses, the host name
/// and the listen address.
fn local_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty()
            && host
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
        {
            names.push(host.to_owned());
        }
    }
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.sort();
    names.dedup();
    names
}

/// This node's certificate for the native listener in `<data_dir>/tls/`, issued from the CA in
/// `ca_dir` unless one for the same names is there already; returns its PEM and key paths.
fn ensure_dev_node_cert(
    ca_dir: &Path,
    data_dir: &Path,
    listen: SocketAddr,
    node_id: u64,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join(DEV_TLS_DIR);
    let names = local_names(listen);
    let stem = format!("node-{node_id}");
    let names_path = dir.join(format!("{stem}.names"));
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    let wanted = names.join("\n");
    let issued = std::fs::read_to_string(&names_path).ok();
    if issued.as_deref() == Some(wanted.as_str()) && cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let (cert, key) = cluster_tls::issue_node_cert_with_names(
        &ca_dir.join(cluster_tls::CA_KEY_FILE),
        node_id,
        &names,
    )?;
    let paths = cluster_tls::write_cert_pair(&dir, &stem, &cert, &key)?;
    std::fs::write(&names_path, wanted)
        .with_context(|| format!("writing {}", names_path.display()))?;
    Ok(paths)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_certificate_settings_that_contradict_are_refused() {
        let parse = |text: &str| {
            serde_yaml::from_str::<NativeTlsConfig>(text)
                .unwrap()
                .check()
        };
        assert!(parse("{cert: /c, key: /k, require_client_cert: true}").is_err());
        assert!(parse("{cert: /c, key: /k, client_ca: /ca, require_client_cert: true}").is_ok());
        assert!(parse("{insecure_plaintext: true, client_ca: /ca}").is_err());
        assert!(parse("{insecure_plaintext: true, require_client_cert: true}").is_err());
        assert!(parse("{require_client_cert: true}").is_ok());
    }

    #[test]
    fn the_development_ca_and_certificates_are_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:9200".parse().unwrap();
        let config = NativeTlsConfig {
            require_client_cert: true,
            ..Default::default()
        };
        let files = |dir: &Path| {
            [
                "cluster-ca/ca.pem",
                "tls/node-1.pem",
                "tls/client-tenant-1-dev.pem",
            ]
            .map(|file| std::fs::read(dir.join(file)).unwrap())
        };
        let first = NativeSecurity::prepare(&config, dir.path(), listen, 1).unwrap();
        assert_eq!(first.client_certs(), ClientCerts::Required);
        let issued = first.issue_dev_client_cert(dir.path(), 1, "dev").unwrap();
        assert!(issued.is_some());
        let before = files(dir.path());
        let again = NativeSecurity::prepare(&config, dir.path(), listen, 1).unwrap();
        again.issue_dev_client_cert(dir.path(), 1, "dev").unwrap();
        assert_eq!(files(dir.path()), before);
        // Another listen address gets a new node certificate from the same CA.
        let moved: SocketAddr = "127.0.0.2:9200".parse().unwrap();
        NativeSecurity::prepare(&config, dir.path(), moved, 1).unwrap();
        let after = files(dir.path());
        assert_eq!(after[0], before[0]);
        assert_ne!(after[1], before[1]);
    }
}
