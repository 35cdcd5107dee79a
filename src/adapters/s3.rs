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
use crate::expiry::Expiry;
use crate::ports::{
    Etag, ListPage, Listed, Object, ObjectStore, ObjectVersion, PutMode, StoreError, VersionPage,
};

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
    ///
    /// Where the environment is Lambda's (credentials and region in variables, no other AWS setting, no shared
    /// config file: [`LambdaEnvironment::detect`]), the client is built from those variables directly; anywhere
    /// else (a profile, SSO, web identity, a container's credentials, any other `AWS_*` setting) through
    /// aws-config's default chain, which reads all of them. Both resolve the same region, credentials and
    /// endpoint there: the direct build only skips setting up the chain's providers (profile files, IMDS, ECS,
    /// SSO, web identity), a third of a function's `main` before its first `/next` (docs/src/benchmarks).
    pub async fn from_config(config: &Config) -> Self {
        match LambdaEnvironment::detect(
            |name| std::env::var(name).ok(),
            std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
            |path| std::path::Path::new(path).exists(),
        ) {
            Some(environment) => Self::from_environment(
                environment,
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
                config,
            ),
            None => {
                Self::from_loader(aws_config::defaults(BehaviorVersion::latest()), config).await
            }
        }
    }

    /// [`S3Store::from_config`] over a loader the caller has already pointed somewhere (tests give it an
    /// endpoint and static credentials); what s3kv itself requires, no SDK retries, bounded attempts and the
    /// process's one set of TLS roots ([`super::tls`]), is set here and wins.
    pub async fn from_loader(loader: aws_config::ConfigLoader, config: &Config) -> Self {
        let loader = loader
            .http_client(super::tls::sdk_http_client())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts(config));
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.s3_endpoint.is_some())
            .build();
        Self::new(Client::from_conf(s3_config), &config.bucket)
    }

    /// The client Lambda's environment describes, with the same settings as [`S3Store::from_loader`]'s.
    /// `credentials` is aws-config's environment provider (tests give static ones): it reads the variables when a
    /// request first needs them, and the client caches them as it does the default chain's.
    fn from_environment(
        environment: LambdaEnvironment,
        credentials: impl aws_sdk_s3::config::ProvideCredentials + 'static,
        config: &Config,
    ) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(environment.region))
            .credentials_provider(credentials)
            .force_path_style(config.s3_endpoint.is_some())
            .http_client(super::tls::sdk_http_client())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts(config));
        builder.set_endpoint_url(config.s3_endpoint.clone());
        let s3_config = builder.build();
        Self::new(Client::from_conf(s3_config), &config.bucket)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Each attempt, and each connect, bounded by `S3KV_S3_TIMEOUT_MS` ([`crate::retry`] retries within the deadline).
fn timeouts(config: &Config) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(config.s3_timeout)
        .connect_timeout(config.s3_timeout)
        .build()
}

/// What the SDK needs from an environment like Lambda's, where aws-config's default chain would find nothing
/// but the variables: the region (`AWS_REGION`, else `AWS_DEFAULT_REGION`, the chain's order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LambdaEnvironment {
    region: String,
}

/// The `AWS_*` variables Lambda sets that are no SDK setting the direct build would miss: its credentials and
/// region (read by it), `AWS_ENDPOINT_URL_S3` ([`Config::s3_endpoint`], set on the client as the chain would) and
/// the runtime's own (`AWS_LAMBDA_*`, the execution environment, X-Ray, read by lambda_runtime or no one).
const LAMBDA_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_EXECUTION_ENV",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
];

impl LambdaEnvironment {
    /// Lambda's environment, or `None` where the default chain could find something the variables do not say:
    /// credentials or region missing, any other `AWS_*` variable (a profile, SSO, web identity, container
    /// credentials, FIPS, checksums, another endpoint...), or a shared config or credentials file in `$HOME/.aws`.
    fn detect(
        var: impl Fn(&str) -> Option<String>,
        names: impl IntoIterator<Item = String>,
        exists: impl Fn(&str) -> bool,
    ) -> Option<Self> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        set("AWS_ACCESS_KEY_ID")?;
        set("AWS_SECRET_ACCESS_KEY")?;
        let region = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION"))?;
        let other_setting = names.into_iter().any(|name| {
            name.starts_with("AWS_")
                && !name.starts_with("AWS_LAMBDA_")
                && !LAMBDA_VARIABLES.contains(&name.as_str())
        });
        if other_setting {
            return None;
        }
        if let Some(home) = set("HOME") {
            let home = home.trim_end_matches('/');
            if exists(&format!("{home}/.aws/config")) || exists(&format!("{home}/.aws/credentials"))
            {
                return None;
            }
        }
        Some(Self { region })
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
        self.get_object(key, if_match, None, max_bytes).await
    }

    async fn versions(
        &self,
        key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<VersionPage, StoreError> {
        let order = VersionOrder::default();
        let request = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(key)
            .max_keys(limit.clamp(1, 1000) as i32)
            .set_key_marker(after.map(|_| key.to_owned()))
            .set_version_id_marker(after.map(str::to_owned))
            .customize()
            .interceptor(order.clone())
            .send();
        let output = Box::pin(request).await.map_err(store_error)?;
        let time = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
            t.and_then(|t| t.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
        };
        // The SDK splits S3's one ordered list into versions and delete markers; S3's own order is read from
        // the answer (VersionOrder), and merging by time is only the fallback. Other keys under the same prefix
        // ("a.json.json" after "a.json") sort after every version of this one.
        let versions = output
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key))
            .map(|v| {
                let when = v.last_modified().copied();
                let version = ObjectVersion {
                    version: v.version_id().unwrap_or("null").to_owned(),
                    etag: v.e_tag().map(Etag::new),
                    size: v.size().unwrap_or_default().max(0) as u64,
                    last_modified: time(v.last_modified()),
                    deleted: false,
                    current: v.is_latest() == Some(true),
                };
                (when, version)
            });
        let markers = output
            .delete_markers()
            .iter()
            .filter(|m| m.key() == Some(key))
            .map(|m| {
                let when = m.last_modified().copied();
                let version = ObjectVersion {
                    version: m.version_id().unwrap_or("null").to_owned(),
                    etag: None,
                    size: 0,
                    last_modified: time(m.last_modified()),
                    deleted: true,
                    current: m.is_latest() == Some(true),
                };
                (when, version)
            });
        let versions = newest_first(versions.chain(markers).collect(), &order.positions(key));
        let more_of_this_key =
            output.is_truncated() == Some(true) && output.next_key_marker() == Some(key);
        let next = more_of_this_key
            .then(|| output.next_version_id_marker().map(str::to_owned))
            .flatten();
        Ok(VersionPage { versions, next })
    }

    async fn get_version(
        &self,
        key: &str,
        version: &str,
        max_bytes: u64,
    ) -> Result<Object, StoreError> {
        self.get_object(key, None, Some(version), max_bytes)
            .await
            .map_err(version_error)
    }

    async fn version_provenance(&self, key: &str, version: &str) -> Result<Provenance, StoreError> {
        let output = Box::pin(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .version_id(version)
                .send(),
        )
        .await
        .map_err(store_error)
        .map_err(version_error)?;
        Ok(Provenance {
            writer: Some(writer(output.metadata())),
            modified: output.last_modified().map(|t| t.secs()),
            expires: expires(output.metadata()),
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        mode: PutMode,
        author: &Author,
    ) -> Result<Etag, StoreError> {
        let expires = author.expires.map(Expiry::stored);
        let metadata = [
            (META_KEY_ID, &author.key_id),
            (META_KEY_NAME, &author.key_name),
            (META_REQUEST_ID, &author.request_id),
            (META_RESTORED_FROM, &author.restored_from),
            (META_EXPIRES_AT, &expires),
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
    async fn get_object(
        &self,
        key: &str,
        if_match: Option<&Etag>,
        version: Option<&str>,
        max_bytes: u64,
    ) -> Result<Object, StoreError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match.map(Etag::quoted))
            .set_version_id(version.map(str::to_owned))
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
            expires: expires(output.metadata()),
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
const META_RESTORED_FROM: &str = "s3kv-restored-from";
/// Unix seconds ([`crate::expiry`]); S3 keeps it on copies that keep metadata, as the expiry belongs to the bytes.
const META_EXPIRES_AT: &str = "s3kv-expires-at";

/// Who wrote an object, from its metadata: a write through the API, or else an upload.
fn writer(metadata: Option<&std::collections::HashMap<String, String>>) -> String {
    let get = |name: &str| metadata.and_then(|m| m.get(name)).cloned();
    Author {
        key_id: get(META_KEY_ID),
        key_name: get(META_KEY_NAME),
        request_id: get(META_REQUEST_ID),
        restored_from: get(META_RESTORED_FROM),
        expires: None,
    }
    .header()
}

/// When an object expires, from its metadata; a value this code did not write reads as none.
fn expires(metadata: Option<&std::collections::HashMap<String, String>>) -> Option<Expiry> {
    metadata
        .and_then(|m| m.get(META_EXPIRES_AT))
        .and_then(|raw| Expiry::parse_stored(raw))
}

/// The order of the `<Version>` and `<DeleteMarker>` entries in a ListObjectVersions answer, read from its
/// XML after the SDK has parsed it: the SDK hands them back as two lists, and S3's timestamps (whole seconds)
/// cannot tell which of a delete and a write in the same second came first.
#[derive(Debug, Default, Clone)]
struct VersionOrder(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl VersionOrder {
    /// Each version id of `key`, by its position in S3's list.
    fn positions(&self, key: &str) -> std::collections::HashMap<String, usize> {
        let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .enumerate()
            .map(|(i, (_, version))| (version.clone(), i))
            .collect()
    }
}

impl aws_sdk_s3::config::Intercept for VersionOrder {
    fn name(&self) -> &'static str {
        "s3kv-version-order"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_s3::config::interceptors::AfterDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        if let Some(xml) = context.response().body().bytes() {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = version_entries(xml);
        }
        Ok(())
    }
}

/// `(key, version id)` of every `<Version>` and `<DeleteMarker>` element, in document order.
fn version_entries(xml: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(xml);
    let field = |element: &str, name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = element.find(&open)? + open.len();
        let end = element[start..].find(&format!("</{name}>"))? + start;
        Some(unescape(&element[start..end]))
    };
    let mut entries = Vec::new();
    let mut rest = text.as_ref();
    loop {
        let next = ["<Version>", "<DeleteMarker>"]
            .iter()
            .filter_map(|tag| rest.find(tag).map(|at| (at, *tag)))
            .min();
        let Some((at, tag)) = next else { break };
        let close = tag.replacen('<', "</", 1);
        let element = &rest[at..];
        let end = element
            .find(&close)
            .map_or(element.len(), |e| e + close.len());
        if let (Some(key), Some(version)) = (
            field(&element[..end], "Key"),
            field(&element[..end], "VersionId"),
        ) {
            entries.push((key, version));
        }
        rest = &element[end..];
    }
    entries
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// One list, newest first, from the SDK's two (versions, then delete markers). S3 itself lists them interleaved
/// in order, so the answer's document order (`positions`) is used when it agrees with the timestamps. Servers that
/// list markers apart from versions (moto, s3s) disagree with their own timestamps as soon as a marker is newer
/// than a version; then the order is by time (the current entry first, then newer first), which is exact where
/// timestamps are finer than a second and ambiguous only for changes within one second.
fn newest_first(
    entries: Vec<(Option<aws_sdk_s3::primitives::DateTime>, ObjectVersion)>,
    positions: &std::collections::HashMap<String, usize>,
) -> Vec<ObjectVersion> {
    let time = |t: &Option<aws_sdk_s3::primitives::DateTime>| t.map(|t| t.as_nanos());
    let mut by_document = entries.clone();
    let known = by_document
        .iter()
        .all(|(_, v)| positions.contains_key(&v.version));
    if known {
        by_document.sort_by_key(|(_, v)| positions[&v.version]);
        let agrees = by_document
            .windows(2)
            .all(|pair| time(&pair[0].0) >= time(&pair[1].0));
        if agrees && by_document.first().is_none_or(|(_, v)| v.current) {
            return by_document.into_iter().map(|(_, v)| v).collect();
        }
    }
    let mut by_time = entries;
    by_time.sort_by(|(ta, a), (tb, b)| b.current.cmp(&a.current).then(time(tb).cmp(&time(ta))));
    by_time.into_iter().map(|(_, v)| v).collect()
}

/// A version id S3 does not know, or one that is malformed (400) or a delete marker (405), is no such version.
fn version_error(error: StoreError) -> StoreError {
    match error {
        StoreError::Rejected {
            status: 400 | 405, ..
        } => StoreError::NotFound,
        other => other,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::primitives::DateTime;

    fn entry(
        id: &str,
        deleted: bool,
        current: bool,
        secs: i64,
    ) -> (Option<DateTime>, ObjectVersion) {
        let version = ObjectVersion {
            version: id.to_owned(),
            etag: None,
            size: 0,
            last_modified: None,
            deleted,
            current,
        };
        (Some(DateTime::from_secs(secs)), version)
    }

    fn order(
        versions: &[(&str, i64)],
        markers: &[(&str, i64)],
        current: &str,
        document: &[&str],
    ) -> Vec<String> {
        let versions = versions
            .iter()
            .map(|(id, t)| entry(id, false, *id == current, *t));
        let markers = markers
            .iter()
            .map(|(id, t)| entry(id, true, *id == current, *t));
        let positions = document
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), i))
            .collect();
        newest_first(versions.chain(markers).collect(), &positions)
            .into_iter()
            .map(|v| v.version)
            .collect()
    }

    fn lambda(extra: &[(&str, &str)], files: &[&str]) -> Option<LambdaEnvironment> {
        let mut env: std::collections::HashMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_LAMBDA_FUNCTION_NAME", "s3kv-reader"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
            ("_X_AMZN_TRACE_ID", "Root=1"),
            ("HOME", "/home/sbx_user1051"),
            ("S3KV_BUCKET", "b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert(k.to_string(), v.to_string());
            }
        }
        LambdaEnvironment::detect(
            |name| env.get(name).cloned(),
            env.keys().cloned().collect::<Vec<_>>(),
            |path| files.contains(&path),
        )
    }

    #[test]
    fn only_lambdas_environment_skips_the_default_chain() {
        let region = |r: &str| Some(LambdaEnvironment { region: r.into() });
        assert_eq!(lambda(&[], &[]), region("eu-west-1"));
        assert_eq!(
            lambda(&[("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")], &[]),
            region("eu-west-1")
        );
        assert_eq!(
            lambda(&[("AWS_SESSION_TOKEN", ""), ("HOME", "")], &[]),
            region("eu-west-1")
        );
        // The region chain's order: AWS_REGION, then AWS_DEFAULT_REGION.
        assert_eq!(lambda(&[("AWS_REGION", "")], &[]), region("eu-west-1"));
        assert_eq!(
            lambda(&[("AWS_DEFAULT_REGION", "us-east-2")], &[]),
            region("eu-west-1")
        );
        // Whatever the variables do not settle goes to aws-config's chain.
        for missing in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            assert_eq!(lambda(&[(missing, "")], &[]), None, "{missing}");
        }
        assert_eq!(
            lambda(&[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "")], &[]),
            None
        );
        for setting in [
            "AWS_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_USE_FIPS_ENDPOINT",
            "AWS_ENDPOINT_URL",
            "AWS_REQUEST_CHECKSUM_CALCULATION",
        ] {
            assert_eq!(lambda(&[(setting, "x")], &[]), None, "{setting}");
        }
        for file in [
            "/home/sbx_user1051/.aws/config",
            "/home/sbx_user1051/.aws/credentials",
        ] {
            assert_eq!(lambda(&[], &[file]), None, "{file}");
        }
    }

    fn config(endpoint: &str) -> Config {
        let env = std::collections::HashMap::from([
            ("S3KV_BUCKET", "bucket".to_owned()),
            ("AWS_ENDPOINT_URL_S3", endpoint.to_owned()),
            ("S3KV_S3_TIMEOUT_MS", "1234".to_owned()),
        ]);
        Config::from_lookup(|k| env.get(k).cloned()).unwrap()
    }

    fn credentials() -> aws_sdk_s3::config::Credentials {
        aws_sdk_s3::config::Credentials::new("AKIDTEST", "secret", None, None, "test")
    }

    /// Lambda's environment gets the client the default chain builds from the same settings.
    #[tokio::test]
    async fn the_direct_client_has_the_default_chains_settings() {
        let config = config("http://127.0.0.1:1");
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .credentials_provider(credentials());
        let chain = S3Store::from_loader(loader, &config).await;
        let environment = LambdaEnvironment {
            region: "eu-west-1".into(),
        };
        let direct = S3Store::from_environment(environment, credentials(), &config);
        let (chain, direct) = (chain.client().config(), direct.client().config());
        assert_eq!(direct.region(), chain.region());
        assert_eq!(direct.retry_config(), chain.retry_config());
        assert_eq!(direct.retry_config(), Some(&RetryConfig::disabled()));
        assert_eq!(direct.timeout_config(), chain.timeout_config());
        assert_eq!(
            direct.timeout_config().and_then(|t| t.connect_timeout()),
            Some(std::time::Duration::from_millis(1234))
        );
        assert_eq!(
            direct.http_client().is_some(),
            chain.http_client().is_some()
        );
        assert_eq!(
            direct.stalled_stream_protection().map(|s| s.is_enabled()),
            chain.stalled_stream_protection().map(|s| s.is_enabled())
        );
        // The loader writes the checksum defaults down; a client config leaves them unset, and the S3 crate
        // reads unset as the same default (WhenSupported) for every operation.
        use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
        assert_eq!(
            direct.request_checksum_calculation().copied(),
            chain
                .request_checksum_calculation()
                .copied()
                .filter(|c| *c != RequestChecksumCalculation::WhenSupported)
        );
        assert_eq!(
            direct.response_checksum_validation().copied(),
            chain
                .response_checksum_validation()
                .copied()
                .filter(|c| *c != ResponseChecksumValidation::WhenSupported)
        );
    }

    /// And it sends what the chain's does: to the endpoint, path-style, signed for the region.
    #[tokio::test]
    async fn the_direct_client_signs_for_the_region_and_uses_the_endpoint_path_style() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client hung up");
                head.extend_from_slice(&buf[..n]);
            }
            let body = "{}";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let environment = LambdaEnvironment {
            region: "eu-west-1".into(),
        };
        let store = S3Store::from_environment(environment, credentials(), &config(&endpoint));
        let object = store.get("items/k.json", None, 1024).await.unwrap();
        assert_eq!(&object.body[..], b"{}");
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /bucket/items/k.json"), "{head}");
        assert!(
            head.contains("Credential=AKIDTEST/") && head.contains("/eu-west-1/s3/aws4_request"),
            "{head}"
        );
    }

    #[test]
    fn the_order_of_versions_and_markers_is_read_from_the_answer() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult><Name>b</Name>
            <Version><Key>a.json</Key><VersionId>v3</VersionId><IsLatest>true</IsLatest></Version>
            <Version><Key>a.json</Key><VersionId>v2</VersionId></Version>
            <DeleteMarker><Key>a.json</Key><VersionId>m1</VersionId></DeleteMarker>
            <Version><Key>a.json</Key><VersionId>v1</VersionId></Version>
            <Version><Key>a&amp;b.json</Key><VersionId>x1</VersionId></Version>
            <VersionIdMarker>ignored</VersionIdMarker></ListVersionsResult>"#;
        let entries = version_entries(xml);
        let ids: Vec<&str> = entries.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(ids, ["v3", "v2", "m1", "v1", "x1"]);
        assert_eq!(entries[4].0, "a&b.json");
        let order = VersionOrder(std::sync::Arc::new(std::sync::Mutex::new(entries)));
        assert_eq!(order.positions("a.json")["m1"], 2);
        assert!(!order.positions("a.json").contains_key("x1"));
    }

    #[test]
    fn versions_and_markers_merge_back_into_one_history() {
        // S3's interleaved document order wins, even within one second.
        let s3 = ["v3", "v2", "m1", "v1"];
        assert_eq!(
            order(&[("v3", 1), ("v2", 1), ("v1", 1)], &[("m1", 1)], "v3", &s3),
            s3
        );
        // A server listing markers apart (all versions, then markers) contradicts its own times once a marker
        // is newer: then time decides.
        let apart = ["v2", "v1", "m1"];
        assert_eq!(
            order(&[("v2", 30), ("v1", 10)], &[("m1", 20)], "v2", &apart),
            ["v2", "m1", "v1"]
        );
        assert_eq!(
            order(&[("v1", 10)], &[("m1", 20)], "m1", &["v1", "m1"]),
            ["m1", "v1"]
        );
        // No document order at all (the interceptor saw nothing): time, the current entry first.
        assert_eq!(
            order(&[("v2", 5), ("v1", 5)], &[("m1", 5)], "m1", &[]),
            ["m1", "v2", "v1"]
        );
        assert_eq!(order(&[("v1", 1)], &[], "v1", &["v1"]), ["v1"]);
    }
}
