//! s3kv-local in-process for the suites that drive the same scenario through the handlers and through the local
//! stack (access, history): its own valkey-server and data directory, an HTTP client for its API, an S3 client
//! for its bucket, and the notifications it delivers waited out on demand.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use s3kv::config::Config;
use s3kv::key::{ItemKey, KeyMap};

use super::Valkey;

/// An HTTP answer in the terms a client checks.
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

pub struct LocalApi {
    pub stack: s3kv_local::LocalStack,
    /// Stopped after the stack that uses it.
    _valkey: Valkey,
    s3: aws_sdk_s3::Client,
    keys: KeyMap,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    _dir: PathBuf,
}

impl LocalApi {
    /// Bucket `s3kv`, no prefix; `keys` sets the API keys and the public prefix.
    pub async fn start(name: &str, keys: impl FnOnce(&mut s3kv_local::Options)) -> Self {
        Self::start_tuned(name, keys, s3kv_local::Tuning::default()).await
    }

    pub async fn start_tuned(
        name: &str,
        keys: impl FnOnce(&mut s3kv_local::Options),
        tuning: s3kv_local::Tuning,
    ) -> Self {
        let dir = testkit::temp_dir(&format!("test-{name}"));
        let valkey = tokio::task::spawn_blocking(Valkey::start).await.unwrap();
        let mut options = s3kv_local::Options {
            valkey_url: Some(valkey.url()),
            ..s3kv_local::Options::loopback(dir.join("data"))
        };
        keys(&mut options);
        let stack = s3kv_local::LocalStack::start_tuned(options, tuning)
            .await
            .expect("local stack starts");
        let config =
            Config::from_lookup(|k| (k == "S3KV_BUCKET").then(|| "s3kv".to_owned())).unwrap();
        Self {
            s3: s3kv_local::s3_client(stack.s3_addr, &config),
            keys: config.key_map(),
            stack,
            _valkey: valkey,
            http: Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
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
        let uri = format!("http://{}{path}", self.stack.api_addr);
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

    /// A manual upload, straight to the bucket.
    pub async fn upload(&self, key: &str, body: &str) {
        self.s3
            .put_object()
            .bucket("s3kv")
            .key(self.object_key(key))
            .body(aws_sdk_s3::primitives::ByteStream::from(
                body.as_bytes().to_vec(),
            ))
            .send()
            .await
            .expect("upload");
    }

    /// The item's current bytes in the bucket.
    pub async fn current(&self, key: &str) -> Option<String> {
        let out = self
            .s3
            .get_object()
            .bucket("s3kv")
            .key(self.object_key(key))
            .send()
            .await
            .ok()?;
        Some(String::from_utf8(out.body.collect().await.unwrap().to_vec()).unwrap())
    }

    /// Waits until every notification so far has been synced.
    pub async fn settle(&self) {
        assert!(
            self.stack.backlog.wait_idle(Duration::from_secs(20)).await,
            "notifications not synced within 20 s"
        );
    }
}
