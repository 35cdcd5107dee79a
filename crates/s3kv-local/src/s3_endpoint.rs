//! An S3 endpoint backed by a directory (s3s-fs), which emits a notification after every successful change.
//!
//! Mutations are serialized, and each notification's sequencer is taken while the change still holds the lock, so
//! sequencers follow the order in which the changes really happened, as S3's do. They come from the wall clock
//! (nanoseconds), so they keep increasing across restarts and old tombstones stay meaningful.

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

use crate::outbox::Outbox;

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
    outbox: Outbox,
    mutation: Mutex<()>,
}

impl NotifyingFs {
    /// `root` is the directory `fs` serves (s3s-fs keeps each object at `root/bucket/key`).
    pub fn new(fs: FileSystem, root: PathBuf, outbox: Outbox) -> Self {
        Self {
            fs,
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
        create_bucket: CreateBucketInput => CreateBucketOutput;
        delete_bucket: DeleteBucketInput => DeleteBucketOutput;
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
        head_bucket: HeadBucketInput => HeadBucketOutput;
        head_object: HeadObjectInput => HeadObjectOutput;
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
        let condition = req.input.if_match.clone();
        let response = self.fs.get_object(req).await?;
        if let Some(ETagCondition::ETag(wanted)) = condition {
            if response.output.e_tag.as_ref().map(ETag::value) != Some(wanted.value()) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        Ok(response)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        check_storable(&req.input.bucket, &req.input.key)?;
        self.fs.create_multipart_upload(req).await
    }

    /// s3s-fs lists objects without their ETags; S3 always includes them, and both reconcile and the listing API
    /// use them, so they are filled in from each object's metadata (what HEAD answers).
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let (uri, credentials, region, service) = (
            req.uri.clone(),
            req.credentials.clone(),
            req.region.clone(),
            req.service.clone(),
        );
        let mut response = self.fs.list_objects_v2(req).await?;
        for object in response.output.contents.iter_mut().flatten() {
            let Some(key) = object.key.clone().filter(|_| object.e_tag.is_none()) else {
                continue;
            };
            let input = HeadObjectInput::builder()
                .bucket(bucket.clone())
                .key(key)
                .build()
                .map_err(|e| s3_error!(InternalError, "{e}"))?;
            let head = S3Request {
                input,
                method: http::Method::HEAD,
                uri: uri.clone(),
                headers: http::HeaderMap::new(),
                extensions: http::Extensions::new(),
                credentials: credentials.clone(),
                region: region.clone(),
                service: service.clone(),
                trailing_headers: None,
            };
            // Deleted since it was listed: leave it without a tag, as the listing saw it.
            if let Ok(head) = self.fs.head_object(head).await {
                object.e_tag = head.output.e_tag;
            }
        }
        Ok(response)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_storable(&bucket, &key)?;
        let _guard = self.mutation.lock().await;
        let response = self.fs.put_object(req).await?;
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
        let response = self.fs.copy_object(req).await?;
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
        let response = self.fs.complete_multipart_upload(req).await?;
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
        let _guard = self.mutation.lock().await;
        let response = self.fs.delete_object(req).await?;
        self.notify(EventName::Delete, &bucket, &key, None);
        Ok(response)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let _guard = self.mutation.lock().await;
        let response = self.fs.delete_objects(req).await?;
        for deleted in response.output.deleted.iter().flatten() {
            if let Some(key) = &deleted.key {
                self.notify(EventName::Delete, &bucket, key, None);
            }
        }
        Ok(response)
    }
}
