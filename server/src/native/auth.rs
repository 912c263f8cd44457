//! Authentication of native clients. Two identities, checked locally (no control-plane call):
//! - a client certificate of the cluster CA (mutual TLS: the handshake proves the client holds
//!   its key; `client_cert.rs` verifies the chain and reads the tenant from the URI SAN);
//! - a tenant access key (id and secret, as the S3 gateway uses) in the call's metadata: the
//!   key's tenant. Keys live in `access-keys.yaml` in the data dir; the file is read again when
//!   an unknown key id shows up, at most once a second.
//!
//! With a certificate no key is needed; a key sent as well must belong to the same tenant.
//! When the listener requires certificates, a key alone is refused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kiseki_proto::{ACCESS_KEY_HEADER, SECRET_KEY_HEADER};
use kiseki_types::TenantId;
use rustls_pki_types::CertificateDer;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::client_cert::CertIdentities;
use super::tls::ClientCerts;
use crate::access_keys::AccessKey;
use crate::cluster::tls::ClientIdentity;

/// Shortest time between two reloads of the key file.
const RELOAD_INTERVAL_MIN: Duration = Duration::from_secs(1);

pub struct Authenticator {
    path: PathBuf,
    keys: RwLock<(Vec<AccessKey>, Option<Instant>)>,
    client_certs: ClientCerts,
    identities: CertIdentities,
}

impl Authenticator {
    /// Keys from `data_dir`; client certificates as `client_certs` says, of the CA `client_ca`.
    pub fn new(
        data_dir: PathBuf,
        client_certs: ClientCerts,
        client_ca: Option<CertificateDer<'static>>,
    ) -> Self {
        Authenticator {
            path: data_dir.join("access-keys.yaml"),
            keys: RwLock::new((Vec::new(), None)),
            client_certs,
            identities: CertIdentities::new(client_ca.as_ref()),
        }
    }

    /// The caller's tenant and workload: from the client certificate chain in `peer_certs`
    /// (leaf first; its chain is verified here), else from the access key in `metadata`.
    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    ) -> Result<ClientIdentity, Status> {
        let chain = peer_certs.filter(|certs| !certs.is_empty());
        let Some(chain) = chain.filter(|_| self.client_certs != ClientCerts::Off) else {
            if self.client_certs == ClientCerts::Required {
                return Err(Status::unauthenticated(
                    "this server requires a client certificate signed by its cluster CA \
                     (kiseki-client-fuse --cert FILE --key FILE); none was presented",
                ));
            }
            return self.authenticate_key(metadata);
        };
        let identity = self
            .identities
            .identify(&chain)
            .map_err(Status::unauthenticated)?;
        if metadata.contains_key(ACCESS_KEY_HEADER) {
            let key_tenant = self.authenticate_key(metadata)?.tenant;
            if key_tenant != identity.tenant {
                return Err(Status::permission_denied(format!(
                    "the access key is for tenant {} but the client certificate identifies \
                     {} (tenant {}): use one identity, or both of the same tenant",
                    key_tenant.0,
                    identity.uri(),
                    identity.tenant.0
                )));
            }
        }
        Ok(identity)
    }

    /// The tenant and workload of the access key in `metadata`.
    fn authenticate_key(&self, metadata: &MetadataMap) -> Result<ClientIdentity, Status> {
        let header = |name: &str| {
            metadata
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (id, secret) = (header(ACCESS_KEY_HEADER), header(SECRET_KEY_HEADER));
        if id.is_empty() {
            return Err(Status::unauthenticated(
                "no access key given (and no client certificate)",
            ));
        }
        if let Some(tenant) = self.check(&id, &secret) {
            return Ok(tenant);
        }
        self.reload();
        self.check(&id, &secret).ok_or_else(|| {
            Status::unauthenticated(format!("unknown access key {id} or wrong secret"))
        })
    }

    fn check(&self, id: &str, secret: &str) -> Option<ClientIdentity> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = keys.0.iter().find(|key| key.access_key_id == id)?;
        constant_time_equal(key.secret_access_key.as_bytes(), secret.as_bytes()).then(|| {
            ClientIdentity {
                tenant: TenantId(key.tenant),
                workload: key.workload.clone(),
            }
        })
    }

    fn reload(&self) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if keys
            .1
            .is_some_and(|loaded| loaded.elapsed() < RELOAD_INTERVAL_MIN)
        {
            return;
        }
        keys.1 = Some(Instant::now());
        match std::fs::read_to_string(&self.path)
            .map(|text| serde_yaml::from_str::<Vec<AccessKey>>(&text))
        {
            Ok(Ok(loaded)) => keys.0 = loaded,
            Ok(Err(error)) => {
                tracing::warn!(path = %self.path.display(), %error, "invalid access key file")
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the access key file")
            }
        }
    }
}

fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Total and free bytes of the file system holding `dir`.
pub fn disk_space(dir: &Path) -> (u64, u64) {
    match rustix::fs::statvfs(dir) {
        Ok(stat) => (stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize),
        Err(_) => (0, 0),
    }
}
