//! The S3 operations: each parses its input (already typed by s3s), makes one namespace call
//! on the requesting tenant's namespace, and encodes the answer. Semantics live in
//! `kiseki_namespace::object` and the namespace's upload calls; errors map in `error.rs`.

use std::sync::Arc;

use kiseki_namespace::object::{ObjectEntry, ObjectInfo, ObjectPage};
use kiseki_namespace::{ListRequest, Namespace, TenantNamespace};
use kiseki_types::limits::{MULTIPART_PART_NUMBER_MAX, OBJECT_PUT_BYTES_MAX};
use kiseki_types::TenantId;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use super::body;
use super::convert::{self, etag, s3_time, StoredHeaders};
use super::error::{namespace_error, s3_error};
use crate::access_keys::AccessKeys;

/// Most keys one ListObjects page or DeleteObjects request carries (the S3 limit).
const KEYS_PER_REQUEST_MAX: usize = 1000;

/// The S3 service over the namespace of every tenant that holds an access key.
pub struct KisekiS3 {
    namespace: Arc<Namespace>,
    keys: Arc<AccessKeys>,
}

impl KisekiS3 {
    pub fn new(namespace: Arc<Namespace>, keys: Arc<AccessKeys>) -> Self {
        KisekiS3 { namespace, keys }
    }

    /// The namespace of the tenant whose key signed the request.
    async fn tenant<T>(&self, request: &S3Request<T>) -> S3Result<Arc<TenantNamespace>> {
        Ok(self.caller(request).await?.0)
    }

    /// The namespace of the tenant whose key signed the request, and the key's workload.
    async fn caller<T>(&self, request: &S3Request<T>) -> S3Result<(Arc<TenantNamespace>, String)> {
        let credentials = request
            .credentials
            .as_ref()
            .ok_or_else(|| s3_error!(AccessDenied, "Signature is required"))?;
        let key = self
            .keys
            .find(&credentials.access_key)
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let namespace = self
            .namespace
            .tenant(TenantId(key.tenant))
            .await
            .map_err(namespace_error)?;
        Ok((namespace, key.workload.clone()))
    }
}

fn response<T>(output: T) -> S3Result<S3Response<T>> {
    Ok(S3Response::new(output))
}

fn object_key(value: &str, url: bool) -> String {
    if url {
        convert::url_encode(value)
    } else {
        value.to_owned()
    }
}

/// Page size from `max-keys` (default 1000, at most 1000).
fn page_size(max_keys: Option<i32>) -> S3Result<usize> {
    match max_keys {
        None => Ok(KEYS_PER_REQUEST_MAX),
        Some(max) if max < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(max) => Ok((max as usize).min(KEYS_PER_REQUEST_MAX)),
    }
}

fn list_page(
    namespace: &TenantNamespace,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max_entries: usize,
) -> S3Result<ObjectPage> {
    if max_entries == 0 {
        namespace.head_bucket(bucket).map_err(s3_error)?;
        return Ok(ObjectPage::default());
    }
    let request = ListRequest {
        prefix,
        delimiter,
        start_after,
        max_entries,
    };
    namespace.list_objects(bucket, request).map_err(s3_error)
}

/// Objects and common prefixes of a page in the S3 shape.
fn page_contents(page: &ObjectPage, url: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for entry in &page.entries {
        match entry {
            ObjectEntry::Object {
                key,
                size,
                last_modified,
                etag: tag,
            } => objects.push(Object {
                key: Some(object_key(key, url)),
                size: Some(*size as i64),
                last_modified: Some(s3_time(*last_modified)),
                e_tag: Some(etag(tag)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            }),
            ObjectEntry::CommonPrefix(prefix) => prefixes.push(CommonPrefix {
                prefix: Some(object_key(prefix, url)),
            }),
        }
    }
    (objects, prefixes)
}

fn wants_url(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding.map(EncodingType::as_str) {
        None => Ok(false),
        Some(EncodingType::URL) => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "unknown encoding-type {other:?}"
        )),
    }
}

fn copy_source(source: &CopySource) -> S3Result<(&str, &str)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id: None,
        } => Ok((bucket, key)),
        CopySource::Bucket { .. } => Err(s3_error!(
            NotImplemented,
            "object versions are not supported"
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "access point and outpost copy sources are not supported"
        )),
    }
}

fn part_number(number: i32) -> S3Result<u32> {
    u32::try_from(number)
        .ok()
        .filter(|number| (1..=MULTIPART_PART_NUMBER_MAX).contains(number))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "part number must be 1..={MULTIPART_PART_NUMBER_MAX}"
            )
        })
}

/// The headers GET and HEAD return for an object.
struct ObjectHeaders {
    e_tag: Option<ETag>,
    last_modified: Option<Timestamp>,
    metadata: Option<Metadata>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    parts_count: Option<i32>,
}

/// The object at `bucket/key`, if the request's preconditions hold (GET and HEAD).
fn head_if(
    namespace: &TenantNamespace,
    bucket: &str,
    key: &str,
    conditions: &kiseki_namespace::object::Preconditions,
) -> S3Result<ObjectInfo> {
    let info = namespace.head_object(bucket, key).map_err(s3_error)?;
    conditions
        .check(&info.etag, info.attributes.mtime)
        .map_err(s3_error)?;
    Ok(info)
}

fn object_headers(info: &ObjectInfo) -> ObjectHeaders {
    use kiseki_namespace::object as keys;
    let system = &info.system_metadata;
    ObjectHeaders {
        e_tag: Some(etag(&info.etag)),
        last_modified: Some(s3_time(info.attributes.mtime)),
        metadata: convert::user_metadata(&info.user_metadata),
        content_type: Some(
            convert::stored(system, keys::CONTENT_TYPE_KEY)
                .unwrap_or_else(|| "binary/octet-stream".into()),
        ),
        content_encoding: convert::stored(system, keys::CONTENT_ENCODING_KEY),
        content_disposition: convert::stored(system, keys::CONTENT_DISPOSITION_KEY),
        content_language: convert::stored(system, keys::CONTENT_LANGUAGE_KEY),
        cache_control: convert::stored(system, keys::CACHE_CONTROL_KEY),
        expires: convert::stored_expires(system),
        parts_count: system
            .get(keys::PARTS_COUNT_KEY)
            .and_then(|count| count.parse().ok()),
    }
}

/// The byte range a GET serves: (offset, length, Content-Range).
fn byte_range(range: Option<&Range>, size: u64) -> S3Result<(u64, u64, Option<String>)> {
    let Some(range) = range else {
        return Ok((0, size, None));
    };
    let served = range.check(size).map_err(|_| {
        s3_error!(
            InvalidRange,
            "the range is not satisfiable for {size} bytes"
        )
    })?;
    let content_range = format!("bytes {}-{}/{size}", served.start, served.end - 1);
    Ok((served.start, served.end - served.start, Some(content_range)))
}

#[async_trait::async_trait]
impl S3 for KisekiS3 {
    async fn list_buckets(
        &self,
        request: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let namespace = self.tenant(&request).await?;
        let buckets = namespace
            .list_buckets()
            .map_err(s3_error)?
            .into_iter()
            .map(|bucket| Bucket {
                name: Some(bucket.name),
                creation_date: Some(s3_time(bucket.created)),
                ..Default::default()
            })
            .collect();
        let tenant = namespace.tenant().to_string();
        let owner = Owner {
            display_name: Some(tenant.clone()),
            id: Some(tenant),
        };
        response(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner),
            ..Default::default()
        })
    }

    async fn create_bucket(
        &self,
        request: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let namespace = self.tenant(&request).await?;
        namespace
            .create_bucket(&request.input.bucket)
            .await
            .map_err(s3_error)?;
        response(CreateBucketOutput {
            location: Some(format!("/{}", request.input.bucket)),
        })
    }

    async fn head_bucket(
        &self,
        request: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let namespace = self.tenant(&request).await?;
        namespace
            .head_bucket(&request.input.bucket)
            .map_err(s3_error)?;
        response(HeadBucketOutput::default())
    }

    async fn delete_bucket(
        &self,
        request: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let namespace = self.tenant(&request).await?;
        namespace
            .delete_bucket(&request.input.bucket)
            .await
            .map_err(s3_error)?;
        response(DeleteBucketOutput::default())
    }

    async fn get_bucket_location(
        &self,
        request: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let namespace = self.tenant(&request).await?;
        namespace
            .head_bucket(&request.input.bucket)
            .map_err(s3_error)?;
        response(GetBucketLocationOutput::default())
    }

    async fn put_object(
        &self,
        request: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let (namespace, workload) = self.caller(&request).await?;
        let input = request.input;
        if input
            .content_length
            .is_some_and(|length| length as u64 > OBJECT_PUT_BYTES_MAX)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "a single PUT is limited to {OBJECT_PUT_BYTES_MAX} bytes: use a multipart upload"
            ));
        }
        namespace.head_bucket(&input.bucket).map_err(s3_error)?;
        kiseki_namespace::object::object_path(&input.bucket, &input.key).map_err(s3_error)?;
        let condition = convert::put_condition(input.if_match, input.if_none_match)?;
        let headers = StoredHeaders {
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: input.expires,
        };
        let metadata = convert::object_metadata(input.metadata, headers);
        let writer = namespace.object_writer().for_workload(&workload);
        let (data, md5) = body::store(
            writer,
            input.body,
            OBJECT_PUT_BYTES_MAX,
            input.content_md5.as_deref(),
        )
        .await?;
        namespace
            .put_object(
                &input.bucket,
                &input.key,
                data,
                md5.clone(),
                metadata,
                condition,
            )
            .await
            .map_err(s3_error)?;
        response(PutObjectOutput {
            e_tag: Some(etag(&md5)),
            ..Default::default()
        })
    }

    async fn get_object(
        &self,
        request: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let conditions = convert::preconditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        );
        let info = head_if(&namespace, &input.bucket, &input.key, &conditions)?;
        let (offset, len, content_range) = byte_range(input.range.as_ref(), info.size())?;
        let reader = namespace.read_object(&info, offset, len);
        let headers = object_headers(&info);
        response(GetObjectOutput {
            body: Some(body::stream(reader)),
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: headers.e_tag,
            last_modified: headers.last_modified,
            metadata: headers.metadata,
            content_type: input.response_content_type.or(headers.content_type),
            content_encoding: input.response_content_encoding.or(headers.content_encoding),
            content_disposition: input
                .response_content_disposition
                .or(headers.content_disposition),
            content_language: input.response_content_language.or(headers.content_language),
            cache_control: input.response_cache_control.or(headers.cache_control),
            expires: input.response_expires.or(headers.expires),
            parts_count: headers.parts_count,
            ..Default::default()
        })
    }

    async fn head_object(
        &self,
        request: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let conditions = convert::preconditions(
            input.if_match,
            input.if_none_match,
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        );
        let info = head_if(&namespace, &input.bucket, &input.key, &conditions)?;
        let headers = object_headers(&info);
        response(HeadObjectOutput {
            content_length: Some(info.size() as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: headers.e_tag,
            last_modified: headers.last_modified,
            metadata: headers.metadata,
            content_type: headers.content_type,
            content_encoding: headers.content_encoding,
            content_disposition: headers.content_disposition,
            content_language: headers.content_language,
            cache_control: headers.cache_control,
            expires: headers.expires,
            parts_count: headers.parts_count,
            ..Default::default()
        })
    }

    async fn delete_object(
        &self,
        request: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let namespace = self.tenant(&request).await?;
        namespace
            .delete_object(&request.input.bucket, &request.input.key)
            .await
            .map_err(s3_error)?;
        response(DeleteObjectOutput::default())
    }

    async fn delete_objects(
        &self,
        request: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        if input.delete.objects.len() > KEYS_PER_REQUEST_MAX {
            return Err(s3_error!(
                MalformedXML,
                "at most {KEYS_PER_REQUEST_MAX} keys per request"
            ));
        }
        namespace.head_bucket(&input.bucket).map_err(s3_error)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            match namespace.delete_object(&input.bucket, &object.key).await {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(object.key),
                    ..Default::default()
                }),
                Err(error) => {
                    let error = s3_error(error);
                    errors.push(Error {
                        code: Some(error.code().as_str().to_owned()),
                        key: Some(object.key),
                        message: error.message().map(str::to_owned),
                        ..Default::default()
                    });
                }
            }
        }
        response(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        })
    }

    async fn copy_object(
        &self,
        request: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let source = copy_source(&input.copy_source)?;
        let conditions = convert::preconditions(
            input.copy_source_if_match,
            input.copy_source_if_none_match,
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        );
        let replace = match input
            .metadata_directive
            .as_ref()
            .map(MetadataDirective::as_str)
        {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "unknown metadata directive {other:?}"
                ))
            }
        };
        if !replace && source == (input.bucket.as_str(), input.key.as_str()) {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."
            ));
        }
        let metadata = replace.then(|| {
            let headers = StoredHeaders {
                content_type: input.content_type,
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires: input.expires,
            };
            convert::object_metadata(input.metadata, headers)
        });
        let copied = namespace
            .copy_object(source, &conditions, &input.bucket, &input.key, metadata)
            .await
            .map_err(s3_error)?;
        let result = CopyObjectResult {
            e_tag: Some(etag(&copied.etag)),
            last_modified: Some(s3_time(copied.attributes.mtime)),
            ..Default::default()
        };
        response(CopyObjectOutput {
            copy_object_result: Some(result),
            ..Default::default()
        })
    }

    async fn list_objects(
        &self,
        request: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let url = wants_url(input.encoding_type.as_ref())?;
        let max_keys = page_size(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input
            .delimiter
            .as_deref()
            .filter(|delimiter| !delimiter.is_empty());
        let page = list_page(
            &namespace,
            &input.bucket,
            &prefix,
            delimiter,
            input.marker.as_deref().filter(|m| !m.is_empty()),
            max_keys,
        )?;
        let (contents, common_prefixes) = page_contents(&page, url);
        let next_marker = page
            .truncated
            .then(|| {
                page.entries
                    .last()
                    .map(|entry| object_key(entry.key(), url))
            })
            .flatten();
        response(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(object_key(&prefix, url)),
            marker: Some(
                input
                    .marker
                    .map(|marker| object_key(&marker, url))
                    .unwrap_or_default(),
            ),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(page.truncated),
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            delimiter: input.delimiter.map(|delimiter| object_key(&delimiter, url)),
            next_marker,
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }

    async fn list_objects_v2(
        &self,
        request: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let url = wants_url(input.encoding_type.as_ref())?;
        let max_keys = page_size(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input
            .delimiter
            .as_deref()
            .filter(|delimiter| !delimiter.is_empty());
        let after = match &input.continuation_token {
            Some(token) => Some(convert::token_key(token)?),
            None => input.start_after.clone().filter(|after| !after.is_empty()),
        };
        let page = list_page(
            &namespace,
            &input.bucket,
            &prefix,
            delimiter,
            after.as_deref(),
            max_keys,
        )?;
        let (contents, common_prefixes) = page_contents(&page, url);
        let next = page
            .truncated
            .then(|| {
                page.entries
                    .last()
                    .map(|entry| convert::continuation_token(entry.key()))
            })
            .flatten();
        response(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(object_key(&prefix, url)),
            max_keys: Some(max_keys as i32),
            key_count: Some(page.entries.len() as i32),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: next,
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            delimiter: input.delimiter.map(|delimiter| object_key(&delimiter, url)),
            encoding_type: input.encoding_type,
            start_after: input.start_after.map(|after| object_key(&after, url)),
            ..Default::default()
        })
    }

    async fn create_multipart_upload(
        &self,
        request: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let headers = StoredHeaders {
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: input.expires,
        };
        let metadata = convert::object_metadata(input.metadata, headers);
        let upload_id = namespace
            .create_upload(&input.bucket, &input.key, metadata)
            .await
            .map_err(s3_error)?;
        response(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        })
    }

    async fn upload_part(
        &self,
        request: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let (namespace, workload) = self.caller(&request).await?;
        let input = request.input;
        let number = part_number(input.part_number)?;
        if input
            .content_length
            .is_some_and(|length| length as u64 > OBJECT_PUT_BYTES_MAX)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "a part is limited to {OBJECT_PUT_BYTES_MAX} bytes"
            ));
        }
        namespace
            .check_upload(&input.bucket, &input.key, &input.upload_id)
            .map_err(s3_error)?;
        let writer = namespace.object_writer().for_workload(&workload);
        let (data, md5) = body::store(
            writer,
            input.body,
            OBJECT_PUT_BYTES_MAX,
            input.content_md5.as_deref(),
        )
        .await?;
        namespace
            .upload_part(
                &input.bucket,
                &input.key,
                &input.upload_id,
                number,
                data,
                md5.clone(),
            )
            .await
            .map_err(s3_error)?;
        response(UploadPartOutput {
            e_tag: Some(etag(&md5)),
            ..Default::default()
        })
    }

    async fn upload_part_copy(
        &self,
        request: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let number = part_number(input.part_number)?;
        let (source_bucket, source_key) = copy_source(&input.copy_source)?;
        let source = namespace
            .head_object(source_bucket, source_key)
            .map_err(s3_error)?;
        let conditions = convert::preconditions(
            input.copy_source_if_match,
            input.copy_source_if_none_match,
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        );
        conditions
            .check(&source.etag, source.attributes.mtime)
            .map_err(|error| match error {
                kiseki_namespace::object::ObjectError::NotModified => s3_error!(PreconditionFailed),
                other => s3_error(other),
            })?;
        let range = match &input.copy_source_range {
            Some(text) => Some(Range::parse(text).map_err(|_| {
                s3_error!(InvalidArgument, "invalid x-amz-copy-source-range {text:?}")
            })?),
            None => None,
        };
        let (offset, len, _) = byte_range(range.as_ref(), source.size())?;
        let md5 = namespace
            .upload_part_copy(
                &input.bucket,
                &input.key,
                &input.upload_id,
                number,
                &source,
                (offset, len),
            )
            .await
            .map_err(s3_error)?;
        let result = CopyPartResult {
            e_tag: Some(etag(&md5)),
            last_modified: Some(s3_time(kiseki_types::Timestamp::now())),
            ..Default::default()
        };
        response(UploadPartCopyOutput {
            copy_part_result: Some(result),
            ..Default::default()
        })
    }

    async fn complete_multipart_upload(
        &self,
        request: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let listed = input
            .multipart_upload
            .and_then(|upload| upload.parts)
            .unwrap_or_default();
        let mut parts = Vec::with_capacity(listed.len());
        for part in listed {
            let number = part_number(
                part.part_number
                    .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?,
            )?;
            let tag = part
                .e_tag
                .ok_or_else(|| s3_error!(MalformedXML, "part {number} has no ETag"))?;
            parts.push((number, tag.into_value()));
        }
        let object_etag = namespace
            .complete_upload(&input.bucket, &input.key, &input.upload_id, parts)
            .await
            .map_err(s3_error)?;
        response(CompleteMultipartUploadOutput {
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&object_etag)),
            ..Default::default()
        })
    }

    async fn abort_multipart_upload(
        &self,
        request: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        namespace
            .abort_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(s3_error)?;
        response(AbortMultipartUploadOutput::default())
    }

    async fn list_parts(
        &self,
        request: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let max = page_size(input.max_parts)?;
        let after = u32::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
        let (parts, truncated) = namespace
            .list_parts(&input.bucket, &input.key, &input.upload_id, after, max)
            .map_err(s3_error)?;
        let next = parts.last().map(|part| part.number as i32);
        let parts = parts
            .into_iter()
            .map(|part| Part {
                part_number: Some(part.number as i32),
                e_tag: Some(etag(&part.etag)),
                size: Some(part.size as i64),
                last_modified: Some(s3_time(part.last_modified)),
                ..Default::default()
            })
            .collect();
        response(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
    }

    async fn list_multipart_uploads(
        &self,
        request: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let namespace = self.tenant(&request).await?;
        let input = request.input;
        let url = wants_url(input.encoding_type.as_ref())?;
        let max = page_size(input.max_uploads)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = (
            input.key_marker.as_deref().filter(|m| !m.is_empty()),
            input.upload_id_marker.as_deref().filter(|m| !m.is_empty()),
        );
        let (uploads, truncated) = namespace
            .list_uploads(&input.bucket, &prefix, marker, max)
            .map_err(s3_error)?;
        let next = uploads
            .last()
            .map(|upload| (object_key(&upload.key, url), upload.upload_id.clone()));
        let uploads = uploads
            .into_iter()
            .map(|upload| MultipartUpload {
                key: Some(object_key(&upload.key, url)),
                upload_id: Some(upload.upload_id),
                initiated: Some(s3_time(upload.initiated)),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        response(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(object_key(&prefix, url)),
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next.as_ref().map(|(key, _)| key.clone()),
            next_upload_id_marker: next.map(|(_, id)| id),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            uploads: Some(uploads),
            encoding_type: input.encoding_type,
            ..Default::default()
        })
    }
}
