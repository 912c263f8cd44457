//! The S3 gateway: a thin adapter from S3 requests (parsed, SigV4-verified and encoded by
//! `s3s`) to the namespace's object calls. Each request acts for the tenant whose access key
//! signed it, through that tenant's `TenantNamespace` only.
//!
//! Only this module knows XML, SigV4 and S3 error codes. It holds no semantics of its own:
//! buckets, keys, ETags, conditions, listings and multipart uploads live in
//! `kiseki_namespace::object` and the namespace's upload calls.

mod auth;
mod body;
mod convert;
mod error;
mod handlers;
mod listener;
mod metrics;

pub use listener::start;
pub use metrics::S3Metrics;
