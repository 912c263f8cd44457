//! Authentication and the request's operation name: s3s verifies SigV4 (headers,
//! `aws-chunked` streaming, presigned URLs) with the secret this lookup returns; the access
//! check refuses unsigned requests and records which operation a request was, for metrics.

use std::sync::{Arc, OnceLock};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

use crate::access_keys::AccessKeys;

/// Looks secrets up among the server's access keys.
pub struct KeyLookup(pub Arc<AccessKeys>);

#[async_trait::async_trait]
impl S3Auth for KeyLookup {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.find(access_key) {
            Some(key) => Ok(SecretKey::from(key.secret_access_key.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Where the access check leaves the operation name of a request (a request extension).
#[derive(Clone, Default)]
pub struct OperationName(pub Arc<OnceLock<String>>);

/// Refuses requests without a verified signature; records the operation name.
pub struct SignedOnly;

#[async_trait::async_trait]
impl S3Access for SignedOnly {
    async fn check(&self, context: &mut S3AccessContext<'_>) -> S3Result<()> {
        let name = context.s3_op().name().to_owned();
        if let Some(cell) = context.extensions_mut().get::<OperationName>() {
            let _ = cell.0.set(name);
        }
        match context.credentials() {
            Some(_) => Ok(()),
            None => Err(s3_error!(AccessDenied, "Signature is required")),
        }
    }
}
