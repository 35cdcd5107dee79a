//! An S3 endpoint that fails on demand: a proxy on 127.0.0.1 in front of the real S3 server that counts every
//! request it receives and, when told to, answers `503 SlowDown` (what S3 says when it sheds load) instead of
//! forwarding. Counting at the wire is what lets a test see how many attempts a client really made.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forward everything.
    None = 0,
    /// Answer every request with 503.
    All = 1,
    /// Answer the 1st, 3rd, 5th… request with 503 and forward the others.
    EveryOther = 2,
}

#[derive(Default)]
struct State {
    fault: AtomicU8,
    seen: AtomicU64,
    failed: AtomicU64,
}

pub struct FaultyS3 {
    pub endpoint: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyS3 {
    /// Starts a proxy to the S3 server on `upstream_port`.
    pub async fn start(upstream_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, client) = (shared.clone(), client.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (state, client) = (state.clone(), client.clone());
                        async move {
                            Ok::<_, Infallible>(
                                handle(&state, &client, upstream_port, request).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint,
            state,
            task,
        }
    }

    pub fn set(&self, fault: Fault) {
        self.state.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// Requests received since the last [`FaultyS3::reset_counts`].
    pub fn seen(&self) -> u64 {
        self.state.seen.load(Ordering::SeqCst)
    }

    /// Requests answered with 503.
    pub fn failed(&self) -> u64 {
        self.state.failed.load(Ordering::SeqCst)
    }

    pub fn reset_counts(&self) {
        self.state.seen.store(0, Ordering::SeqCst);
        self.state.failed.store(0, Ordering::SeqCst);
    }

    /// A client for the proxy built the way the local stack and tests build theirs (SDK retries off).
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3kv::adapters::s3::endpoint_client(&self.endpoint, "test", "test", Duration::from_secs(5))
    }
}

impl Drop for FaultyS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Upstream = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn handle(
    state: &State,
    client: &Upstream,
    upstream_port: u16,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let n = state.seen.fetch_add(1, Ordering::SeqCst);
    let fail = match state.fault.load(Ordering::SeqCst) {
        1 => true,
        2 => n.is_multiple_of(2),
        _ => false,
    };
    let (mut parts, body) = request.into_parts();
    // Read the whole request either way, as a server does before it answers.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if fail {
        state.failed.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                  <Message>Please reduce your request rate.</Message></Error>",
            )))
            .unwrap();
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://127.0.0.1:{upstream_port}{path}")
        .parse()
        .unwrap();
    match client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::from_parts(parts, Full::new(body))
        }
        Err(error) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Full::new(Bytes::from(error.to_string())))
            .unwrap(),
    }
}
