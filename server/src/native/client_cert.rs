//! Identities of native clients from their TLS client certificates: the tenant and workload in
//! the URI SAN `kiseki://tenant/<id>/workload/<name>` (see `cluster/tls.rs`).
//!
//! The TLS handshake has checked that the client holds the certificate's key; this module
//! verifies the chain against the client CA (webpki: signature, validity, clientAuth usage),
//! then reads the identity. That happens once per distinct certificate: results (good or bad)
//! are kept in a bounded map keyed by the certificate chain's bytes, so a call costs a hash
//! lookup and a clock read (the validity window is checked on every call). It never calls the
//! control plane and never sees tenant data or keys.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::cluster::tls::ClientIdentity;

/// Distinct certificates remembered; the map is emptied when it is full.
const CERTIFICATES_CACHED_MAX: usize = 4096;

/// What a client certificate says, read once.
#[derive(Clone, Debug)]
pub struct CertIdentity {
    /// The tenant and workload of the URI SAN.
    pub identity: ClientIdentity,
    /// The identity as written in the certificate.
    pub uri: String,
    not_before_unix: i64,
    not_after_unix: i64,
    not_after: String,
}

impl CertIdentity {
    /// Whether the certificate is within its validity window at `now_unix`; an error names
    /// the boundary crossed.
    pub fn check_valid_at(&self, now_unix: i64) -> Result<(), String> {
        if now_unix > self.not_after_unix {
            return Err(format!(
                "the client certificate of {} expired on {}",
                self.uri, self.not_after
            ));
        }
        if now_unix < self.not_before_unix {
            return Err(format!(
                "the client certificate of {} is not valid yet",
                self.uri
            ));
        }
        Ok(())
    }

    /// Seconds until the certificate expires, from `now_unix` (negative once expired).
    pub fn seconds_left(&self, now_unix: i64) -> i64 {
        self.not_after_unix - now_unix
    }
}

/// Reads the identity and validity of a DER client certificate.
pub fn parse(der: &[u8]) -> Result<CertIdentity, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|error| format!("the client certificate cannot be parsed: {error}"))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|error| format!("the client certificate's SAN cannot be parsed: {error}"))?;
    let uris: Vec<&str> = names
        .iter()
        .flat_map(|names| names.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    let mut identities = uris
        .iter()
        .filter_map(|uri| ClientIdentity::from_uri(uri).map(|identity| (identity, *uri)));
    let (identity, uri) = identities.next().ok_or_else(|| {
        format!(
            "the client certificate ({}) carries no Kiseki identity: expected a URI SAN \
             kiseki://tenant/<id>/workload/<name> (kiseki-server cluster-ca issue-client-cert)",
            cert.subject()
        )
    })?;
    if identities.next().is_some() {
        return Err("the client certificate carries more than one Kiseki identity".into());
    }
    let validity = cert.validity();
    Ok(CertIdentity {
        identity,
        uri: uri.to_owned(),
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        not_after: validity.not_after.to_string(),
    })
}

/// Reads a PEM certificate file's identity (to check a certificate this server issued).
pub fn parse_pem(pem: &[u8]) -> Result<CertIdentity, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|error| format!("not a PEM certificate: {error}"))?;
    parse(&pem.contents)
}

/// The clock as Unix seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// What webpki's verdict on a chain means to the user.
fn chain_error(error: &webpki::Error) -> String {
    match error {
        // Another CA of the same name fails on the signature rather than the name.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            "the client certificate is not signed by the cluster CA \
             this server trusts for clients"
                .into()
        }
        webpki::Error::CertExpired { .. } => "the client certificate has expired".into(),
        webpki::Error::CertNotValidYet { .. } => "the client certificate is not valid yet".into(),
        webpki::Error::InvalidCertValidity => {
            "the client certificate's validity period is malformed (ends before it starts)".into()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the client certificate is not for client authentication (no clientAuth usage)".into()
        }
        other => format!("the client certificate was refused: {other:?}"),
    }
}

/// The verdict on one certificate: its identity, or why it is refused.
type Verdict = Arc<Result<CertIdentity, String>>;

/// Verified client certificate chains, by their leaf's DER bytes.
pub struct CertIdentities {
    anchor: Option<TrustAnchor<'static>>,
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    parsed: RwLock<HashMap<Vec<u8>, Verdict>>,
}

impl CertIdentities {
    /// Verifies against the CA certificate `ca` (no client certificate passes without one).
    pub fn new(ca: Option<&CertificateDer<'static>>) -> Self {
        let anchor = ca.and_then(|ca| match webpki::anchor_from_trusted_cert(ca) {
            Ok(anchor) => Some(anchor.to_owned()),
            Err(error) => {
                tracing::warn!(
                    ?error,
                    "the client CA certificate is not a usable trust anchor"
                );
                None
            }
        });
        CertIdentities {
            anchor,
            algorithms: tokio_rustls::rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .all,
            parsed: RwLock::new(HashMap::new()),
        }
    }

    /// The identity of the client certificate chain `chain` (leaf first), valid now.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Result<ClientIdentity, String> {
        let leaf = chain.first().ok_or("no client certificate")?;
        let known = self
            .parsed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(leaf.as_ref())
            .cloned();
        let parsed = match known {
            Some(parsed) => parsed,
            None => {
                let parsed = Arc::new(self.verify(chain));
                let mut map = self
                    .parsed
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if map.len() >= CERTIFICATES_CACHED_MAX {
                    map.clear();
                }
                map.insert(leaf.to_vec(), Arc::clone(&parsed));
                parsed
            }
        };
        let cert = parsed.as_ref().as_ref().map_err(Clone::clone)?;
        cert.check_valid_at(now_unix())?;
        Ok(cert.identity.clone())
    }

    /// Verifies `chain` against the CA (at the certificate's own start of validity, so the
    /// verdict does not depend on when it was first seen: the window is checked per call),
    /// then reads the identity.
    fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<CertIdentity, String> {
        let leaf = chain.first().ok_or("no client certificate")?;
        let parsed = parse(leaf.as_ref())?;
        let anchor = self
            .anchor
            .as_ref()
            .ok_or("this server has no usable client CA")?;
        let cert = webpki::EndEntityCert::try_from(leaf)
            .map_err(|error| format!("the client certificate cannot be read: {error:?}"))?;
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(parsed.not_before_unix.max(0)).unwrap_or(0),
        ));
        cert.verify_for_usage(
            self.algorithms,
            std::slice::from_ref(anchor),
            &chain[1..],
            at,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|error| chain_error(&error))?;
        Ok(parsed)
    }

    /// Certificates remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.parsed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::cluster::tls;

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()]
    }

    #[test]
    fn identity_comes_from_the_uri_san_once_per_certificate() {
        let dir = tempfile::tempdir().unwrap();
        tls::init_ca(dir.path()).unwrap();
        let ca_key = dir.path().join(tls::CA_KEY_FILE);
        let identity = ClientIdentity::new(3, "train").unwrap();
        let (cert, _) = tls::issue_client_cert(&ca_key, &identity, 1).unwrap();
        let ca = std::fs::read(dir.path().join(tls::CA_CERT_FILE)).unwrap();
        let ca = CertificateDer::from_pem_slice(&ca).unwrap();
        let identities = CertIdentities::new(Some(&ca));
        assert_eq!(identities.identify(&der(&cert)).unwrap(), identity);
        assert_eq!(identities.identify(&der(&cert)).unwrap(), identity);
        assert_eq!(identities.len(), 1);

        // A node certificate of the same CA names no tenant.
        let (node, _) = tls::issue_node_cert(&ca_key, 1).unwrap();
        let error = identities.identify(&der(&node)).unwrap_err();
        assert!(error.contains("carries no Kiseki identity"), "{error}");
        assert!(
            error.contains("kiseki://tenant/<id>/workload/<name>"),
            "{error}"
        );

        // An expired certificate is refused with its date.
        let past = SystemTime::now() - Duration::from_secs(3 * 86_400);
        let (expired, _) = tls::issue_client_cert_valid(
            &ca_key,
            &identity,
            past,
            past + Duration::from_secs(86_400),
        )
        .unwrap();
        let error = identities.identify(&der(&expired)).unwrap_err();
        assert!(
            error.contains("kiseki://tenant/3/workload/train expired on"),
            "{error}"
        );

        // A certificate of another CA is refused as such.
        let other = tempfile::tempdir().unwrap();
        tls::init_ca(other.path()).unwrap();
        let (foreign, _) =
            tls::issue_client_cert(&other.path().join(tls::CA_KEY_FILE), &identity, 1).unwrap();
        let error = identities.identify(&der(&foreign)).unwrap_err();
        assert!(error.contains("not signed by the cluster CA"), "{error}");
    }
}
