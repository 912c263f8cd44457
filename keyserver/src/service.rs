//! The gRPC key service over the key manager. Key-manager calls may fsync, so they run on the
//! blocking pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kiseki_crypto::{KeyError, KeyManager};
use kiseki_proto::keyserver::v1::key_service_server::{KeyService, KeyServiceServer};
use kiseki_proto::keyserver::v1::{
    EnsureTenantRequest, EnsureTenantResponse, GetTenantKeysRequest, GetTenantKeysResponse,
    RotateDekRequest, RotateDekResponse,
};
use kiseki_proto::{key_error_status, tenant_keys_response};
use kiseki_proto::{KEY_MESSAGE_BYTES_MAX, KEY_REQUEST_BYTES_MAX};
use kiseki_types::TenantId;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;

/// Most calls in flight on one connection.
const REQUESTS_PER_CONNECTION_MAX: usize = 64;
/// Longest time one call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `listen`; serves the key service on the returned address until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    manager: Arc<KeyManager>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>)> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let service = KeyServiceServer::new(KeyServer { manager, metrics })
        .max_decoding_message_size(KEY_REQUEST_BYTES_MAX)
        .max_encoding_message_size(KEY_MESSAGE_BYTES_MAX);
    let server = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(REQUESTS_PER_CONNECTION_MAX)
        .timeout(REQUEST_TIMEOUT)
        .add_service(service);
    let incoming = TcpIncoming::from(listener);
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let task = tokio::spawn(server.serve_with_incoming_shutdown(incoming, stopped));
    Ok((bound, task))
}

struct KeyServer {
    manager: Arc<KeyManager>,
    metrics: Arc<Metrics>,
}

impl KeyServer {
    /// Runs one key-manager call on the blocking pool, counting it and mapping its error.
    async fn call<T: Send + 'static>(
        &self,
        rpc: &'static str,
        tenant: TenantId,
        work: impl FnOnce(&KeyManager) -> Result<T, KeyError> + Send + 'static,
    ) -> Result<T, Status> {
        self.metrics.request(rpc);
        let manager = Arc::clone(&self.manager);
        let result = match tokio::task::spawn_blocking(move || work(&manager)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => {
                tracing::warn!(rpc, %tenant, %error, "key service call failed");
                key_error_status(&error)
            }
            Err(error) => {
                tracing::error!(rpc, %tenant, %error, "key service call panicked");
                Status::internal("key manager task failed")
            }
        };
        self.metrics.error(rpc, result.code());
        Err(result)
    }
}

#[tonic::async_trait]
impl KeyService for KeyServer {
    async fn ensure_tenant(
        &self,
        request: Request<EnsureTenantRequest>,
    ) -> Result<Response<EnsureTenantResponse>, Status> {
        let tenant = TenantId(request.into_inner().tenant_id);
        self.call("EnsureTenant", tenant, move |manager| {
            manager.ensure_tenant(tenant)
        })
        .await?;
        Ok(Response::new(EnsureTenantResponse {}))
    }

    async fn get_tenant_keys(
        &self,
        request: Request<GetTenantKeysRequest>,
    ) -> Result<Response<GetTenantKeysResponse>, Status> {
        let tenant = TenantId(request.into_inner().tenant_id);
        let material = self
            .call("GetTenantKeys", tenant, move |manager| {
                manager.tenant_material(tenant)
            })
            .await?;
        // An audit trail of keys leaving this process (never the keys themselves).
        tracing::info!(%tenant, epochs = material.deks.len(), "tenant keys sent");
        Ok(Response::new(tenant_keys_response(&material)))
    }

    async fn rotate_dek(
        &self,
        request: Request<RotateDekRequest>,
    ) -> Result<Response<RotateDekResponse>, Status> {
        let tenant = TenantId(request.into_inner().tenant_id);
        let epoch = self
            .call("RotateDek", tenant, move |manager| {
                manager.rotate_dek(tenant)
            })
            .await?;
        Ok(Response::new(RotateDekResponse {
            current_epoch: epoch.0,
        }))
    }
}
