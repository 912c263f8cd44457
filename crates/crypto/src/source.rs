use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kiseki_types::TenantId;

use crate::{KeyError, KeyManager, TenantKeyring};

/// The future a [`KeySource`] returns.
pub type KeyFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KeyError>> + Send + 'a>>;

/// Where a storage server gets tenant keys: the embedded [`KeyManager`] on a single node, or
/// a remote key server (`kiseki_proto::RemoteKeySource`).
pub trait KeySource: Send + Sync {
    /// The tenant's keyring. Fails with [`KeyError::UnknownTenant`] if it has no keys yet.
    fn keyring(&self, tenant: TenantId) -> KeyFuture<'_, Arc<TenantKeyring>>;

    /// Creates the tenant's keys unless they exist.
    fn ensure_tenant(&self, tenant: TenantId) -> KeyFuture<'_, ()>;
}

/// Embedded mode. A cached keyring is returned at once; a miss or a new tenant blocks the
/// calling task on key-file I/O (a few milliseconds for an fsync), which is rare.
impl KeySource for KeyManager {
    fn keyring(&self, tenant: TenantId) -> KeyFuture<'_, Arc<TenantKeyring>> {
        Box::pin(async move { KeyManager::keyring(self, tenant) })
    }

    fn ensure_tenant(&self, tenant: TenantId) -> KeyFuture<'_, ()> {
        Box::pin(async move { KeyManager::ensure_tenant(self, tenant) })
    }
}
