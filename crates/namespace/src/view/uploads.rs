//! Multipart uploads in the view: their parts are chunks already stored, recorded by deltas, so
//! an upload survives a restart with the shard log. Completion concatenates the parts' extents
//! (offsets shifted) into one composition: no byte is copied.

use std::collections::BTreeMap;

use kiseki_log::{DeltaOutcome, ObjectWrite};
use kiseki_types::limits::{MULTIPART_PART_NUMBER_MAX, MULTIPART_UPLOADS_MAX};
use kiseki_types::{Composition, ErrorKind, Extent, NamespaceError, Timestamp};
use serde::{Deserialize, Serialize};

use super::apply::{applied, check_user_metadata, error};
use super::NamespaceView;
use crate::names::validate_name;
use crate::object::{ETAG_KEY, PARTS_COUNT_KEY};

/// A multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Upload {
    /// The object it becomes: path, metadata, owner, and the time it was started.
    pub object: ObjectWrite,
    /// Parts uploaded so far, by part number.
    pub parts: BTreeMap<u32, UploadPart>,
}

/// One uploaded part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UploadPart {
    /// MD5 of the part, lowercase hex.
    pub etag: String,
    /// The part's bytes from offset zero.
    pub content: Composition,
    /// When it was uploaded.
    pub time: Timestamp,
}

/// Why a completion request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompletionError {
    /// No parts listed.
    NoParts,
    /// Part numbers not strictly ascending.
    PartOrder,
    /// A listed part is missing or has another ETag.
    Part(u32),
    /// A part other than the last is smaller than the minimum.
    TooSmall(u32),
}

/// Strips the quotes clients put around ETags.
pub(crate) fn bare_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

impl Upload {
    /// The composition the listed parts make, checked as S3 checks a completion.
    pub(crate) fn completed(
        &self,
        parts: &[(u32, String)],
        part_size_min: u64,
    ) -> Result<Composition, CompletionError> {
        if parts.is_empty() {
            return Err(CompletionError::NoParts);
        }
        if parts.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(CompletionError::PartOrder);
        }
        let mut composition = Composition::default();
        for (index, (number, etag)) in parts.iter().enumerate() {
            let part = self
                .parts
                .get(number)
                .filter(|part| part.etag == bare_etag(etag))
                .ok_or(CompletionError::Part(*number))?;
            if index + 1 < parts.len() && part.content.size < part_size_min {
                return Err(CompletionError::TooSmall(*number));
            }
            let base = composition.size;
            composition
                .extents
                .extend(part.content.extents.iter().map(|extent| Extent {
                    file_offset: extent.file_offset + base,
                    ..*extent
                }));
            composition.size += part.content.size;
        }
        Ok(composition)
    }
}

impl NamespaceView {
    pub(super) fn create_upload(&mut self, upload_id: &str, object: &ObjectWrite) -> DeltaOutcome {
        for name in &object.path {
            validate_name(name)?;
        }
        check_user_metadata(&object.user_metadata)?;
        let bucket = self.check_bucket_of(&object.path)?;
        if self.uploads.len() >= MULTIPART_UPLOADS_MAX {
            return Err(error(
                ErrorKind::NoSpace,
                format!("{MULTIPART_UPLOADS_MAX} multipart uploads in progress"),
            ));
        }
        if self.uploads.contains_key(upload_id) {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("upload {upload_id} exists"),
            ));
        }
        self.uploads.insert(
            upload_id.to_owned(),
            Upload {
                object: object.clone(),
                parts: BTreeMap::new(),
            },
        );
        applied(bucket)
    }

    fn upload_mut(&mut self, upload_id: &str) -> Result<&mut Upload, NamespaceError> {
        self.uploads
            .get_mut(upload_id)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("no upload {upload_id}")))
    }

    pub(super) fn put_part(
        &mut self,
        upload_id: &str,
        number: u32,
        etag: &str,
        content: &Composition,
        time: Timestamp,
    ) -> DeltaOutcome {
        if !(1..=MULTIPART_PART_NUMBER_MAX).contains(&number) {
            return Err(error(
                ErrorKind::InvalidArgument,
                format!("part number {number} outside 1..={MULTIPART_PART_NUMBER_MAX}"),
            ));
        }
        let bucket = self.check_bucket_of(&self.upload(upload_id)?.object.path)?;
        let part = UploadPart {
            etag: etag.to_owned(),
            content: content.clone(),
            time,
        };
        self.upload_mut(upload_id)?.parts.insert(number, part);
        applied(bucket)
    }

    pub(super) fn complete_upload(
        &mut self,
        upload_id: &str,
        parts: &[(u32, String)],
        part_size_min: u64,
        etag: &str,
        time: Timestamp,
    ) -> DeltaOutcome {
        let upload = self.upload(upload_id)?;
        let content = upload.completed(parts, part_size_min).map_err(|refusal| {
            error(
                ErrorKind::InvalidArgument,
                format!("upload {upload_id}: {refusal:?}"),
            )
        })?;
        let mut object = upload.object.clone();
        object
            .system_metadata
            .insert(ETAG_KEY.to_owned(), etag.to_owned());
        object
            .system_metadata
            .insert(PARTS_COUNT_KEY.to_owned(), parts.len().to_string());
        self.check_bucket_of(&object.path)?;
        let outcome = self.put_file(
            &object.path,
            &content,
            &object.user_metadata,
            &object.system_metadata,
            0o644,
            object.owner,
            time,
        )?;
        self.uploads.remove(upload_id);
        Ok(outcome)
    }

    pub(super) fn abort_upload(&mut self, upload_id: &str) -> DeltaOutcome {
        let upload = self
            .uploads
            .remove(upload_id)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("no upload {upload_id}")))?;
        let bucket = self
            .check_bucket_of(&upload.object.path)
            .unwrap_or(kiseki_types::InodeId::ROOT);
        applied(bucket)
    }

    /// The upload `upload_id`.
    pub(crate) fn upload(&self, upload_id: &str) -> Result<&Upload, NamespaceError> {
        self.uploads
            .get(upload_id)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("no upload {upload_id}")))
    }

    /// Every upload in progress, by upload id.
    pub(crate) fn uploads(&self) -> impl Iterator<Item = (&String, &Upload)> {
        self.uploads.iter()
    }
}
