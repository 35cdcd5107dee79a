//! An S3 endpoint backed by a directory (s3s-fs), which emits a notification after every successful change.
//!
//! Mutations are serialized, and each notification's sequencer is taken while the change still holds the lock, so
//! sequencers follow the order in which the changes really happened, as S3's do. They come from the wall clock
//! (nanoseconds), so they keep increasing across restarts and old tombstones stay meaningful.
//!
//! The bucket is versioned, as the deployed one is ([`crate::versions`]): writes answer their version id, deletes
//! leave delete markers, and ListObjectVersions, GET/HEAD by `versionId` and CopyObject from a version work.
//! Destination `If-Match` / `If-None-Match` on CopyObject are enforced, as S3 does.
//!
//! ListObjectsV2 is answered from a sorted index of each bucket's keys ([`crate::key_index`]), a range read per
//! page, instead of s3s-fs's walk and sort of the whole bucket directory for every page.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;
use tokio::sync::Mutex;

use s3kv::s3_event::EventName;

use crate::key_index::{self, Entry, KeyIndex, Query};
use crate::outbox::Outbox;
use crate::versions::{Listed, Version, Versions};

/// Whether s3s-fs can store `key`: it keeps the object at `bucket/key` and its metadata in a file named after the
/// base64 of bucket and key (with an upload id during multipart uploads), and no file name may pass 255 bytes.
/// S3 itself takes keys of up to 1,024 bytes; this is a limit of the local stack only.
pub fn storable(bucket: &str, key: &str) -> bool {
    let base64 = |bytes: usize| (4 * bytes).div_ceil(3);
    const FIXED: usize = ".bucket-".len()
        + ".object-".len()
        + ".upload-00000000-0000-0000-0000-000000000000".len()
        + ".metadata.json".len();
    FIXED + base64(bucket.len()) + base64(key.len()) <= 255
        && key.split('/').all(|segment| segment.len() <= 255)
}

fn check_storable(bucket: &str, key: &str) -> S3Result<()> {
    if storable(bucket, key) {
        return Ok(());
    }
    Err(s3_error!(
        KeyTooLongError,
        "s3kv-local keeps objects in files named after their keys, and this key is too long for the file system"
    ))
}

pub struct NotifyingFs {
    fs: FileSystem,
    root: PathBuf,
    versions: Versions,
    /// Each bucket's keys in order, for listing; changed only with `mutation` held.
    keys: KeyIndex,
    outbox: Outbox,
    mutation: Mutex<()>,
}

impl NotifyingFs {
    /// `root` is the directory `fs` serves (s3s-fs keeps each object at `root/bucket/key`). Its buckets' keys are
    /// indexed here, walking every bucket directory once.
    pub fn new(fs: FileSystem, root: PathBuf, outbox: Outbox) -> Self {
        Self {
            fs,
            versions: Versions::new(&root),
            keys: KeyIndex::build(&root),
            root,
            outbox,
            mutation: Mutex::new(()),
        }
    }

    /// The S3 endpoint over the data directory `root`: s3s-fs keeping each object at `root/bucket/key`, signatures
    /// checked for [`ACCESS_KEY`](crate::ACCESS_KEY) as S3 checks SigV4, and a notification into `outbox` after
    /// every change. `s3kv-local` serves it, and so does the benchmark (`S3KV_BENCH_ROLE=s3`).
    pub fn service(root: &Path, outbox: Outbox) -> std::io::Result<S3Service> {
        let fs = FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(Self::new(fs, root.to_path_buf(), outbox));
        builder.set_auth(SimpleAuth::from_single(
            crate::ACCESS_KEY,
            crate::SECRET_KEY,
        ));
        Ok(builder.build())
    }

    /// Called with the mutation lock held, so the size read is the size of this change's object.
    fn notify(&self, name: EventName, bucket: &str, key: &str, etag: Option<&ETag>) {
        let size = std::fs::metadata(self.root.join(bucket).join(key))
            .map(|m| m.len() as i64)
            .ok();
        self.outbox
            .emit(name, bucket, key, etag.map(ETag::value), size);
    }
}

/// A request of our own to s3s-fs, made with the credentials and context of the request being served.
fn internal<T, U>(input: T, method: http::Method, like: &S3Request<U>) -> S3Request<T> {
    S3Request {
        input,
        method,
        uri: like.uri.clone(),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: like.credentials.clone(),
        region: like.region.clone(),
        service: like.service.clone(),
        trailing_headers: None,
    }
}

fn internal_error(e: impl std::fmt::Display) -> s3s::S3Error {
    s3_error!(InternalError, "{e}")
}

/// The change itself is made (s3s-fs holds it) when its version record cannot be written: the client is told of
/// success and the syncer of the change, as they must be, and only the history misses an entry, said in the log.
fn kept<T>(result: S3Result<T>) -> Option<T> {
    result
        .map_err(|e| tracing::error!(error = %e, "version record not written; the change stands without it"))
        .ok()
}

fn no_such_version() -> s3s::S3Error {
    s3_error!(NoSuchVersion, "The specified version does not exist.")
}

/// A version id S3 would accept in a request: ours are digits, anything else names no version.
fn requested_version(id: &Option<String>) -> Option<&str> {
    id.as_deref().filter(|id| *id != "null")
}

impl NotifyingFs {
    /// What s3s-fs says about the current object, or `None` when there is none.
    async fn head<U>(
        &self,
        bucket: &str,
        key: &str,
        like: &S3Request<U>,
    ) -> S3Result<Option<HeadObjectOutput>> {
        let input = HeadObjectInput::builder()
            .bucket(bucket.to_owned())
            .key(key.to_owned())
            .build()
            .map_err(internal_error)?;
        match self
            .fs
            .head_object(internal(input, http::Method::HEAD, like))
            .await
        {
            Ok(response) => Ok(Some(response.output)),
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchKey => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A bucket directory the key index has not seen (made by hand since the start): walked once, with changes
    /// held off so that none is missed.
    async fn index_bucket(&self, bucket: &str) -> S3Result<()> {
        let _guard = self.mutation.lock().await;
        if self.keys.knows(bucket) {
            return Ok(());
        }
        let dir = self.root.join(bucket);
        let keys = tokio::task::spawn_blocking(move || key_index::scan_bucket(&dir))
            .await
            .map_err(internal_error)?
            .map_err(internal_error)?;
        self.keys.insert_bucket(bucket, keys);
        Ok(())
    }

    /// One object of a listing as s3s-fs's HEAD sees it, or `None` when its file is gone. When HEAD fails
    /// otherwise, it is listed as s3s-fs's own listing did, from the file alone, without an ETag.
    async fn listed_object<U>(
        &self,
        bucket: &str,
        key: &str,
        like: &S3Request<U>,
    ) -> Option<Object> {
        let error = match self.head(bucket, key, like).await {
            Ok(head) => {
                return head.map(|head| Object {
                    key: Some(key.to_owned()),
                    size: head.content_length,
                    last_modified: head.last_modified,
                    e_tag: head.e_tag,
                    ..Default::default()
                })
            }
            Err(error) => error,
        };
        let file = tokio::fs::metadata(self.root.join(bucket).join(key))
            .await
            .ok()?;
        if file.is_dir() {
            return None;
        }
        tracing::warn!(bucket, key, %error, "listed without an ETag");
        Some(Object {
            key: Some(key.to_owned()),
            size: Some(file.len() as i64),
            last_modified: file.modified().ok().map(Timestamp::from),
            ..Default::default()
        })
    }

    /// Records the object just written as the key's newest version. Called with the mutation lock held.
    async fn add_version<U>(
        &self,
        bucket: &str,
        key: &str,
        like: &S3Request<U>,
    ) -> S3Result<String> {
        let head = self
            .head(bucket, key, like)
            .await?
            .ok_or_else(|| internal_error("the object just written is gone"))?;
        self.versions
            .add_object(
                bucket,
                key,
                &self.root.join(bucket).join(key),
                head.e_tag.as_ref().map(|t| t.value().to_owned()),
                head.content_type.map(|t| t.to_string()),
                head.metadata.unwrap_or_default().into_iter().collect(),
            )
            .map_err(internal_error)
    }

    /// One version's record, delete markers included; `NoSuchVersion` when there is none.
    fn version(&self, bucket: &str, key: &str, id: &str) -> S3Result<Version> {
        self.versions
            .get(bucket, key, id)
            .map_err(internal_error)?
            .ok_or_else(no_such_version)
    }

    /// The version a GET or HEAD asked for: 404 `NoSuchVersion` if there is none, 405 for a delete marker (as
    /// S3 answers).
    fn requested(&self, bucket: &str, key: &str, id: &str) -> S3Result<Version> {
        let version = self.version(bucket, key, id)?;
        if version.delete_marker {
            return Err(s3_error!(
                MethodNotAllowed,
                "The specified method is not allowed against this resource."
            ));
        }
        Ok(version)
    }

    /// The newest version's id, when it is the object s3s-fs holds (a write made before versions were kept has
    /// none).
    fn current_version(&self, bucket: &str, key: &str, etag: Option<&ETag>) -> Option<String> {
        let newest = self.versions.newest(bucket, key).ok()??;
        (!newest.delete_marker && newest.etag.as_deref() == etag.map(ETag::value))
            .then_some(newest.id)
    }

    /// Destination `If-Match` / `If-None-Match: *` of a CopyObject (s3s does not parse them for copies), checked
    /// against the current object with the mutation lock held.
    async fn check_destination<U>(
        &self,
        bucket: &str,
        key: &str,
        req: &S3Request<U>,
    ) -> S3Result<()> {
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (if_match, if_none_match) = (header("if-match"), header("if-none-match"));
        if if_match.is_none() && if_none_match.is_none() {
            return Ok(());
        }
        let current = self.head(bucket, key, req).await?.and_then(|h| h.e_tag);
        let current = current.as_ref().map(ETag::value);
        let unquote = |v: &str| v.trim().trim_matches('"').to_owned();
        let holds = match (&if_match, &if_none_match) {
            (Some(wanted), _) => current == Some(unquote(wanted).as_str()),
            (None, Some(star)) if star.trim() == "*" => current.is_none(),
            (None, Some(_)) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match on a copy takes only *"
                ));
            }
            (None, None) => true,
        };
        if holds {
            Ok(())
        } else {
            Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
    }

    /// GET of one version, from the versions kept beside the current object.
    async fn get_version(
        &self,
        req: &S3Request<GetObjectInput>,
        id: &str,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        let version = self.requested(bucket, key, id)?;
        if let Some(ETagCondition::ETag(wanted)) = &req.input.if_match {
            if version.etag.as_deref() != Some(wanted.value()) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        let body = tokio::fs::read(self.versions.body_path(bucket, key, id))
            .await
            .map_err(internal_error)?;
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(body.len() as i64),
            body: Some(StreamingBlob::from(s3s::Body::from(body))),
            e_tag: version.etag.clone().map(ETag::Strong),
            last_modified: Some(Timestamp::from(version.modified())),
            content_type: version.content_type.as_deref().and_then(|t| t.parse().ok()),
            metadata: Some(version.metadata.clone().into_iter().collect()),
            version_id: Some(version.id),
            ..Default::default()
        }))
    }

    /// CopyObject from an older version: its bytes and (unless REPLACE) its metadata become the new current
    /// object, as a new version.
    async fn copy_from_version(
        &self,
        req: &S3Request<CopyObjectInput>,
        source: (&str, &str, &str),
    ) -> S3Result<(Option<ETag>, Option<String>)> {
        let (source_bucket, source_key, id) = source;
        let version = self.version(source_bucket, source_key, id)?;
        if version.delete_marker {
            return Err(s3_error!(
                InvalidRequest,
                "The source of a copy request may not specifically refer to a delete marker by version id."
            ));
        }
        let body = tokio::fs::read(self.versions.body_path(source_bucket, source_key, id))
            .await
            .map_err(internal_error)?;
        let replace = req
            .input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (content_type, metadata) = if replace {
            (req.input.content_type.clone(), req.input.metadata.clone())
        } else {
            (
                version.content_type.as_deref().and_then(|t| t.parse().ok()),
                Some(version.metadata.into_iter().collect()),
            )
        };
        let input = PutObjectInput::builder()
            .bucket(req.input.bucket.clone())
            .key(req.input.key.clone())
            .content_length(Some(body.len() as i64))
            .body(Some(StreamingBlob::from(s3s::Body::from(body))))
            .content_type(content_type)
            .metadata(metadata)
            .build()
            .map_err(internal_error)?;
        let put = self
            .fs
            .put_object(internal(input, http::Method::PUT, req))
            .await?;
        let id = kept(
            self.add_version(&req.input.bucket, &req.input.key, req)
                .await,
        );
        Ok((put.output.e_tag, id))
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// Read-only and multipart-staging operations go straight to the file system.
macro_rules! delegate {
    ($($name:ident: $input:ty => $output:ty;)*) => {$(
        fn $name<'life0, 'async_trait>(&'life0 self, req: S3Request<$input>) -> Boxed<'async_trait, $output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.fs.$name(req)
        }
    )*};
}

#[async_trait::async_trait]
impl S3 for NotifyingFs {
    delegate! {
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
        head_bucket: HeadBucketInput => HeadBucketOutput;
        list_buckets: ListBucketsInput => ListBucketsOutput;
        list_objects: ListObjectsInput => ListObjectsOutput;
        upload_part: UploadPartInput => UploadPartOutput;
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
        list_parts: ListPartsInput => ListPartsOutput;
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    }

    /// s3s-fs ignores `If-Match` on GET; the syncer relies on it, so it is enforced here.
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        if let Some(id) = requested_version(&req.input.version_id) {
            return self.get_version(&req, id).await;
        }
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let condition = req.input.if_match.clone();
        let mut response = self.fs.get_object(req).await?;
        if let Some(ETagCondition::ETag(wanted)) = condition {
            if response.output.e_tag.as_ref().map(ETag::value) != Some(wanted.value()) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        response.output.version_id =
            self.current_version(&bucket, &key, response.output.e_tag.as_ref());
        Ok(response)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        if let Some(id) = requested_version(&req.input.version_id) {
            let version = self.requested(&bucket, &key, id)?;
            return Ok(S3Response::new(HeadObjectOutput {
                content_length: Some(version.size as i64),
                e_tag: version.etag.clone().map(ETag::Strong),
                last_modified: Some(Timestamp::from(version.modified())),
                content_type: version.content_type.as_deref().and_then(|t| t.parse().ok()),
                metadata: Some(version.metadata.clone().into_iter().collect()),
                version_id: Some(version.id),
                ..Default::default()
            }));
        }
        let mut response = self.fs.head_object(req).await?;
        response.output.version_id =
            self.current_version(&bucket, &key, response.output.e_tag.as_ref());
        Ok(response)
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let bucket = HeadBucketInput::builder()
            .bucket(req.input.bucket.clone())
            .build()
            .map_err(internal_error)?;
        self.fs
            .head_bucket(internal(bucket, http::Method::HEAD, &req))
            .await?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            ..Default::default()
        }))
    }

    /// The local bucket is always versioned, like the template's: enabling is accepted, suspending is not.
    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let status = req.input.versioning_configuration.status.as_ref();
        if status.is_some_and(|s| s.as_str() != BucketVersioningStatus::ENABLED) {
            return Err(s3_error!(
                NotImplemented,
                "s3kv-local keeps its bucket versioned, as the deployed stack does"
            ));
        }
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = &req.input;
        if input.delimiter.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "s3kv-local lists versions without a delimiter"
            ));
        }
        let max = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let (listed, truncated) = self
            .versions
            .list(
                &input.bucket,
                &prefix,
                input.key_marker.as_deref().filter(|m| !m.is_empty()),
                input.version_id_marker.as_deref(),
                max,
            )
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidInput => s3_error!(InvalidArgument, "{e}"),
                _ => internal_error(e),
            })?;
        let last = listed.last().map(|l| (l.key.clone(), l.version.id.clone()));
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        for Listed {
            key,
            version,
            latest,
        } in listed
        {
            let last_modified = Some(Timestamp::from(version.modified()));
            if version.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(latest),
                    key: Some(key),
                    last_modified,
                    version_id: Some(version.id),
                    ..Default::default()
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: version.etag.map(ETag::Strong),
                    is_latest: Some(latest),
                    key: Some(key),
                    last_modified,
                    size: Some(version.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(version.id),
                    ..Default::default()
                });
            }
        }
        let (next_key, next_version) = match (truncated, last) {
            (true, Some((key, id))) => (Some(key), Some(id)),
            _ => (None, None),
        };
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            key_marker: input.key_marker.clone(),
            version_id_marker: input.version_id_marker.clone(),
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            versions: Some(versions),
            delete_markers: Some(markers),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        check_storable(&req.input.bucket, &req.input.key)?;
        self.fs.create_multipart_upload(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket.clone();
        let _guard = self.mutation.lock().await;
        let response = self.fs.create_bucket(req).await?;
        self.keys.insert_bucket(&bucket, Default::default());
        Ok(response)
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket.clone();
        let _guard = self.mutation.lock().await;
        let result = self.fs.delete_bucket(req).await;
        // Gone, or partly removed: walked again if it is listed.
        self.keys.forget_bucket(&bucket);
        result
    }

    /// A range read of the bucket's key index, where s3s-fs would walk and sort the whole bucket directory for
    /// every page; the parameters mean what they mean to s3s-fs (the continuation token is the last key or
    /// common prefix of the page before). S3 lists each object's ETag, and both reconcile and the listing API use
    /// them, so each object's size, time and ETag are what HEAD answers; a key whose file is gone since it was
    /// indexed is left out, as a listing that had not seen it.
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = &req.input;
        let bucket = input.bucket.as_str();
        if !self.root.join(bucket).exists() {
            return Err(s3_error!(NoSuchBucket));
        }
        let max_keys = match input.max_keys {
            Some(n) if n >= 0 => n.min(1000),
            _ => 1000,
        };
        let after = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(token), Some(start_after)) => Some(token.max(start_after)),
            (token, start_after) => token.or(start_after),
        };
        let query = Query {
            prefix: input
                .prefix
                .as_deref()
                .unwrap_or("")
                .trim_start_matches('/'),
            after,
            delimiter: input.delimiter.as_deref().filter(|d| !d.is_empty()),
            max_keys: max_keys as usize,
        };
        let page = match self.keys.page(bucket, &query) {
            Some(page) => page,
            None => {
                self.index_bucket(bucket).await?;
                self.keys
                    .page(bucket, &query)
                    .ok_or_else(|| internal_error("the bucket was removed while listing"))?
            }
        };
        let (mut contents, mut common_prefixes) = (Vec::new(), Vec::new());
        for entry in &page.entries {
            match entry {
                Entry::CommonPrefix(prefix) => common_prefixes.push(CommonPrefix {
                    prefix: Some(prefix.clone()),
                }),
                Entry::Object(key) => contents.extend(self.listed_object(bucket, key, &req).await),
            }
        }
        let key_count =
            i32::try_from(contents.len() + common_prefixes.len()).map_err(internal_error)?;
        Ok(S3Response::new(ListObjectsV2Output {
            key_count: Some(key_count),
            max_keys: Some(max_keys),
            is_truncated: Some(page.truncated),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            continuation_token: input.continuation_token.clone(),
            next_continuation_token: page.next_token().map(str::to_owned),
            delimiter: input.delimiter.clone(),
            encoding_type: input.encoding_type.clone(),
            name: Some(input.bucket.clone()),
            prefix: input.prefix.clone(),
            start_after: input.start_after.clone(),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_storable(&bucket, &key)?;
        let _guard = self.mutation.lock().await;
        let like = internal((), http::Method::PUT, &req);
        let result = self.fs.put_object(req).await;
        self.keys.refresh(&bucket, &key);
        let mut response = result?;
        response.output.version_id = kept(self.add_version(&bucket, &key, &like).await);
        self.notify(
            EventName::Put,
            &bucket,
            &key,
            response.output.e_tag.as_ref(),
        );
        Ok(response)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_storable(&bucket, &key)?;
        let _guard = self.mutation.lock().await;
        self.check_destination(&bucket, &key, &req).await?;
        let source_version = match &req.input.copy_source {
            CopySource::Bucket {
                bucket,
                key,
                version_id: Some(id),
            } if &**id != "null" => Some((bucket.to_string(), key.to_string(), id.to_string())),
            _ => None,
        };
        let response = match source_version {
            Some((source_bucket, source_key, id)) => {
                let result = self
                    .copy_from_version(&req, (&source_bucket, &source_key, &id))
                    .await;
                self.keys.refresh(&bucket, &key);
                let (etag, version) = result?;
                S3Response::new(CopyObjectOutput {
                    copy_object_result: Some(CopyObjectResult {
                        e_tag: etag,
                        last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                        ..Default::default()
                    }),
                    copy_source_version_id: Some(id),
                    version_id: version,
                    ..Default::default()
                })
            }
            None => {
                let like = internal((), http::Method::PUT, &req);
                let result = self.fs.copy_object(req).await;
                self.keys.refresh(&bucket, &key);
                let mut response = result?;
                response.output.version_id = kept(self.add_version(&bucket, &key, &like).await);
                response
            }
        };
        let etag = response
            .output
            .copy_object_result
            .as_ref()
            .and_then(|r| r.e_tag.as_ref());
        self.notify(EventName::Copy, &bucket, &key, etag);
        Ok(response)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let _guard = self.mutation.lock().await;
        let like = internal((), http::Method::POST, &req);
        let result = self.fs.complete_multipart_upload(req).await;
        self.keys.refresh(&bucket, &key);
        let mut response = result?;
        response.output.version_id = kept(self.add_version(&bucket, &key, &like).await);
        self.notify(
            EventName::CompleteMultipartUpload,
            &bucket,
            &key,
            response.output.e_tag.as_ref(),
        );
        Ok(response)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        if requested_version(&req.input.version_id).is_some() {
            return Err(s3_error!(
                NotImplemented,
                "s3kv-local keeps every version; deleting one version for good is not supported"
            ));
        }
        let _guard = self.mutation.lock().await;
        let result = self.fs.delete_object(req).await;
        self.keys.refresh(&bucket, &key);
        let mut response = result?;
        let marker = kept(
            self.versions
                .add_delete_marker(&bucket, &key)
                .map_err(internal_error),
        );
        response.output.delete_marker = Some(true);
        response.output.version_id = marker;
        self.notify(EventName::DeleteMarkerCreated, &bucket, &key, None);
        Ok(response)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let quiet = req.input.delete.quiet == Some(true);
        let _guard = self.mutation.lock().await;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in &req.input.delete.objects {
            let key = object.key.clone();
            if requested_version(&object.version_id).is_some() {
                errors.push(Error {
                    code: Some("NotImplemented".into()),
                    key: Some(key),
                    message: Some("s3kv-local keeps every version".into()),
                    version_id: object.version_id.clone(),
                });
                continue;
            }
            let input = DeleteObjectInput::builder()
                .bucket(bucket.clone())
                .key(key.clone())
                .build()
                .map_err(internal_error)?;
            let result = self
                .fs
                .delete_object(internal(input, http::Method::DELETE, &req))
                .await;
            self.keys.refresh(&bucket, &key);
            if let Err(e) = result {
                errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    key: Some(key),
                    message: e.message().map(str::to_owned),
                    version_id: None,
                });
                continue;
            }
            let marker = kept(
                self.versions
                    .add_delete_marker(&bucket, &key)
                    .map_err(internal_error),
            );
            self.notify(EventName::DeleteMarkerCreated, &bucket, &key, None);
            deleted.push(DeletedObject {
                key: Some(key),
                delete_marker: Some(true),
                delete_marker_version_id: marker,
                ..Default::default()
            });
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }
}
