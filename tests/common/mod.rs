//! Real servers for integration tests: a `valkey-server` and an S3-protocol server (moto) per test, each on a
//! free port on 127.0.0.1, killed when the test's handle drops. `scripts/test` installs both and exports their
//! paths; run it rather than `cargo test` on a fresh machine.
#![allow(dead_code)] // each test crate uses a different part of the harness

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
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

mod faulty;
#[allow(unused_imports)] // only the fault tests use it
pub use faulty::{Fault, FaultyS3};

pub const BUCKET: &str = "s3kv-test";

/// A port the OS just said was free. Ports handed out in this process are never reused, so parallel tests
/// cannot collide with each other.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TAKEN
            .lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(port)
        {
            return port;
        }
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {port}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn binary(env: &str, name: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            let found = std::env::var_os("PATH")
                .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
                .unwrap_or(false);
            assert!(
                found,
                "{name} not found: set {env} or put it on PATH (scripts/test installs it)"
            );
            name.to_owned()
        })
}

/// A child process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Valkey {
    server: Mutex<Option<Server>>,
    /// With a directory, the server keeps an fsync'd append-only file there and a restart keeps the data.
    data_dir: Option<std::path::PathBuf>,
    pub port: u16,
}

impl Valkey {
    pub fn start() -> Self {
        Self::start_on(free_port(), None)
    }

    /// A server that persists every acknowledged write (`appendfsync always`), so a kill and a restart is an
    /// outage, not a flush.
    pub fn start_persistent() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("s3kv-valkey-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("valkey data dir");
        Self::start_on(port, Some(dir))
    }

    fn start_on(port: u16, data_dir: Option<std::path::PathBuf>) -> Self {
        let valkey = Self {
            server: Mutex::new(None),
            data_dir,
            port,
        };
        valkey.restart();
        valkey
    }

    /// Starts (again) on the same port: empty, like a flushed or replaced cache node, unless persistent.
    pub fn restart(&self) {
        self.stop();
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let dir;
        match &self.data_dir {
            Some(path) => {
                dir = path.to_string_lossy().into_owned();
                args.extend([
                    "--dir",
                    &dir,
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                ]);
            }
            None => args.extend(["--appendonly", "no"]),
        }
        let mut child = Command::new(binary("S3KV_VALKEY_SERVER", "valkey-server"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn valkey-server");
        wait_for_port(self.port, &mut child, "valkey-server");
        *self.server.lock().unwrap() = Some(Server(child));
    }

    /// Kills the server (SIGKILL: no chance to save anything that was not already on disk).
    pub fn stop(&self) {
        self.server.lock().unwrap().take();
    }

    pub fn url(&self) -> String {
        format!("valkey://127.0.0.1:{}", self.port)
    }

    /// A plain client, for asserting on what the cache holds.
    pub async fn client(&self) -> Client {
        let client = Client::new(
            fred::types::config::Config::from_url(&self.url()).unwrap(),
            None,
            None,
            None,
        );
        client.init().await.expect("connect to valkey");
        client
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub struct S3 {
    server: Option<Server>,
    pub port: u16,
    pub client: aws_sdk_s3::Client,
}

impl S3 {
    pub async fn start() -> Self {
        let port = free_port();
        let mut child = Command::new(binary("S3KV_MOTO_SERVER", "moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        wait_for_port(port, &mut child, "moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client =
            s3kv::adapters::s3::endpoint_client(&endpoint, "test", "test", Duration::from_secs(5));
        client
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("create bucket");
        Self {
            server: Some(Server(child)),
            port,
            client,
        }
    }

    pub fn stop(&mut self) {
        self.server = None;
    }

    /// A manual upload, as `aws s3 cp` would do it: straight to the bucket, not through the writer.
    pub async fn upload(&self, object_key: &str, body: &[u8]) -> Etag {
        let out = self
            .client
            .put_object()
            .bucket(BUCKET)
            .key(object_key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .expect("upload");
        Etag::new(out.e_tag().unwrap())
    }

    pub async fn remove(&self, object_key: &str) {
        self.client
            .delete_object()
            .bucket(BUCKET)
            .key(object_key)
            .send()
            .await
            .expect("delete");
    }

    pub async fn body(&self, object_key: &str) -> Option<Vec<u8>> {
        let out = self
            .client
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
        Self::assemble(Valkey::start(), s3, client, overrides).await
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
        let cache = |timeout| ValkeyCache::new(&valkey_url, timeout).expect("valkey url");
        let (reader_cache, syncer_cache) = (
            cache(config.cache_timeout),
            cache(config.sync_cache_timeout),
        );
        reader_cache.connect(Duration::from_secs(5)).await;
        syncer_cache.connect(Duration::from_secs(5)).await;
        Self {
            writer: Writer::new(store(), &config),
            reader: Reader::new(store(), reader_cache, &config),
            syncer: Syncer::new(store(), syncer_cache, &config),
            valkey,
            s3,
            config,
            sequence: AtomicU64::new(1),
        }
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
            api::handle_read(&self.reader, &request, deadline(10)).await
        } else {
            api::handle_write(&self.writer, &request, deadline(10)).await
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
        .expect("valkey url");
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
    request.resource = Some("/items/{key+}".into());
    request.path = Some(format!("/items/{encoded_key}"));
    request.path_parameters = HashMap::from([("key".to_owned(), encoded_key.to_owned())]);
    request.body = body.map(str::to_owned);
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
