//! S3 semantics over the shared namespace: buckets are top-level directories of the tenant,
//! `/` in a key makes directories, an object is a file. ETags, content type and the other S3
//! system fields are stored as a node's *system* metadata, apart from user metadata, so POSIX
//! xattr listings never show them. Conditional requests are evaluated here (reads) or in log
//! order when the delta applies (writes). No wire format is parsed here: the S3 gateway turns
//! requests into these calls and [`ObjectError`]s into S3 error codes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kiseki_log::{Delta, ObjectWrite, Owner, PutCondition};
use kiseki_types::limits::LIST_PAGE_ENTRIES_MAX;
use kiseki_types::{
    Attributes, Composition, ErrorKind, FileKind, InodeId, NamespaceError, Timestamp,
};
use md5::{Digest, Md5};

use crate::names::validate_name;
use crate::streaming_md5::StreamingMd5;
use crate::{ChunkWriter, ListEntry, ListRequest, RangeReader, TenantNamespace, WrittenData};

/// System-metadata key of the ETag (lowercase hex MD5, or `hex-N` for multipart objects).
pub const ETAG_KEY: &str = "etag";
/// System-metadata keys of the S3 headers stored with an object and returned on GET/HEAD.
pub const CONTENT_TYPE_KEY: &str = "content-type";
/// See [`CONTENT_TYPE_KEY`].
pub const CONTENT_ENCODING_KEY: &str = "content-encoding";
/// See [`CONTENT_TYPE_KEY`].
pub const CONTENT_DISPOSITION_KEY: &str = "content-disposition";
/// See [`CONTENT_TYPE_KEY`].
pub const CONTENT_LANGUAGE_KEY: &str = "content-language";
/// See [`CONTENT_TYPE_KEY`].
pub const CACHE_CONTROL_KEY: &str = "cache-control";
/// See [`CONTENT_TYPE_KEY`].
pub const EXPIRES_KEY: &str = "expires";
/// Number of parts of a multipart object.
pub const PARTS_COUNT_KEY: &str = "parts-count";

/// The ETag of empty content (directory markers).
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// Owner of nodes created over S3 (the control plane will map workloads to ids).
const S3_OWNER: Owner = Owner { uid: 0, gid: 0 };

/// Why an S3 operation failed, in the terms S3 reports.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The bucket does not exist.
    #[error("no bucket {0:?}")]
    NoSuchBucket(String),
    /// The key does not exist (or names a directory).
    #[error("no key {0:?}")]
    NoSuchKey(String),
    /// The bucket exists already.
    #[error("bucket {0:?} exists")]
    BucketExists(String),
    /// The bucket still holds objects.
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    /// No such multipart upload (or it belongs to another key).
    #[error("no upload {0:?}")]
    NoSuchUpload(String),
    /// A completion names a part that is missing or has another ETag.
    #[error("part {0} is missing or has another ETag")]
    InvalidPart(u32),
    /// A completion lists parts out of order.
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    /// A part other than the last is below the minimum part size.
    #[error("part {0} is smaller than the minimum part size")]
    EntityTooSmall(u32),
    /// A condition (If-Match, If-Unmodified-Since, If-None-Match on a write) failed.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The object is not modified (If-None-Match, If-Modified-Since on a read).
    #[error("not modified")]
    NotModified,
    /// The key cannot be a path of the shared namespace, or clashes with a file or directory.
    #[error("key {0}")]
    InvalidKey(String),
    /// Any other namespace error.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
}

/// A bucket of the tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    /// Bucket name (a top-level directory name).
    pub name: String,
    /// When the directory was created.
    pub created: Timestamp,
}

/// One object (or a directory marker, for keys ending in `/`) and its current content.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    /// Its node.
    pub inode: InodeId,
    /// ETag without quotes.
    pub etag: String,
    /// POSIX attributes (size, mtime = Last-Modified).
    pub attributes: Attributes,
    /// User metadata (x-amz-meta-*).
    pub user_metadata: BTreeMap<String, Vec<u8>>,
    /// System metadata (see the `*_KEY` constants).
    pub system_metadata: BTreeMap<String, String>,
    /// The content as of the lookup: reads through [`TenantNamespace::read_object`] see exactly
    /// these bytes even if the object is replaced meanwhile.
    pub(crate) content: Arc<Composition>,
}

impl ObjectInfo {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.content.size
    }
}

/// Metadata given with a write: user metadata and S3 system fields (the ETag is set by the
/// namespace from the bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMetadata {
    /// User metadata (x-amz-meta-*).
    pub user: BTreeMap<String, Vec<u8>>,
    /// System fields (see the `*_KEY` constants).
    pub system: BTreeMap<String, String>,
}

/// An ETag condition of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`: any existing object.
    Any,
    /// One ETag (quotes optional).
    Tag(String),
}

impl EtagCondition {
    fn matches(&self, etag: &str) -> bool {
        match self {
            EtagCondition::Any => true,
            EtagCondition::Tag(tag) => crate::view::bare_etag(tag) == etag,
        }
    }
}

/// The conditional headers of a read (GET, HEAD, copy source), with times in Unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// If-Match.
    pub if_match: Option<EtagCondition>,
    /// If-None-Match.
    pub if_none_match: Option<EtagCondition>,
    /// If-Modified-Since.
    pub if_modified_since: Option<i64>,
    /// If-Unmodified-Since.
    pub if_unmodified_since: Option<i64>,
}

impl Preconditions {
    /// Evaluates the conditions as S3 does (RFC 7232 order): If-Match, else If-Unmodified-Since,
    /// decide 412; then If-None-Match, else If-Modified-Since, decide 304.
    pub fn check(&self, etag: &str, last_modified: Timestamp) -> Result<(), ObjectError> {
        let modified_seconds = last_modified.to_parts().0;
        match &self.if_match {
            Some(condition) if !condition.matches(etag) => {
                return Err(ObjectError::PreconditionFailed)
            }
            Some(_) => {}
            None => {
                if self
                    .if_unmodified_since
                    .is_some_and(|since| modified_seconds > since)
                {
                    return Err(ObjectError::PreconditionFailed);
                }
            }
        }
        match &self.if_none_match {
            Some(condition) if condition.matches(etag) => Err(ObjectError::NotModified),
            Some(_) => Ok(()),
            None if self
                .if_modified_since
                .is_some_and(|since| modified_seconds <= since) =>
            {
                Err(ObjectError::NotModified)
            }
            None => Ok(()),
        }
    }
}

/// An ETag for a file written over POSIX (no MD5 was taken): 32 hex digits derived from the
/// inode and its content version (size, mtime), so it changes whenever the content does.
pub fn synthesized_etag(inode: InodeId, attributes: &Attributes) -> String {
    let version = (attributes.mtime.0 as u64).rotate_left(17) ^ attributes.size;
    format!("{:016x}{version:016x}", inode.0)
}

/// The ETag of a multipart object: MD5 of the parts' binary MD5s, then `-` and the part count.
/// `None` when a part ETag is not an MD5 in hex.
pub fn multipart_etag(parts: &[(u32, String)]) -> Option<String> {
    let mut digest = Md5::new();
    for (_, etag) in parts {
        digest.update(hex::decode(crate::view::bare_etag(etag)).ok()?);
    }
    Some(format!(
        "{}-{}",
        hex::encode(digest.finalize()),
        parts.len()
    ))
}

/// A streaming object write: cuts bytes into chunks (see [`ChunkWriter`]) and takes their MD5.
pub struct ObjectWriter {
    writer: ChunkWriter,
    digest: StreamingMd5,
}

impl ObjectWriter {
    /// Writes as `workload` (see [`ChunkWriter::for_workload`]).
    pub fn for_workload(mut self, workload: &str) -> Self {
        self.writer = self.writer.for_workload(workload);
        self
    }

    /// Adds bytes.
    pub async fn write(&mut self, data: Bytes) -> Result<(), NamespaceError> {
        self.writer.write(&data).await?;
        self.digest.update(data).await
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.writer.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.writer.is_empty()
    }

    /// Waits for every chunk to be durable; returns the extents and the MD5 (hex).
    pub async fn finish(self) -> Result<(WrittenData, String), NamespaceError> {
        let data = self.writer.finish().await?;
        Ok((data, self.digest.finish().await?))
    }
}

/// One page of an object listing, keys relative to the bucket.
#[derive(Clone, Debug, Default)]
pub struct ObjectPage {
    /// Objects and common prefixes in key order.
    pub entries: Vec<ObjectEntry>,
    /// Whether more follow (continue after the last entry's key).
    pub truncated: bool,
}

/// One listed item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectEntry {
    /// An object.
    Object {
        /// Key in the bucket.
        key: String,
        /// Size in bytes.
        size: u64,
        /// Last modification.
        last_modified: Timestamp,
        /// ETag without quotes.
        etag: String,
    },
    /// A common prefix.
    CommonPrefix(String),
}

impl ObjectEntry {
    /// The key or prefix.
    pub fn key(&self) -> &str {
        match self {
            ObjectEntry::Object { key, .. } | ObjectEntry::CommonPrefix(key) => key,
        }
    }
}

/// The namespace path of `key` in `bucket`, and whether the key ends in `/` (a directory
/// marker). Keys that cannot be paths (empty components, `.`, `..`) are refused rather than
/// silently aliased to another key.
pub fn object_path(bucket: &str, key: &str) -> Result<(Vec<String>, bool), ObjectError> {
    validate_name(bucket).map_err(|_| ObjectError::NoSuchBucket(bucket.to_owned()))?;
    let marker = key.ends_with('/');
    let body = key.strip_suffix('/').unwrap_or(key);
    if body.is_empty() {
        return Err(ObjectError::InvalidKey(format!("{key:?} has no name")));
    }
    let mut path = vec![bucket.to_owned()];
    for component in body.split('/') {
        validate_name(component).map_err(|error| {
            ObjectError::InvalidKey(format!(
                "{key:?} cannot be a path of the shared namespace: {}",
                error.message
            ))
        })?;
        path.push(component.to_owned());
    }
    Ok((path, marker))
}

fn conflict(key: &str, error: NamespaceError) -> ObjectError {
    match error.kind {
        ErrorKind::NotADirectory | ErrorKind::IsADirectory => ObjectError::InvalidKey(format!(
            "{key:?} clashes with a file or directory of the shared namespace"
        )),
        _ => ObjectError::Namespace(error),
    }
}

impl TenantNamespace {
    /// The tenant's buckets (top-level directories) in name order.
    pub fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError> {
        let view = self.view();
        let mut buckets = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let entries =
                view.read_directory(InodeId::ROOT, after.as_deref(), LIST_PAGE_ENTRIES_MAX)?;
            let Some(last) = entries.last() else { break };
            after = Some(last.cursor.clone());
            for entry in entries
                .into_iter()
                .filter(|entry| entry.kind == FileKind::Directory)
            {
                let created = view.attributes(entry.inode)?.btime;
                buckets.push(BucketInfo {
                    name: entry.name,
                    created,
                });
            }
        }
        Ok(buckets)
    }

    /// The directory of `bucket`.
    pub fn head_bucket(&self, bucket: &str) -> Result<InodeId, ObjectError> {
        let view = self.view();
        let inode = view
            .lookup(InodeId::ROOT, bucket)
            .map_err(|_| ObjectError::NoSuchBucket(bucket.to_owned()))?;
        match view.attributes(inode)?.kind {
            FileKind::Directory => Ok(inode),
            _ => Err(ObjectError::NoSuchBucket(bucket.to_owned())),
        }
    }

    /// Creates `bucket` (a top-level directory).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        match self.mkdir(S3_OWNER, InodeId::ROOT, bucket, 0o755).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind == ErrorKind::AlreadyExists => {
                Err(ObjectError::BucketExists(bucket.to_owned()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Removes an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        self.head_bucket(bucket)?;
        self.rmdir(InodeId::ROOT, bucket)
            .await
            .map_err(|error| match error.kind {
                ErrorKind::NotFound | ErrorKind::NotADirectory => {
                    ObjectError::NoSuchBucket(bucket.to_owned())
                }
                ErrorKind::NotEmpty => ObjectError::BucketNotEmpty(bucket.to_owned()),
                _ => error.into(),
            })
    }

    /// The object `key` of `bucket`. A key ending in `/` names a directory marker (any
    /// directory at that path reads as an empty object).
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        let (path, marker) = object_path(bucket, key)?;
        let view = self.view();
        if view.check_bucket_of(&path).is_err() {
            return Err(ObjectError::NoSuchBucket(bucket.to_owned()));
        }
        let missing = || ObjectError::NoSuchKey(key.to_owned());
        if marker {
            let inode = view.resolve(&path).map_err(|_| missing())?;
            let attributes = view.attributes(inode)?;
            if attributes.kind != FileKind::Directory {
                return Err(missing());
            }
            let mut info = ObjectInfo {
                inode,
                etag: EMPTY_MD5.to_owned(),
                attributes,
                user_metadata: BTreeMap::new(),
                system_metadata: BTreeMap::new(),
                content: Arc::new(Composition::default()),
            };
            info.attributes.size = 0;
            return Ok(info);
        }
        view.object_info(&path).map_err(|_| missing())
    }

    /// A streaming reader of `len` bytes at `offset` of the object as `info` saw it.
    pub fn read_object(&self, info: &ObjectInfo, offset: u64, len: u64) -> RangeReader {
        RangeReader::new(
            self.tenant(),
            self.chunk_service(),
            self.tenant_keyring(),
            &info.content,
            offset,
            len,
            format!("object {} of tenant {}", info.inode, self.tenant()),
        )
    }

    /// A streaming writer of an object's bytes; commit with [`Self::put_object`].
    pub fn object_writer(&self) -> ObjectWriter {
        ObjectWriter {
            writer: self.writer(),
            digest: StreamingMd5::new(),
        }
    }

    /// Creates or atomically replaces object `key` with `data` whose MD5 is `etag`, if
    /// `condition` holds when the write applies. A key ending in `/` with no bytes creates a
    /// directory marker (the directories of the key).
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: WrittenData,
        etag: String,
        metadata: ObjectMetadata,
        condition: Option<PutCondition>,
    ) -> Result<(), ObjectError> {
        let (path, marker) = object_path(bucket, key)?;
        self.head_bucket(bucket)?;
        if marker {
            if data.size > 0 {
                return Err(ObjectError::InvalidKey(format!(
                    "{key:?} ends in '/' (a directory) but has content"
                )));
            }
            return self
                .make_directories(&path)
                .await
                .map_err(|error| conflict(key, error));
        }
        let content = Composition {
            size: data.size,
            extents: data.extents,
        };
        let mut system = metadata.system;
        system.insert(ETAG_KEY.to_owned(), etag);
        self.propose_object(bucket, key, path, content, metadata.user, system, condition)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn propose_object(
        &self,
        bucket: &str,
        key: &str,
        path: Vec<String>,
        content: Composition,
        user_metadata: BTreeMap<String, Vec<u8>>,
        system_metadata: BTreeMap<String, String>,
        condition: Option<PutCondition>,
    ) -> Result<(), ObjectError> {
        let conditional = condition.is_some();
        let object = ObjectWrite {
            path,
            user_metadata,
            system_metadata,
            owner: S3_OWNER,
            time: Timestamp::now(),
        };
        let delta = Delta::PutObject {
            object,
            content,
            condition,
        };
        match self.propose(delta, &format!("put {bucket}/{key}")).await {
            Ok(_) => Ok(()),
            Err(error) => Err(match error.kind {
                ErrorKind::AlreadyExists | ErrorKind::Stale if conditional => {
                    ObjectError::PreconditionFailed
                }
                ErrorKind::NotFound if conditional => ObjectError::NoSuchKey(key.to_owned()),
                ErrorKind::NotFound => ObjectError::NoSuchBucket(bucket.to_owned()),
                _ => conflict(key, error),
            }),
        }
    }

    async fn make_directories(&self, path: &[String]) -> Result<(), NamespaceError> {
        let mut parent = InodeId::ROOT;
        for name in path {
            parent = match self.mkdir(S3_OWNER, parent, name, 0o755).await {
                Ok(inode) => inode,
                Err(error) if error.kind == ErrorKind::AlreadyExists => {
                    self.view().lookup(parent, name)?
                }
                Err(error) => return Err(error),
            };
        }
        Ok(())
    }

    /// Copies an object without copying its bytes (the new object shares the source's chunks),
    /// if `preconditions` hold on the source. `metadata` replaces the source's metadata
    /// (REPLACE) or, when `None`, is copied from it (COPY). Returns the new object.
    pub async fn copy_object(
        &self,
        source: (&str, &str),
        preconditions: &Preconditions,
        bucket: &str,
        key: &str,
        metadata: Option<ObjectMetadata>,
    ) -> Result<ObjectInfo, ObjectError> {
        let info = self.head_object(source.0, source.1)?;
        preconditions
            .check(&info.etag, info.attributes.mtime)
            .map_err(|error| match error {
                ObjectError::NotModified => ObjectError::PreconditionFailed,
                other => other,
            })?;
        let (path, marker) = object_path(bucket, key)?;
        if marker {
            return Err(ObjectError::InvalidKey(format!(
                "{key:?} ends in '/' and cannot be a copy target"
            )));
        }
        let (user, mut system) = match metadata {
            Some(metadata) => (metadata.user, metadata.system),
            None => (info.user_metadata.clone(), info.system_metadata.clone()),
        };
        system.insert(ETAG_KEY.to_owned(), info.etag.clone());
        if let Some(parts) = info.system_metadata.get(PARTS_COUNT_KEY) {
            system.insert(PARTS_COUNT_KEY.to_owned(), parts.clone());
        }
        self.propose_object(
            bucket,
            key,
            path,
            (*info.content).clone(),
            user,
            system,
            None,
        )
        .await?;
        self.head_object(bucket, key)
    }

    /// Removes object `key` (a missing key is not an error, as in S3), then the directories
    /// its removal left empty, up to the bucket, so that S3 listings show no stale prefix.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let (path, marker) = object_path(bucket, key)?;
        self.head_bucket(bucket)?;
        let mut depth = path.len() - 1;
        if !marker {
            let parent = match self.view().resolve(&path[..depth]) {
                Ok(parent) => parent,
                Err(_) => return Ok(()),
            };
            match self.unlink(parent, &path[depth]).await {
                Ok(()) => {}
                Err(error)
                    if matches!(
                        error.kind,
                        ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(())
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            depth += 1;
        }
        while depth > 1 {
            depth -= 1;
            let Ok(parent) = self.view().resolve(&path[..depth]) else {
                return Ok(());
            };
            if self.rmdir(parent, &path[depth]).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Lists objects of `bucket` in key order; `request` keys are relative to the bucket.
    pub fn list_objects(
        &self,
        bucket: &str,
        request: ListRequest<'_>,
    ) -> Result<ObjectPage, ObjectError> {
        self.head_bucket(bucket)?;
        let base = format!("{bucket}/");
        let prefix = format!("{base}{}", request.prefix);
        let start_after = request.start_after.map(|after| format!("{base}{after}"));
        let view = self.view();
        let page = view.list(ListRequest {
            prefix: &prefix,
            delimiter: request.delimiter,
            start_after: start_after.as_deref(),
            max_entries: request.max_entries,
        })?;
        let relative = |key: &str| key.strip_prefix(&base).unwrap_or(key).to_owned();
        let entries = page
            .entries
            .iter()
            .map(|entry| match entry {
                ListEntry::Object {
                    key,
                    inode,
                    attributes,
                } => ObjectEntry::Object {
                    key: relative(key),
                    size: attributes.size,
                    last_modified: attributes.mtime,
                    etag: view.object_etag(*inode).unwrap_or_default(),
                },
                ListEntry::CommonPrefix(prefix) => ObjectEntry::CommonPrefix(relative(prefix)),
            })
            .collect();
        Ok(ObjectPage {
            entries,
            truncated: page.truncated,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_rfc_7232_order() {
        let time = Timestamp(1_000 * 1_000_000_000);
        let tag = |t: &str| Some(EtagCondition::Tag(t.into()));
        let check = |p: Preconditions| p.check("abc", time).err().map(|e| e.to_string());
        assert_eq!(
            check(Preconditions {
                if_match: tag("\"abc\""),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            check(Preconditions {
                if_match: tag("x"),
                ..Default::default()
            })
            .as_deref(),
            Some("precondition failed")
        );
        // If-Match true overrides a failing If-Unmodified-Since.
        let p = Preconditions {
            if_match: tag("abc"),
            if_unmodified_since: Some(10),
            ..Default::default()
        };
        assert_eq!(check(p), None);
        assert!(check(Preconditions {
            if_unmodified_since: Some(999),
            ..Default::default()
        })
        .is_some());
        assert_eq!(
            check(Preconditions {
                if_none_match: tag("abc"),
                ..Default::default()
            })
            .as_deref(),
            Some("not modified")
        );
        assert_eq!(
            check(Preconditions {
                if_none_match: Some(EtagCondition::Any),
                ..Default::default()
            })
            .as_deref(),
            Some("not modified")
        );
        // If-None-Match false overrides If-Modified-Since.
        let p = Preconditions {
            if_none_match: tag("x"),
            if_modified_since: Some(2_000),
            ..Default::default()
        };
        assert_eq!(check(p), None);
        assert!(check(Preconditions {
            if_modified_since: Some(1_000),
            ..Default::default()
        })
        .is_some());
        assert_eq!(
            check(Preconditions {
                if_modified_since: Some(999),
                ..Default::default()
            }),
            None
        );
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        // Two parts whose MD5s are those of "a" and "b" (expected value from Python hashlib).
        let parts = vec![
            (1, "0cc175b9c0f1b6a831c399e269772661".to_owned()),
            (2, "\"92eb5ffee6ae2fec3ad71c777531578f\"".to_owned()),
        ];
        let etag = multipart_etag(&parts).unwrap();
        assert_eq!(etag, "96e024ba2074fe77e8e965ba43a704be-2");
        assert_eq!(multipart_etag(&[(1, "zz".into())]), None);
    }

    #[test]
    fn keys_map_to_paths_without_aliasing() {
        assert_eq!(
            object_path("b", "a/c.txt").unwrap(),
            (vec!["b".into(), "a".into(), "c.txt".into()], false)
        );
        assert_eq!(
            object_path("b", "dir/").unwrap(),
            (vec!["b".into(), "dir".into()], true)
        );
        for bad in ["a//b", "/a", "a/./b", "a/../b", "", "/"] {
            assert!(
                matches!(object_path("b", bad), Err(ObjectError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }
}
