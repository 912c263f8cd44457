//! Where the native service gets a tenant's raw key material to hand to an authenticated
//! client: the embedded key manager, or the key server over gRPC.
//!
//! Security today: any holder of a tenant's access key receives the tenant's keys (addressing
//! key and every DEK), over plaintext gRPC. That is acceptable on a development host only. With
//! mTLS (cluster CA) and OIDC workload identities this becomes workload-scoped: a client gets
//! the keys of the datasets its workload may read, over an authenticated channel.

use std::sync::Arc;

use kiseki_crypto::{KeyError, KeyManager};
use kiseki_proto::keyserver::v1::key_service_client::KeyServiceClient;
use kiseki_proto::keyserver::v1::{GetTenantKeysRequest, GetTenantKeysResponse};
use kiseki_proto::{
    status_key_error, tenant_keys_response, KEY_MESSAGE_BYTES_MAX, KEY_REQUEST_BYTES_MAX,
};
use kiseki_types::TenantId;
use tonic::transport::{Channel, Endpoint};

/// The source of raw tenant key material.
#[derive(Clone)]
pub enum KeyMaterialSource {
    /// The key manager embedded in this process.
    Embedded(Arc<KeyManager>),
    /// A `kiseki-keyserver`.
    Remote(KeyServiceClient<Channel>),
}

impl KeyMaterialSource {
    /// A remote source for the key server at `url` (connects on first use).
    pub fn remote(url: &str) -> Result<Self, KeyError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|error| KeyError::Remote(format!("invalid address {url}: {error}")))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(10));
        let client = KeyServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(KEY_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(KEY_REQUEST_BYTES_MAX);
        Ok(KeyMaterialSource::Remote(client))
    }

    /// The wire form of `tenant`'s key material.
    pub async fn tenant_keys(&self, tenant: TenantId) -> Result<GetTenantKeysResponse, KeyError> {
        match self {
            KeyMaterialSource::Embedded(manager) => {
                let material = manager.tenant_material(tenant)?;
                Ok(tenant_keys_response(&material))
            }
            KeyMaterialSource::Remote(client) => client
                .clone()
                .get_tenant_keys(GetTenantKeysRequest {
                    tenant_id: tenant.0,
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| status_key_error(tenant, &status)),
        }
    }
}
