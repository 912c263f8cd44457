//! The one place where namespace errors become S3 errors (code, HTTP status, message).

use kiseki_namespace::object::ObjectError;
use kiseki_types::{ErrorKind, NamespaceError};
use s3s::{s3_error, S3Error};

/// The S3 error for a failed namespace call. Server-side failures are logged here, where
/// they are handled; client errors are not.
pub fn s3_error(error: ObjectError) -> S3Error {
    match error {
        ObjectError::NoSuchBucket(bucket) => {
            s3_error!(NoSuchBucket, "bucket {bucket:?} does not exist")
        }
        ObjectError::NoSuchKey(key) => s3_error!(NoSuchKey, "key {key:?} does not exist"),
        ObjectError::BucketExists(bucket) => {
            s3_error!(BucketAlreadyOwnedByYou, "bucket {bucket:?} exists")
        }
        ObjectError::BucketNotEmpty(bucket) => {
            s3_error!(BucketNotEmpty, "bucket {bucket:?} is not empty")
        }
        ObjectError::NoSuchUpload(upload) => {
            s3_error!(NoSuchUpload, "upload {upload:?} does not exist")
        }
        ObjectError::InvalidPart(part) => {
            s3_error!(InvalidPart, "part {part} is missing or its ETag differs")
        }
        ObjectError::InvalidPartOrder => {
            s3_error!(InvalidPartOrder, "parts must be listed in ascending order")
        }
        ObjectError::EntityTooSmall(part) => {
            s3_error!(EntityTooSmall, "part {part} is smaller than 5 MiB")
        }
        ObjectError::PreconditionFailed => s3_error!(PreconditionFailed),
        ObjectError::NotModified => s3_error!(NotModified),
        ObjectError::InvalidKey(message) => s3_error!(InvalidArgument, "key {message}"),
        ObjectError::Namespace(error) => namespace_error(error),
    }
}

/// The S3 error for a namespace error met outside the S3-specific calls.
pub fn namespace_error(error: NamespaceError) -> S3Error {
    let message = error.message.clone();
    match error.kind {
        ErrorKind::NotFound => s3_error!(NoSuchKey, "{message}"),
        ErrorKind::InvalidArgument
        | ErrorKind::AlreadyExists
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory => {
            s3_error!(InvalidArgument, "{message}")
        }
        ErrorKind::NameTooLong => s3_error!(KeyTooLongError, "{message}"),
        ErrorKind::NotEmpty => s3_error!(BucketNotEmpty, "{message}"),
        ErrorKind::PermissionDenied => s3_error!(AccessDenied, "{message}"),
        ErrorKind::CrossShard | ErrorKind::Unsupported => s3_error!(NotImplemented, "{message}"),
        ErrorKind::Stale => s3_error!(PreconditionFailed, "{message}"),
        ErrorKind::NoSpace | ErrorKind::Unavailable => {
            tracing::warn!(%error, "S3 request failed: storage unavailable");
            s3_error!(ServiceUnavailable, "{message}")
        }
        ErrorKind::Corrupt => {
            tracing::error!(%error, "S3 request failed: stored data failed verification");
            s3_error!(InternalError, "{message}")
        }
    }
}
