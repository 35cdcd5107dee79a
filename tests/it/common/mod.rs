//! s3kv wired to real servers for the integration tests: a `valkey-server` and moto's S3 server per test
//! (started by [`testkit`], on reserved ports, ready when they answer), and the functions' handlers called
//! directly. `scripts/test` installs the servers and exports their paths; run it rather than `cargo test` on a
//! fresh machine.
#![allow(dead_code)] // the cluster test's binary uses only part of it

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::s3::S3EventRecord;
use aws_sdk_s3::primitives::ByteStream;
use fred::prelude::*;
use http::Method;
use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::config::Config;
use s3kv::percent;
use s3kv::ports::Etag;
use s3kv::read::Reader;
use s3kv::s3_event::{self, EventName, ObjectChange};
use s3kv::sequencer::Sequencer;
use s3kv::sync::{SyncError, SyncReport, Syncer};
use s3kv::write::Writer;
use s3kv::{api, key::ItemKey};
pub use testkit::Valkey;

mod browser;
mod faulty;
#[allow(unused_imports)] // the browser tests' harness; openapi.rs runs its child with it too
pub use browser::{
    child, finish, npm, npm_ci, tools, BrowserScript, PageAnswer, PageOrigin, PageServer,
};
#[allow(unused_imports)] // only the fault tests use it
pub use faulty::{Fault, FaultyS3};
#[allow(unused_imports)] // the cluster test's binary does not use it
pub use s3kv_local::testing::{Reply, TestStack};

pub const BUCKET: &str = "s3kv-test";

/// A plain fred client on a test's Valkey, for asserting on what the cache holds.
pub trait ValkeyClient {
    async fn client(&self) -> Client;
}

impl ValkeyClient for Valkey {
    async fn client(&self) -> Client {
        let client = Client::new(
            fred::types::config::Config::from_url(&self.url()).unwrap(),
            None,
            None,
            None,
        );
        client
            .init()
            .await
            .unwrap_or_else(|e| panic!("connect to valkey: {e}\n{}", self.output()));
        client
    }
}

/// moto's S3 server with a bucket, and clients for it.
pub struct S3 {
    pub server: testkit::Moto,
    /// The functions' client, with their 5 s attempt timeout.
    pub client: aws_sdk_s3::Client,
    /// The test's own hand on the bucket (manual uploads, checks), with time for a 50 MB upload to moto on a
    /// loaded 2-core machine: at 5 s one timed out while a build ran beside the tests.
    direct: aws_sdk_s3::Client,
}

impl S3 {
    pub async fn start() -> Self {
        let server = tokio::task::spawn_blocking(testkit::Moto::start)
            .await
            .expect("moto start task");
        let client = |timeout| {
            s3kv::adapters::s3::endpoint_client(&server.endpoint(), "test", "test", timeout)
        };
        let (direct, client) = (
            client(Duration::from_secs(120)),
            client(Duration::from_secs(5)),
        );
        if let Err(e) = direct.create_bucket().bucket(BUCKET).send().await {
            panic!("create bucket: {e:?}\nmoto's output:\n{}", server.output());
        }
        // Versioned, as the template's bucket is: history and restore need it, and every other path must work
        // on a versioned bucket (deletes leave markers).
        let versioning = aws_sdk_s3::types::VersioningConfiguration::builder()
            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
            .build();
        if let Err(e) = direct
            .put_bucket_versioning()
            .bucket(BUCKET)
            .versioning_configuration(versioning)
            .send()
            .await
        {
            panic!(
                "enable versioning: {e:?}\nmoto's output:\n{}",
                server.output()
            );
        }
        Self {
            server,
            client,
            direct,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// A manual upload, as `aws s3 cp` would do it: straight to the bucket, not through the writer.
    pub async fn upload(&self, object_key: &str, body: &[u8]) -> Etag {
        let out = self
            .direct
            .put_object()
            .bucket(BUCKET)
            .key(object_key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload: {e:?}\nmoto's output:\n{}", self.server.output()));
        Etag::new(out.e_tag().unwrap())
    }

    pub async fn remove(&self, object_key: &str) {
        if let Err(e) = self
            .direct
            .delete_object()
            .bucket(BUCKET)
            .key(object_key)
            .send()
            .await
        {
            panic!("delete: {e:?}\nmoto's output:\n{}", self.server.output());
        }
    }

    pub async fn body(&self, object_key: &str) -> Option<Vec<u8>> {
        let out = self
            .direct
            .get_object()
            .bucket(BUCKET)
            .key(object_key)
            .send()
            .await
            .ok()?;
        Some(out.body.collect().await.unwrap().into_bytes().to_vec())
    }
}

/// Everything s3kv runs, wired as in AWS, against real servers: handlers are called directly, and S3
/// notifications are built from what each write returned, with increasing sequencers.
pub struct Stack {
    pub valkey: Valkey,
    pub s3: S3,
    pub config: Config,
    pub writer: Writer<S3Store>,
    pub reader: Reader<S3Store, ValkeyCache>,
    pub syncer: Syncer<S3Store, ValkeyCache>,
    /// What API keys may do, from `config` (unrestricted unless the test sets `S3KV_API_KEYS`).
    pub access: s3kv::access::Access,
    sequence: AtomicU64,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// `overrides` are extra environment variables for the functions' configuration.
    pub async fn start_with(overrides: &[(&str, &str)]) -> Self {
        let s3 = S3::start().await;
        let client = s3.client.clone();
        let valkey = tokio::task::spawn_blocking(Valkey::start)
            .await
            .expect("valkey start task");
        Self::assemble(valkey, s3, client, overrides).await
    }

    /// The functions use `store_client` for S3 (a client through a [`FaultyS3`] proxy, say); the test's own
    /// helpers keep talking to `s3` directly.
    pub async fn assemble(
        valkey: Valkey,
        s3: S3,
        store_client: aws_sdk_s3::Client,
        overrides: &[(&str, &str)],
    ) -> Self {
        let mut env: HashMap<String, String> = HashMap::from([
            ("S3KV_BUCKET".into(), BUCKET.into()),
            ("S3KV_PREFIX".into(), "items/".into()),
            ("VALKEY_URL".into(), valkey.url()),
            // Generous for a loaded CI machine; the reader-bypass tests stop Valkey rather than slow it.
            ("S3KV_CACHE_TIMEOUT_MS".into(), "1000".into()),
            // EMF lines would flood the test output; tests/metrics assertions use the pure functions.
            ("S3KV_METRICS".into(), "off".into()),
        ]);
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test config");
        let store = || S3Store::new(store_client.clone(), BUCKET);
        let valkey_url = config.require_valkey_url().unwrap().to_owned();
        let cache = |timeout| {
            ValkeyCache::new(&valkey_url, timeout)
                .expect("valkey url")
                .with_feed(&config)
        };
        let (reader_cache, syncer_cache) = (
            cache(config.cache_timeout),
            cache(config.sync_cache_timeout),
        );
        reader_cache.connect(Duration::from_secs(5)).await;
        syncer_cache.connect(Duration::from_secs(5)).await;
        Self {
            access: s3kv::access::Access::from_config(&config),
            writer: Writer::new(store(), &config),
            reader: Reader::new(store(), reader_cache, &config),
            syncer: Syncer::new(store(), syncer_cache, &config),
            valkey,
            s3,
            config,
            sequence: AtomicU64::new(1),
        }
    }

    /// The request as API Gateway would deliver it: to the function its route names, with the stack's grants.
    pub async fn route(&self, request: &ApiGatewayProxyRequest) -> Reply {
        let resource = request.resource.as_deref().unwrap_or(s3kv::routes::ITEM);
        let route = s3kv::routes::find(resource, &request.http_method).expect("a route");
        let deadline = deadline(10);
        let response: Response = match route.function {
            s3kv::routes::Function::Reader => {
                api::handle_read(&self.reader, &self.access, request, deadline).await
            }
            s3kv::routes::Function::Writer => {
                api::handle_write(&self.writer, &self.access, request, deadline).await
            }
        }
        .into();
        Reply {
            status: response.status as u16,
            headers: response.headers,
            body: response.body,
        }
    }

    /// The item's current bytes in the bucket, as text.
    pub async fn current(&self, key: &str) -> Option<String> {
        let body = self.s3.body(&self.object_key(key)).await?;
        Some(String::from_utf8(body).unwrap())
    }

    pub fn object_key(&self, key: &str) -> String {
        self.config
            .key_map()
            .object_key(&ItemKey::parse(key).unwrap())
    }

    pub fn cache_key(&self, key: &str) -> String {
        self.config
            .key_map()
            .cache_key(&ItemKey::parse(key).unwrap())
    }

    pub fn next_sequencer(&self) -> Sequencer {
        Sequencer::from_counter(self.sequence.fetch_add(1, Ordering::SeqCst) * 1000)
    }

    pub async fn call(&self, method: Method, key: &str, body: Option<&str>) -> Response {
        let request = request(method.clone(), &percent::encode_path(key), body);
        let response = if method == Method::GET {
            api::handle_read(&self.reader, &self.access, &request, deadline(10)).await
        } else {
            api::handle_write(&self.writer, &self.access, &request, deadline(10)).await
        };
        Response::from(response)
    }

    pub async fn put(&self, key: &str, body: &str) -> Response {
        self.call(Method::PUT, key, Some(body)).await
    }

    pub async fn get(&self, key: &str) -> Response {
        self.call(Method::GET, key, None).await
    }

    pub async fn delete(&self, key: &str) -> Response {
        self.call(Method::DELETE, key, None).await
    }

    /// The notification S3 sends for a create of `object_key` with `etag`, with the next sequencer.
    pub fn created(&self, object_key: &str, etag: &Etag) -> S3EventRecord {
        self.record(EventName::Put, object_key, Some(etag))
    }

    pub fn removed(&self, object_key: &str) -> S3EventRecord {
        self.record(EventName::Delete, object_key, None)
    }

    pub fn record(&self, name: EventName, object_key: &str, etag: Option<&Etag>) -> S3EventRecord {
        let sequencer = self.next_sequencer();
        s3_event::record(&ObjectChange {
            name,
            bucket: BUCKET,
            object_key,
            etag,
            size: 0,
            version_id: None,
            sequencer: &sequencer,
        })
    }

    pub async fn sync(&self, records: Vec<S3EventRecord>) -> Result<SyncReport, SyncError> {
        self.sync_within(records, Duration::from_secs(10)).await
    }

    pub async fn sync_within(
        &self,
        records: Vec<S3EventRecord>,
        budget: Duration,
    ) -> Result<SyncReport, SyncError> {
        s3_event::handle(
            &self.syncer,
            s3_event::event(records),
            Instant::now() + budget,
        )
        .await
    }

    /// Runs a reconcile, as the scheduled function does.
    pub async fn reconcile(
        &self,
    ) -> Result<s3kv::reconcile::ReconcileReport, s3kv::reconcile::ReconcileError> {
        let cache = ValkeyCache::new(
            self.config.require_valkey_url().unwrap(),
            Duration::from_secs(2),
        )
        .expect("valkey url")
        .with_feed(&self.config);
        cache.connect(Duration::from_secs(5)).await;
        let store = S3Store::new(self.s3.client.clone(), BUCKET);
        s3kv::reconcile::Reconciler::new(store, cache, &self.config)
            .run(deadline(60))
            .await
    }

    /// Removes every cache entry, like a flushed or replaced cache.
    pub async fn flush_cache(&self) {
        let client = self.valkey.client().await;
        let _: () = client.flushall(false).await.unwrap();
    }

    /// The raw cache entry's fields that are set (`s` sequencer, `e` etag, `d` tombstone reason, `b` body), for
    /// asserting on tombstones and sequencers; empty when there is no entry.
    pub async fn cache_entry(&self, key: &str) -> HashMap<String, String> {
        let client = self.valkey.client().await;
        let raw: Option<bytes::Bytes> = client.get(self.cache_key(key)).await.unwrap();
        let Some(raw) = raw else {
            return HashMap::new();
        };
        let entry = s3kv::adapters::valkey::Entry::decode(&raw).expect("an s3kv cache entry");
        [
            ("s", entry.sequencer),
            ("e", entry.etag),
            ("d", entry.tombstone),
            ("b", String::from_utf8_lossy(&entry.body).into_owned()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

pub fn deadline(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

/// An API Gateway REST proxy request for `/items/{key+}`, with the key percent-encoded as API Gateway passes it.
pub fn request(method: Method, encoded_key: &str, body: Option<&str>) -> ApiGatewayProxyRequest {
    let mut request = ApiGatewayProxyRequest::default();
    request.http_method = method;
    request.resource = Some(s3kv::routes::ITEM.into());
    request.path = Some(format!("/items/{encoded_key}"));
    request.path_parameters = HashMap::from([("key".to_owned(), encoded_key.to_owned())]);
    request.body = body.map(str::to_owned);
    request
}

/// The event API Gateway would deliver for `path` (with its query string, the key percent-encoded), routed as
/// s3kv-local's gateway routes it, from the caller with API key id `key_id`.
pub fn event(
    key_id: Option<&str>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> ApiGatewayProxyRequest {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (resource, encoded_key) = s3kv::routes::match_path(path).expect("a route");
    let mut request = ApiGatewayProxyRequest::default();
    request.http_method = method;
    request.resource = Some(resource.to_owned());
    request.path = Some(path.to_owned());
    if let Some(encoded) = encoded_key {
        request.path_parameters = HashMap::from([("key".to_owned(), encoded.to_owned())]);
    }
    let query: HashMap<String, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                percent::decode(v, percent::Encoding::Path).unwrap_or_else(|_| v.to_owned()),
            )
        })
        .collect();
    request.query_string_parameters = query.into();
    for (name, value) in headers {
        request.headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    request.body = body.map(str::to_owned);
    request.request_context.identity.api_key_id = key_id.map(str::to_owned);
    request
}

/// `GET /changes`, after `after` (from now when `None`), without waiting.
pub fn changes_request(after: Option<&str>) -> ApiGatewayProxyRequest {
    let mut request = ApiGatewayProxyRequest::default();
    request.http_method = Method::GET;
    request.resource = Some(s3kv::routes::CHANGES.into());
    request.path = Some("/changes".into());
    let query: HashMap<String, Vec<String>> = after
        .map(|a| HashMap::from([("after".to_owned(), vec![a.to_owned()])]))
        .unwrap_or_default();
    request.query_string_parameters = query.into();
    request
}

/// A response in the terms a client checks.
#[derive(Debug)]
pub struct Response {
    pub status: i64,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

impl From<ApiGatewayProxyResponse> for Response {
    fn from(r: ApiGatewayProxyResponse) -> Self {
        let body = match r.body {
            Some(Body::Text(t)) => t,
            Some(Body::Binary(b)) => String::from_utf8(b).expect("utf-8 body"),
            _ => String::new(),
        };
        Self {
            status: r.status_code,
            headers: r.headers,
            body,
        }
    }
}
