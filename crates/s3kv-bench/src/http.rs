//! The benchmarks' HTTP client for s3kv-local's API: one request and its answer in the terms the sections check
//! (status, `X-Cache`, `ETag`, body). Shared by the propagation and watch sections.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

pub(crate) type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) cache: Option<String>,
    /// The `ETag` header, quoted as sent.
    pub(crate) etag: Option<String>,
    /// `X-S3kv-Expires-At`, on an item that expires.
    pub(crate) expires_at: Option<String>,
    pub(crate) body: Bytes,
}

/// A client for s3kv-local's API, without Nagle's algorithm (as any HTTP client that cares about latency).
pub(crate) fn http_client() -> HttpClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
}

pub(crate) async fn call(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> Reply {
    request(client, method, url, body, &[]).await
}

/// [`call`] with extra request headers.
pub(crate) async fn request(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header("x-api-key", "bench-key-0123456789ab");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("HTTP request");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (cache, etag, expires_at) = (
        header("x-cache"),
        header("etag"),
        header("x-s3kv-expires-at"),
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        cache,
        etag,
        expires_at,
        body,
    }
}

/// Polls GET until the cache answers `want` (`X-Cache: HIT`): a read fills the cache on a miss, the syncer's
/// update replaces it. Fails after 10 s.
pub(crate) async fn until_cached(client: &HttpClient, url: &str, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = call(client, "GET", url, None).await;
        if reply.status == 200 && reply.body == want && reply.cache.as_deref() == Some("HIT") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} was not a cache hit of its value within 10 s (last: {} {:?})",
            reply.status,
            reply.cache
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls GET until it answers `want`; returns whether the answer came from the cache.
pub(crate) async fn until_visible(client: &HttpClient, url: &str, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = call(client, "GET", url, None).await;
        if reply.status == 200 && reply.body == want.as_bytes() {
            return reply.cache.as_deref() == Some("HIT");
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not show the new value within 10 s (last: {} {:?})",
            reply.status,
            reply.cache
        );
    }
}
