//! Tenant keys on the wire, and key errors as gRPC statuses (mapped here only).

use kiseki_crypto::{DekEpoch, KeyError, TenantKeyMaterial, DEK_EPOCHS_MAX, KEY_BYTES};
use kiseki_types::TenantId;
use tonic::{Code, Status};
use zeroize::{Zeroize, Zeroizing};

use crate::keyserver::v1::{DataKey, GetTenantKeysResponse};

/// Largest key-service response either side accepts: a keyring of [`DEK_EPOCHS_MAX`] epochs
/// fits with room to spare (about 40 bytes per epoch on the wire).
pub const KEY_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// Largest key-service request (requests carry a tenant id only).
pub const KEY_REQUEST_BYTES_MAX: usize = 4 * 1024;

const _: () = assert!(DEK_EPOCHS_MAX * 64 + 1024 <= KEY_MESSAGE_BYTES_MAX);

/// The response carrying `material`. Its key bytes are plain `Vec`s, which prost does not
/// zeroize: the caller should zeroize or drop it promptly.
pub fn tenant_keys_response(material: &TenantKeyMaterial) -> GetTenantKeysResponse {
    GetTenantKeysResponse {
        tenant_id: material.tenant.0,
        addressing_key: material.addressing.to_vec(),
        current_epoch: material.current.0,
        data_keys: material
            .deks
            .iter()
            .map(|(epoch, key)| DataKey {
                epoch: epoch.0,
                key: key.to_vec(),
            })
            .collect(),
    }
}

/// Checks a response for `tenant` and turns it into key material, zeroizing the message's
/// key bytes whatever the outcome.
pub fn tenant_key_material(
    tenant: TenantId,
    mut response: GetTenantKeysResponse,
) -> Result<TenantKeyMaterial, KeyError> {
    let result = material_from(tenant, &response);
    response.addressing_key.zeroize();
    for data_key in &mut response.data_keys {
        data_key.key.zeroize();
    }
    result
}

fn material_from(
    tenant: TenantId,
    response: &GetTenantKeysResponse,
) -> Result<TenantKeyMaterial, KeyError> {
    let invalid = |reason: String| KeyError::InvalidMaterial { tenant, reason };
    if response.tenant_id != tenant.0 {
        return Err(invalid(format!(
            "response is for tenant {}",
            response.tenant_id
        )));
    }
    if response.data_keys.len() > DEK_EPOCHS_MAX {
        return Err(invalid(format!("{} DEK epochs", response.data_keys.len())));
    }
    let addressing = key_bytes(&response.addressing_key)
        .ok_or_else(|| invalid("addressing key is not 32 bytes".to_owned()))?;
    let mut deks = Vec::with_capacity(response.data_keys.len());
    for data_key in &response.data_keys {
        let key = key_bytes(&data_key.key)
            .ok_or_else(|| invalid(format!("DEK of epoch {} is not 32 bytes", data_key.epoch)))?;
        deks.push((DekEpoch(data_key.epoch), key));
    }
    Ok(TenantKeyMaterial {
        tenant,
        addressing,
        current: DekEpoch(response.current_epoch),
        deks,
    })
}

fn key_bytes(bytes: &[u8]) -> Option<Zeroizing<[u8; KEY_BYTES]>> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    if bytes.len() != KEY_BYTES {
        return None;
    }
    key.copy_from_slice(bytes);
    Some(key)
}

/// The gRPC status a key server answers for `error`.
pub fn key_error_status(error: &KeyError) -> Status {
    let code = match error {
        KeyError::UnknownTenant(_) | KeyError::UnknownEpoch { .. } => Code::NotFound,
        KeyError::KekDestroyed(_) => Code::FailedPrecondition,
        KeyError::TooManyEpochs(_) => Code::ResourceExhausted,
        KeyError::UnwrapFailed(_)
        | KeyError::UnknownKekVersion { .. }
        | KeyError::CorruptKeyFile { .. } => Code::DataLoss,
        KeyError::Io { .. } | KeyError::Remote(_) => Code::Unavailable,
        KeyError::InvalidMaterial { .. } | KeyError::Crypto(_) => Code::Internal,
    };
    Status::new(code, error.to_string())
}

/// The key error a client reports for a failed call about `tenant`.
pub fn status_key_error(tenant: TenantId, status: &Status) -> KeyError {
    match status.code() {
        Code::NotFound => KeyError::UnknownTenant(tenant),
        Code::FailedPrecondition => KeyError::KekDestroyed(tenant),
        Code::ResourceExhausted => KeyError::TooManyEpochs(tenant),
        code => KeyError::Remote(format!("{code:?}: {}", status.message())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn material() -> TenantKeyMaterial {
        TenantKeyMaterial {
            tenant: TenantId(3),
            addressing: Zeroizing::new([1; KEY_BYTES]),
            current: DekEpoch(2),
            deks: vec![
                (DekEpoch(1), Zeroizing::new([2; KEY_BYTES])),
                (DekEpoch(2), Zeroizing::new([3; KEY_BYTES])),
            ],
        }
    }

    #[test]
    fn material_round_trips_and_bad_responses_are_refused() {
        let response = tenant_keys_response(&material());
        let back = tenant_key_material(TenantId(3), response.clone()).unwrap();
        assert_eq!(*back.addressing, [1; KEY_BYTES]);
        assert_eq!(back.current, DekEpoch(2));
        assert_eq!(back.deks.len(), 2);
        assert!(tenant_key_material(TenantId(4), response.clone()).is_err());
        let mut short = response;
        short.data_keys[0].key.pop();
        assert!(matches!(
            tenant_key_material(TenantId(3), short),
            Err(KeyError::InvalidMaterial { .. })
        ));
    }

    #[test]
    fn statuses_map_back_to_key_errors() {
        let tenant = TenantId(5);
        let status = key_error_status(&KeyError::UnknownTenant(tenant));
        assert!(
            matches!(status_key_error(tenant, &status), KeyError::UnknownTenant(t) if t == tenant)
        );
        let status = key_error_status(&KeyError::KekDestroyed(tenant));
        assert!(matches!(
            status_key_error(tenant, &status),
            KeyError::KekDestroyed(_)
        ));
    }
}
