//! An S3 endpoint backed by a directory (s3s-fs), which emits a notification after every successful change.
//!
//! Mutations are serialized, and each notification's sequencer is taken while the change still holds the lock, so
//! sequencers follow the order in which the changes really happened, as S3's do. That one lock caps writes at
//! roughly 100 to 150 PUT/s (each also fsyncs its journal entry, [`journal`]): plenty for a dev stack, and no
//! measure of S3. Reads (GET, HEAD, listings) never take it, so a burst of writes, or a slow upload holding the
//! lock while its body arrives (bounded by the read timeout, [`crate::timeouts`]), never stalls them. They come from the wall clock
//! (nanoseconds), so they keep increasing across restarts and old tombstones stay meaningful.
//!
//! The bucket is versioned, as the deployed one is ([`crate::versions`]): writes answer their version id, deletes
//! leave delete markers, and ListObjectVersions, GET/HEAD by `versionId` and CopyObject from a version work.
//! Destination `If-Match` / `If-None-Match` on CopyObject are enforced, as S3 does.
//!
//! The one `impl S3` block lives here; versions, listings, the journal (and the endpoint's transactions over it),
//! the limits of keys as files, and repairs are in the submodules.
//!
//! Listings are answered from a sorted index of each bucket's keys ([`listing`]).

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

mod journal;
mod limits;
mod listing;
mod repair;
mod versioning;

pub use journal::Journal;
pub use limits::{conflict, storable};
pub use repair::etag_of;

use limits::{check_conflict, check_storable};

use crate::key_index::KeyIndex;
use crate::outbox::Outbox;
use crate::versions::Versions;

pub struct NotifyingFs {
    fs: FileSystem,
    root: PathBuf,
    versions: Versions,
    /// Each bucket's keys in order, for listing; changed only with `mutation` held.
    keys: KeyIndex,
    outbox: Outbox,
    journal: std::sync::Arc<Journal>,
    mutation: Mutex<()>,
}

impl NotifyingFs {
    /// `root` is the directory `fs` serves (s3s-fs keeps each object at `root/bucket/key`). Its buckets' keys are
    /// indexed here, walking every bucket directory once.
    ///
    /// Changes a crash interrupted are rolled back first ([`journal`]), and objects torn by earlier versions of the
    /// endpoint (new bytes under the old ETag) are repaired or set aside ([`repair`]), each one logged: one bad
    /// object must not keep the rest from being served.
    pub fn new(fs: FileSystem, root: PathBuf, outbox: Outbox) -> std::io::Result<Self> {
        let versions = Versions::new(&root);
        let journal = Journal::new(&root);
        for (bucket, key) in journal.recover(&versions)? {
            tracing::warn!(
                bucket,
                key,
                "a change interrupted by a crash was rolled back"
            );
        }
        repair::torn_objects(&root, &versions);
        Ok(Self {
            fs,
            versions,
            keys: KeyIndex::build(&root),
            root,
            outbox,
            journal: std::sync::Arc::new(journal),
            mutation: Mutex::new(()),
        })
    }

    /// The S3 endpoint over the data directory `root`: s3s-fs keeping each object at `root/bucket/key`, signatures
    /// checked for [`ACCESS_KEY`](crate::ACCESS_KEY) as S3 checks SigV4, and a notification into `outbox` after
    /// every change. `s3kv-local` serves it, and so does the benchmark (`S3KV_BENCH_ROLE=s3`).
    pub fn service(root: &Path, outbox: Outbox) -> std::io::Result<S3Service> {
        let fs = FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(Self::new(fs, root.to_path_buf(), outbox)?);
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

    /// A key whose path is a directory here (other keys exist under `key/`) names no object: 404, as in S3,
    /// where s3s-fs would fail to read a directory as a file and answer 500, which clients retry.
    fn check_not_a_folder(&self, bucket: &str, key: &str) -> S3Result<()> {
        if !key.ends_with('/') && self.root.join(bucket).join(key).is_dir() {
            return Err(s3_error!(NoSuchKey));
        }
        Ok(())
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
        self.check_not_a_folder(&bucket, &key)?;
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
        self.check_not_a_folder(&bucket, &key)?;
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
        self.list_versions(req).await
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

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_v1(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_v2(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_storable(&bucket, &key)?;
        let _guard = self.mutation.lock().await;
        check_conflict(&self.root, &bucket, &key)?;
        let like = internal((), http::Method::PUT, &req);
        let txn = self.begin(&bucket, &key).await?;
        let result = match self.fs.put_object(req).await {
            Ok(mut response) => {
                response.output.version_id = kept(self.add_version(&bucket, &key, &like).await);
                Ok(response)
            }
            Err(e) => Err(e),
        };
        let response = self.finish(txn, (&bucket, &key), result).await?;
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
        check_conflict(&self.root, &bucket, &key)?;
        self.check_destination(&bucket, &key, &req).await?;
        let source_version = match &req.input.copy_source {
            CopySource::Bucket {
                bucket,
                key,
                version_id: Some(id),
            } if &**id != "null" => Some((bucket.to_string(), key.to_string(), id.to_string())),
            _ => None,
        };
        let txn = self.begin(&bucket, &key).await?;
        let result = match source_version {
            Some((source_bucket, source_key, id)) => self
                .copy_from_version(&req, (&source_bucket, &source_key, &id))
                .await
                .map(|(etag, version)| {
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
                }),
            None => {
                let like = internal((), http::Method::PUT, &req);
                match self.fs.copy_object(req).await {
                    Ok(mut response) => {
                        response.output.version_id =
                            kept(self.add_version(&bucket, &key, &like).await);
                        Ok(response)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let response = self.finish(txn, (&bucket, &key), result).await?;
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
        check_conflict(&self.root, &bucket, &key)?;
        let like = internal((), http::Method::POST, &req);
        let txn = self.begin(&bucket, &key).await?;
        let result = match self.fs.complete_multipart_upload(req).await {
            Ok(mut response) => {
                response.output.version_id = kept(self.add_version(&bucket, &key, &like).await);
                Ok(response)
            }
            Err(e) => Err(e),
        };
        let response = self.finish(txn, (&bucket, &key), result).await?;
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
        let _guard = self.mutation.lock().await;
        if let Some(id) = requested_version(&req.input.version_id) {
            let (bucket, key) = (&req.input.bucket, &req.input.key);
            self.delete_version(bucket, key, id, &req).await?;
            return Ok(S3Response::new(DeleteObjectOutput {
                version_id: Some(id.to_owned()),
                ..Default::default()
            }));
        }
        // s3s-fs ignores a delete's `If-Match`; S3 honours it (the reaper relies on it), so it is enforced here,
        // under the mutation lock like every change.
        if let Some(ETagCondition::ETag(wanted)) = &req.input.if_match {
            let (bucket, key) = (&req.input.bucket, &req.input.key);
            let current = self.head(bucket, key, &req).await?.and_then(|h| h.e_tag);
            match current.as_ref().map(ETag::value) {
                None => return Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
                Some(etag) if etag != wanted.value() => {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ))
                }
                Some(_) => {}
            }
        }
        let input = req.input.clone();
        let marker = self.delete_one(input, &req).await?;
        let mut response = S3Response::new(DeleteObjectOutput::default());
        response.output.delete_marker = Some(true);
        response.output.version_id = marker;
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
            if let Some(id) = requested_version(&object.version_id) {
                match self.delete_version(&bucket, &key, id, &req).await {
                    Ok(()) => deleted.push(DeletedObject {
                        key: Some(key),
                        version_id: Some(id.to_owned()),
                        ..Default::default()
                    }),
                    Err(e) => errors.push(Error {
                        code: Some(e.code().as_str().to_owned()),
                        key: Some(key),
                        message: e.message().map(str::to_owned),
                        version_id: Some(id.to_owned()),
                    }),
                }
                continue;
            }
            let input = DeleteObjectInput::builder()
                .bucket(bucket.clone())
                .key(key.clone())
                .build()
                .map_err(internal_error)?;
            match self.delete_one(input, &req).await {
                Ok(marker) => deleted.push(DeletedObject {
                    key: Some(key),
                    delete_marker: Some(true),
                    delete_marker_version_id: marker,
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    key: Some(key),
                    message: e.message().map(str::to_owned),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }
}

impl NotifyingFs {
    /// Deletes one key as a transaction, leaving a delete marker, and notifies; answers the marker's id. Called with
    /// the mutation lock held. A key whose path is a directory here (keys exist under `key/`) names no object: the
    /// delete only leaves its marker, as deleting any absent key does.
    async fn delete_one<U>(
        &self,
        input: DeleteObjectInput,
        like: &S3Request<U>,
    ) -> S3Result<Option<String>> {
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let txn = self.begin(&bucket, &key).await?;
        let deleted = if !key.ends_with('/') && self.root.join(&bucket).join(&key).is_dir() {
            Ok(())
        } else {
            self.fs
                .delete_object(internal(input, http::Method::DELETE, like))
                .await
                .map(drop)
        };
        let result = deleted.map(|()| {
            kept(
                self.versions
                    .add_delete_marker(&bucket, &key)
                    .map_err(internal_error),
            )
        });
        let marker = self.finish(txn, (&bucket, &key), result).await?;
        self.notify(EventName::DeleteMarkerCreated, &bucket, &key, None);
        Ok(marker)
    }
}
