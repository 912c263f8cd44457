//! Pure conversions between s3s types and namespace types: times, ETags, conditions,
//! metadata headers, listing tokens and `encoding-type=url`. No I/O, no semantics.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use kiseki_namespace::object::{self, EtagCondition, ObjectMetadata, Preconditions};
use kiseki_namespace::PutCondition;
use kiseki_types::Timestamp;
use s3s::dto::{ETag, ETagCondition, Metadata, TimestampFormat};
use s3s::{s3_error, S3Result};

/// An S3 timestamp of a namespace time.
pub fn s3_time(time: Timestamp) -> s3s::dto::Timestamp {
    let nanos = u64::try_from(time.0).unwrap_or(0);
    s3s::dto::Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// Unix seconds of an S3 timestamp.
pub fn unix_seconds(time: &s3s::dto::Timestamp) -> i64 {
    let mut text = Vec::new();
    if time
        .format(TimestampFormat::EpochSeconds, &mut text)
        .is_err()
    {
        return 0;
    }
    let text = String::from_utf8_lossy(&text);
    text.split('.')
        .next()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(0)
}

/// A strong ETag header value.
pub fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

fn etag_condition(condition: ETagCondition) -> EtagCondition {
    match condition {
        ETagCondition::Any => EtagCondition::Any,
        ETagCondition::ETag(tag) => EtagCondition::Tag(tag.into_value()),
    }
}

/// The read conditions of a request.
pub fn preconditions(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
    if_modified_since: Option<&s3s::dto::Timestamp>,
    if_unmodified_since: Option<&s3s::dto::Timestamp>,
) -> Preconditions {
    Preconditions {
        if_match: if_match.map(etag_condition),
        if_none_match: if_none_match.map(etag_condition),
        if_modified_since: if_modified_since.map(unix_seconds),
        if_unmodified_since: if_unmodified_since.map(unix_seconds),
    }
}

/// The condition of a conditional PUT (`If-None-Match: *`, `If-Match: "etag"`).
pub fn put_condition(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> S3Result<Option<PutCondition>> {
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (None, Some(ETagCondition::Any)) => Ok(Some(PutCondition::Absent)),
        (Some(ETagCondition::ETag(tag)), None) => Ok(Some(PutCondition::ETag(tag.into_value()))),
        _ => Err(s3_error!(
            NotImplemented,
            "only If-None-Match: * or If-Match: <etag> are supported on writes"
        )),
    }
}

/// The S3 headers an object keeps, as system metadata.
#[derive(Default)]
pub struct StoredHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<s3s::dto::Timestamp>,
}

/// The metadata of a write: `x-amz-meta-*` and the stored headers.
pub fn object_metadata(user: Option<Metadata>, headers: StoredHeaders) -> ObjectMetadata {
    let user = user
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.into_bytes()))
        .collect();
    let mut system = BTreeMap::new();
    let fields = [
        (object::CONTENT_TYPE_KEY, headers.content_type),
        (object::CONTENT_ENCODING_KEY, headers.content_encoding),
        (object::CONTENT_DISPOSITION_KEY, headers.content_disposition),
        (object::CONTENT_LANGUAGE_KEY, headers.content_language),
        (object::CACHE_CONTROL_KEY, headers.cache_control),
        (
            object::EXPIRES_KEY,
            headers
                .expires
                .as_ref()
                .map(|time| unix_seconds(time).to_string()),
        ),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            system.insert(key.to_owned(), value);
        }
    }
    ObjectMetadata { user, system }
}

/// User metadata as response headers.
pub fn user_metadata(metadata: &BTreeMap<String, Vec<u8>>) -> Option<Metadata> {
    (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(key, value)| (key.clone(), String::from_utf8_lossy(value).into_owned()))
            .collect()
    })
}

/// A stored header of an object.
pub fn stored(system: &BTreeMap<String, String>, key: &str) -> Option<String> {
    system.get(key).cloned()
}

/// The stored `Expires` header.
pub fn stored_expires(system: &BTreeMap<String, String>) -> Option<s3s::dto::Timestamp> {
    let seconds: u64 = system.get(object::EXPIRES_KEY)?.parse().ok()?;
    Some(s3s::dto::Timestamp::from(
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
    ))
}

/// A continuation token for the key `after` (opaque to clients: hex of the key).
pub fn continuation_token(after: &str) -> String {
    hex::encode(after.as_bytes())
}

/// The key a continuation token continues after.
pub fn token_key(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not valid"))
}

/// `value` as S3 returns it with `encoding-type=url`: every byte but unreserved characters
/// and `/` percent-encoded (so `+` and space survive clients that decode `+` as space).
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Base64 (standard alphabet, padded) of bytes: how `Content-MD5` carries an MD5.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let value = group.iter().enumerate().fold(0u32, |acc, (index, byte)| {
            acc | u32::from(*byte) << (16 - 8 * index)
        });
        for index in 0..4 {
            if index <= group.len() {
                out.push(char::from(
                    ALPHABET[(value >> (18 - 6 * index)) as usize & 63],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes_and_escapes_the_rest() {
        assert_eq!(url_encode("a b+c/ü%"), "a%20b%2Bc/%C3%BC%25");
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn tokens_round_trip() {
        assert_eq!(token_key(&continuation_token("a/ü b")).unwrap(), "a/ü b");
        assert!(token_key("zz").is_err());
    }

    #[test]
    fn times_round_trip_to_seconds() {
        assert_eq!(
            unix_seconds(&s3_time(Timestamp(1_700_000_000_123_456_789))),
            1_700_000_000
        );
    }
}
