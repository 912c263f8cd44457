//! Multipart uploads (S3): create, upload parts (as chunks, recorded by a delta each), list,
//! complete into one composition, abort. The state lives in the shard's view, so uploads and
//! their parts survive a restart.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use kiseki_log::{Delta, ObjectWrite};
use kiseki_types::limits::{MULTIPART_PART_BYTES_MIN, MULTIPART_PART_NUMBER_MAX};
use kiseki_types::{Composition, ErrorKind, Extent, Timestamp};
use md5::{Digest, Md5};

use crate::object::{multipart_etag, object_path, ObjectError, ObjectInfo, ObjectMetadata};
use crate::view::{CompletionError, Upload};
use crate::{TenantNamespace, WrittenData};

/// A multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadInfo {
    /// Upload id.
    pub upload_id: String,
    /// Key in the bucket.
    pub key: String,
    /// When it was created.
    pub initiated: Timestamp,
}

/// One uploaded part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number.
    pub number: u32,
    /// MD5 (hex, no quotes).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was uploaded.
    pub last_modified: Timestamp,
}

/// 128 random bits in hex: an upload id nobody can guess.
fn new_upload_id() -> String {
    let half = || {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_i64(Timestamp::now().0);
        hasher.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

fn upload_key(upload: &Upload) -> String {
    upload.object.path[1..].join("/")
}

impl From<CompletionError> for ObjectError {
    fn from(refusal: CompletionError) -> Self {
        match refusal {
            CompletionError::NoParts => ObjectError::InvalidPart(0),
            CompletionError::PartOrder => ObjectError::InvalidPartOrder,
            CompletionError::Part(number) => ObjectError::InvalidPart(number),
            CompletionError::TooSmall(number) => ObjectError::EntityTooSmall(number),
        }
    }
}

impl TenantNamespace {
    /// Starts a multipart upload of `key`; returns its id.
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        metadata: ObjectMetadata,
    ) -> Result<String, ObjectError> {
        let (path, marker) = object_path(bucket, key)?;
        if marker {
            return Err(ObjectError::InvalidKey(format!(
                "{key:?} ends in '/' and cannot be uploaded in parts"
            )));
        }
        self.head_bucket(bucket)?;
        let upload_id = new_upload_id();
        let object = ObjectWrite {
            path,
            user_metadata: metadata.user,
            system_metadata: metadata.system,
            owner: kiseki_log::Owner { uid: 0, gid: 0 },
            time: Timestamp::now(),
        };
        let delta = Delta::CreateUpload {
            upload_id: upload_id.clone(),
            object,
        };
        self.propose(delta, &format!("create upload of {bucket}/{key}"))
            .await
            .map_err(|error| match error.kind {
                ErrorKind::NotFound => ObjectError::NoSuchBucket(bucket.to_owned()),
                _ => error.into(),
            })?;
        Ok(upload_id)
    }

    /// Checks that `upload_id` is an upload of `key` in `bucket` (before its bytes are sent).
    pub fn check_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        let (path, _) = object_path(bucket, key)?;
        let view = self.view();
        match view.upload(upload_id) {
            Ok(upload) if upload.object.path == path => Ok(()),
            _ => Err(ObjectError::NoSuchUpload(upload_id.to_owned())),
        }
    }

    async fn propose_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        etag: String,
        content: Composition,
    ) -> Result<(), ObjectError> {
        if !(1..=MULTIPART_PART_NUMBER_MAX).contains(&part_number) {
            return Err(ObjectError::Namespace(kiseki_types::NamespaceError::new(
                ErrorKind::InvalidArgument,
                format!("part number {part_number} is outside 1..={MULTIPART_PART_NUMBER_MAX}"),
            )));
        }
        self.check_upload(bucket, key, upload_id)?;
        let delta = Delta::PutPart {
            upload_id: upload_id.to_owned(),
            part_number,
            etag,
            content,
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("part {part_number} of upload {upload_id}"))
            .await
            .map_err(|error| match error.kind {
                ErrorKind::NotFound => ObjectError::NoSuchUpload(upload_id.to_owned()),
                _ => error.into(),
            })?;
        Ok(())
    }

    /// Records part `part_number` (bytes already stored by an [`crate::object::ObjectWriter`]).
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        data: WrittenData,
        etag: String,
    ) -> Result<(), ObjectError> {
        let content = Composition {
            size: data.size,
            extents: data.extents,
        };
        self.propose_part(bucket, key, upload_id, part_number, etag, content)
            .await
    }

    /// Makes bytes `[offset, offset + len)` of `source` part `part_number` without copying
    /// them (the part shares the source's chunks). The bytes are read once, streaming, for
    /// their MD5 (the part's ETag), which is returned.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source: &ObjectInfo,
        (offset, len): (u64, u64),
    ) -> Result<String, ObjectError> {
        self.check_upload(bucket, key, upload_id)?;
        let mut reader = self.read_object(source, offset, len);
        let mut digest = Md5::new();
        while let Some(piece) = reader.next_piece().await {
            digest.update(&piece?);
        }
        let etag = hex::encode(digest.finalize());
        let extents = source
            .content
            .extents_in(offset, len)
            .map(|extent| Extent {
                file_offset: extent.file_offset - offset,
                ..extent
            })
            .collect();
        let size = len.min(source.size().saturating_sub(offset));
        self.propose_part(
            bucket,
            key,
            upload_id,
            part_number,
            etag.clone(),
            Composition { size, extents },
        )
        .await?;
        Ok(etag)
    }

    /// Completes an upload with `parts` (number, ETag), ascending. Returns the object's ETag.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<String, ObjectError> {
        self.check_upload(bucket, key, upload_id)?;
        self.view()
            .upload(upload_id)?
            .completed(&parts, MULTIPART_PART_BYTES_MIN)?;
        let etag = multipart_etag(&parts).ok_or(ObjectError::InvalidPart(0))?;
        let delta = Delta::CompleteUpload {
            upload_id: upload_id.to_owned(),
            parts,
            part_size_min: MULTIPART_PART_BYTES_MIN,
            etag: etag.clone(),
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("complete upload {upload_id}"))
            .await
            .map_err(|error| match error.kind {
                ErrorKind::NotFound => ObjectError::NoSuchUpload(upload_id.to_owned()),
                ErrorKind::InvalidArgument => ObjectError::InvalidPart(0),
                ErrorKind::NotADirectory | ErrorKind::IsADirectory => ObjectError::InvalidKey(
                    format!("{key:?} clashes with a file or directory of the shared namespace"),
                ),
                _ => error.into(),
            })?;
        Ok(etag)
    }

    /// Abandons an upload.
    pub async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.check_upload(bucket, key, upload_id)?;
        let delta = Delta::AbortUpload {
            upload_id: upload_id.to_owned(),
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("abort upload {upload_id}"))
            .await
            .map_err(|error| match error.kind {
                ErrorKind::NotFound => ObjectError::NoSuchUpload(upload_id.to_owned()),
                _ => error.into(),
            })?;
        Ok(())
    }

    /// Up to `max` parts of an upload after part number `after`; whether more follow.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool), ObjectError> {
        self.check_upload(bucket, key, upload_id)?;
        let view = self.view();
        let upload = view.upload(upload_id)?;
        let mut parts = upload
            .parts
            .range(after.saturating_add(1)..)
            .map(|(number, part)| PartInfo {
                number: *number,
                etag: part.etag.clone(),
                size: part.content.size,
                last_modified: part.time,
            });
        let page: Vec<PartInfo> = parts.by_ref().take(max).collect();
        Ok((page, parts.next().is_some()))
    }

    /// Up to `max` uploads of `bucket` with keys starting with `prefix`, in (key, upload id)
    /// order after the marker; whether more follow.
    pub fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        marker: (Option<&str>, Option<&str>),
        max: usize,
    ) -> Result<(Vec<UploadInfo>, bool), ObjectError> {
        self.head_bucket(bucket)?;
        let view = self.view();
        let mut uploads: Vec<UploadInfo> = view
            .uploads()
            .filter(|(_, upload)| upload.object.path.first().map(String::as_str) == Some(bucket))
            .map(|(upload_id, upload)| UploadInfo {
                upload_id: upload_id.clone(),
                key: upload_key(upload),
                initiated: upload.object.time,
            })
            .filter(|upload| upload.key.starts_with(prefix))
            .filter(|upload| match marker {
                (Some(key), Some(id)) => {
                    (upload.key.as_str(), upload.upload_id.as_str()) > (key, id)
                }
                (Some(key), None) => upload.key.as_str() > key,
                (None, _) => true,
            })
            .collect();
        uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        Ok((uploads, truncated))
    }
}
