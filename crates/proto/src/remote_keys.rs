//! [`RemoteKeySource`]: tenant keys from a key server over gRPC, cached per tenant.
//!
//! Security today: keys cross this channel unwrapped, over plaintext HTTP/2, which is only
//! acceptable on loopback (single host, key server and storage server side by side). Mutual TLS
//! with the cluster CA arrives with the cluster issue; until then never point this at a remote
//! host.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kiseki_crypto::{DekEpoch, KeyError, KeyFuture, KeySource, TenantKeyring};
use kiseki_types::TenantId;
use tonic::transport::{Channel, Endpoint};

use crate::keyserver::v1::key_service_client::KeyServiceClient;
use crate::keyserver::v1::{EnsureTenantRequest, GetTenantKeysRequest, RotateDekRequest};
use crate::{status_key_error, tenant_key_material, KEY_MESSAGE_BYTES_MAX, KEY_REQUEST_BYTES_MAX};

/// Longest wait for a connection to the key server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one key-service call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`KeySource`] backed by a key server. Keyrings are cached (one per tenant); after a DEK
/// rotation elsewhere, a reader that meets an unknown epoch calls [`RemoteKeySource::refresh`].
pub struct RemoteKeySource {
    client: KeyServiceClient<Channel>,
    keyrings: RwLock<HashMap<TenantId, Arc<TenantKeyring>>>,
}

impl RemoteKeySource {
    /// A source for the key server at `endpoint` (for example `http://127.0.0.1:7400`). The
    /// connection is made on first use; must be called inside a Tokio runtime.
    pub fn connect_lazy(endpoint: &str) -> Result<Self, KeyError> {
        let endpoint = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|error| KeyError::Remote(format!("invalid address {endpoint}: {error}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let client = KeyServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(KEY_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(KEY_REQUEST_BYTES_MAX);
        Ok(RemoteKeySource {
            client,
            keyrings: RwLock::new(HashMap::new()),
        })
    }

    /// Fetches the tenant's keyring from the key server and replaces the cached one.
    pub async fn refresh(&self, tenant: TenantId) -> Result<Arc<TenantKeyring>, KeyError> {
        let request = GetTenantKeysRequest {
            tenant_id: tenant.0,
        };
        let response = self
            .client
            .clone()
            .get_tenant_keys(request)
            .await
            .map_err(|status| status_key_error(tenant, &status))?;
        let material = tenant_key_material(tenant, response.into_inner())?;
        let keyring = Arc::new(TenantKeyring::from_material(&material)?);
        self.write_cache().insert(tenant, Arc::clone(&keyring));
        Ok(keyring)
    }

    /// Asks the key server for a new DEK epoch and refreshes the cached keyring.
    pub async fn rotate_dek(&self, tenant: TenantId) -> Result<DekEpoch, KeyError> {
        let response = self
            .client
            .clone()
            .rotate_dek(RotateDekRequest {
                tenant_id: tenant.0,
            })
            .await
            .map_err(|status| status_key_error(tenant, &status))?;
        self.refresh(tenant).await?;
        Ok(DekEpoch(response.into_inner().current_epoch))
    }

    /// Drops the cached keyring of `tenant` (for example when its keys were destroyed).
    pub fn invalidate(&self, tenant: TenantId) {
        self.write_cache().remove(&tenant);
    }

    fn cached(&self, tenant: TenantId) -> Option<Arc<TenantKeyring>> {
        let keyrings = self
            .keyrings
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keyrings.get(&tenant).cloned()
    }

    fn write_cache(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, Arc<TenantKeyring>>> {
        self.keyrings
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl KeySource for RemoteKeySource {
    fn keyring(&self, tenant: TenantId) -> KeyFuture<'_, Arc<TenantKeyring>> {
        Box::pin(async move {
            match self.cached(tenant) {
                Some(keyring) => Ok(keyring),
                None => self.refresh(tenant).await,
            }
        })
    }

    fn ensure_tenant(&self, tenant: TenantId) -> KeyFuture<'_, ()> {
        Box::pin(async move {
            self.client
                .clone()
                .ensure_tenant(EnsureTenantRequest {
                    tenant_id: tenant.0,
                })
                .await
                .map_err(|status| status_key_error(tenant, &status))?;
            Ok(())
        })
    }
}
