//! The one in-process local stack every test suite starts (tests/it, the OpenAPI test, the CLI tests): each test
//! gets its own valkey-server, temp directory and ports, so tests run in parallel, and they all talk to it, wait
//! for its notifications and upload around its API the same way.
//!
//! Behind the `testing` feature, which only dev-dependencies turn on: the `s3kv-local` binary links no HTTP
//! client it has no use for.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use s3kv::config::Config;
use s3kv::key::{ItemKey, KeyMap};
use testkit::Valkey;

use crate::{LocalStack, Options, Tuning};

/// Long enough for a loaded CI machine to sync a burst; a stack that stays behind longer has lost a notification.
const SETTLE: Duration = Duration::from_secs(30);

/// An HTTP answer in the terms a client checks.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A [`LocalStack`] with what it runs on. The fields drop in order: the stack, then the valkey-server it uses,
/// then the directory it wrote to.
pub struct TestStack {
    pub stack: LocalStack,
    _valkey: Valkey,
    /// The test's own directory (its working directory for child processes, files it writes); the stack's data
    /// directory is `data` inside it.
    pub dir: PathBuf,
    s3: aws_sdk_s3::Client,
    keys: KeyMap,
    http: Client<HttpConnector, Full<Bytes>>,
    /// What it was started with, for [`TestStack::restart`].
    options: Options,
    tuning: Tuning,
    _cleanup: RemoveDir,
}

impl TestStack {
    /// `configure` sets what the test needs on [`Options::loopback`] (keys, public prefix, ...).
    pub async fn start(name: &str, configure: impl FnOnce(&mut Options)) -> Self {
        Self::start_tuned(name, configure, Tuning::default()).await
    }

    pub async fn start_tuned(
        name: &str,
        configure: impl FnOnce(&mut Options),
        tuning: Tuning,
    ) -> Self {
        let dir = testkit::temp_dir(&format!("test-{name}"));
        let valkey = tokio::task::spawn_blocking(Valkey::start)
            .await
            .expect("valkey-server starts");
        let mut options = Options {
            valkey_url: Some(valkey.url()),
            ..Options::loopback(dir.join("data"))
        };
        configure(&mut options);
        let cleanup = RemoveDir(dir.clone());
        Self::launch(dir, valkey, cleanup, options, tuning).await
    }

    /// Stops the stack without draining it, as a crash would, and starts another on the same data directory and
    /// valkey-server: for what must survive a restart. `while_down` runs between the two, on the options the next
    /// one starts with.
    pub async fn restart(self, while_down: impl FnOnce(&mut Options)) -> Self {
        let Self {
            stack,
            _valkey: valkey,
            dir,
            mut options,
            tuning,
            _cleanup: cleanup,
            ..
        } = self;
        drop(stack);
        while_down(&mut options);
        Self::launch(dir, valkey, cleanup, options, tuning).await
    }

    async fn launch(
        dir: PathBuf,
        valkey: Valkey,
        cleanup: RemoveDir,
        options: Options,
        tuning: Tuning,
    ) -> Self {
        let config = Config::from_lookup(|k| match k {
            "S3KV_BUCKET" => Some(options.bucket.clone()),
            "S3KV_PREFIX" => Some(options.prefix.clone()),
            _ => None,
        })
        .expect("the options make a configuration");
        let stack = LocalStack::start_tuned(options.clone(), tuning.clone())
            .await
            .expect("local stack starts");
        Self {
            s3: crate::s3_client(stack.s3_addr, &config),
            keys: config.key_map(),
            stack,
            _valkey: valkey,
            dir,
            http: Client::builder(TokioExecutor::new()).build_http(),
            options,
            tuning,
            _cleanup: cleanup,
        }
    }

    /// The API's base URL, as a client is given it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.stack.api_addr)
    }

    /// A client of the stack's S3 endpoint, signed with the credentials it accepts.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    pub fn object_key(&self, key: &str) -> String {
        self.keys.object_key(&ItemKey::parse(key).unwrap())
    }

    /// A request to the API; `path` carries its query string, the key percent-encoded.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        api_key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let uri = format!("{}{path}", self.endpoint());
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(value) = api_key {
            request = request.header("x-api-key", value);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
        let response = self
            .http
            .request(request.body(body).unwrap())
            .await
            .expect("HTTP");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    /// A manual upload of item `key`, straight to the bucket.
    pub async fn upload(&self, key: &str, body: &str) {
        self.upload_object(&self.object_key(key), body.as_bytes())
            .await;
    }

    /// PutObject of any object key, around the API and its key rules.
    pub async fn upload_object(&self, object_key: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket(&self.stack.bucket)
            .key(object_key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject {object_key}: {e:?}"));
    }

    /// The item's current bytes in the bucket.
    pub async fn current(&self, key: &str) -> Option<String> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.stack.bucket)
            .key(self.object_key(key))
            .send()
            .await
            .ok()?;
        Some(String::from_utf8(out.body.collect().await.unwrap().to_vec()).unwrap())
    }

    /// Waits until every notification so far has been synced, as a client would wait out propagation.
    pub async fn settle(&self) {
        assert!(
            self.stack.backlog.wait_idle(SETTLE).await,
            "notifications not synced within {SETTLE:?}"
        );
    }
}

/// Removes a passing test's directory; a failing test's stays for its post-mortem.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
