//! [`ObjectStore`] over aws-sdk-s3.
//!
//! SDK retries are disabled here on purpose: [`crate::retry`] retries every call within the invocation's
//! deadline, and two stacked retry loops would multiply attempts and blow through that deadline.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;

use crate::audit::{Author, Provenance};
use crate::config::Config;
use crate::ports::{Etag, ListPage, Listed, Object, ObjectStore, PutMode, StoreError};

#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// Builds the client from the standard AWS environment (credentials, region, `AWS_ENDPOINT_URL_S3`), with
    /// path-style addressing when an endpoint is set, since S3-compatible servers rarely do virtual hosts.
    pub async fn from_config(config: &Config) -> Self {
        Self::from_loader(aws_config::defaults(BehaviorVersion::latest()), config).await
    }

    /// [`S3Store::from_config`] over a loader the caller has already pointed somewhere (tests give it an
    /// endpoint and static credentials); what s3kv itself requires, no SDK retries and bounded attempts, is set
    /// here and wins.
    pub async fn from_loader(loader: aws_config::ConfigLoader, config: &Config) -> Self {
        let loader = loader.retry_config(RetryConfig::disabled()).timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(config.s3_timeout)
                .connect_timeout(config.s3_timeout)
                .build(),
        );
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.s3_endpoint.is_some())
            .build();
        Self::new(Client::from_conf(s3_config), &config.bucket)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// A client for an S3-compatible endpoint with static credentials (the local stack, tests): path-style, SDK
/// retries off as everywhere in s3kv, and `attempt_timeout` per request.
pub fn endpoint_client(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    attempt_timeout: std::time::Duration,
) -> Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key, secret_key, None, None, "static",
        ))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(attempt_timeout)
                .connect_timeout(attempt_timeout)
                .build(),
        )
        .build();
    Client::from_conf(config)
}

// Each `send()` future is boxed: smithy's orchestrator futures are so deeply nested that, inlined into a
// handler future inside lambda_runtime's, they overflow rustc's layout recursion limit in every crate that
// awaits a handler (the binaries and the integration tests). One allocation per S3 call is noise beside the call.
impl ObjectStore for S3Store {
    async fn get(
        &self,
        key: &str,
        if_match: Option<&Etag>,
        max_bytes: u64,
    ) -> Result<Object, StoreError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match.map(Etag::quoted))
            .send();
        let output = Box::pin(output).await.map_err(store_error)?;
        let size = output.content_length().unwrap_or_default().max(0) as u64;
        if size > max_bytes {
            return Err(StoreError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let etag = Etag::new(output.e_tag().unwrap_or_default());
        let provenance = Provenance {
            writer: Some(writer(output.metadata())),
            modified: output.last_modified().map(|t| t.secs()),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?
            .into_bytes();
        Ok(Object {
            body,
            etag,
            provenance,
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        mode: PutMode,
        author: &Author,
    ) -> Result<Etag, StoreError> {
        let metadata = [
            (META_KEY_ID, &author.key_id),
            (META_KEY_NAME, &author.key_name),
            (META_REQUEST_ID, &author.request_id),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
        .collect();
        let output = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .set_metadata(Some(metadata))
            .set_if_none_match((mode == PutMode::CreateOnly).then(|| "*".to_owned()))
            .set_if_match(match &mode {
                PutMode::Replace(etag) => Some(etag.quoted()),
                _ => None,
            })
            .body(ByteStream::from(body))
            .send();
        let output = Box::pin(output).await.map_err(store_error)?;
        Ok(Etag::new(output.e_tag().unwrap_or_default()))
    }

    async fn head(&self, key: &str) -> Result<Etag, StoreError> {
        let output = Box::pin(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        )
        .await
        .map_err(store_error)?;
        Ok(Etag::new(output.e_tag().unwrap_or_default()))
    }

    async fn delete(&self, key: &str, if_match: Option<&Etag>) -> Result<(), StoreError> {
        Box::pin(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .set_if_match(if_match.map(Etag::quoted))
                .send(),
        )
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        next: Option<String>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        self.list_from(prefix, next, None, max_keys).await
    }

    async fn list_after(
        &self,
        prefix: &str,
        after: &str,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        self.list_from(prefix, None, Some(after.to_owned()), max_keys)
            .await
    }
}

impl S3Store {
    async fn list_from(
        &self,
        prefix: &str,
        next: Option<String>,
        start_after: Option<String>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        let request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(max_keys.clamp(1, 1000) as i32)
            .set_continuation_token(next)
            .set_start_after(start_after)
            .send();
        let output = Box::pin(request).await.map_err(store_error)?;
        let objects = output
            .contents()
            .iter()
            .filter_map(|o| {
                let etag = Etag::new(o.e_tag().unwrap_or_default());
                Some(Listed {
                    key: o.key()?.to_owned(),
                    etag,
                    size: o.size().unwrap_or_default().max(0) as u64,
                    last_modified: o
                        .last_modified()
                        .and_then(|t| t.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok()),
                })
            })
            .collect();
        let next = output
            .next_continuation_token()
            .filter(|_| output.is_truncated() == Some(true))
            .map(str::to_owned);
        Ok(ListPage { objects, next })
    }
}

/// The user metadata (`x-amz-meta-*`) a write through the API carries; S3 hands names back lowercased.
const META_KEY_ID: &str = "s3kv-key-id";
const META_KEY_NAME: &str = "s3kv-key-name";
const META_REQUEST_ID: &str = "s3kv-request-id";

/// Who wrote an object, from its metadata: a write through the API, or else an upload.
fn writer(metadata: Option<&std::collections::HashMap<String, String>>) -> String {
    let get = |name: &str| metadata.and_then(|m| m.get(name)).cloned();
    Author {
        key_id: get(META_KEY_ID),
        key_name: get(META_KEY_NAME),
        request_id: get(META_REQUEST_ID),
    }
    .header()
}

/// Maps by HTTP status, which is what S3 guarantees across operations (HEAD errors have no body to parse, and
/// a failed conditional request arrives as an unmodelled error with status 412).
fn store_error<E>(error: SdkError<E, HttpResponse>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let status = match &error {
        SdkError::ConstructionFailure(_) => Some(400),
        other => other.raw_response().map(|r| r.status().as_u16()),
    };
    match status {
        Some(404) => StoreError::NotFound,
        Some(412) => StoreError::PreconditionFailed,
        Some(409) => StoreError::Conflict,
        // 429, 5xx, and no response at all (timeout, connection refused): worth another attempt.
        Some(429 | 500..=599) | None => StoreError::Unavailable(Box::new(error)),
        Some(status) => StoreError::Rejected {
            status,
            source: Box::new(error),
        },
    }
}
