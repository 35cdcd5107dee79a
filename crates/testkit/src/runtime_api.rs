//! A minimal Lambda Runtime API (2018-06-01), enough for lambda_runtime: it hands out queued events on
//! `/invocation/next` and records each answer, with when the event went out and when the answer came in. The
//! benchmarks time the functions' binaries behind it, and the tests run them as Lambda would.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ChildServer;
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

pub enum AnswerKind {
    Response,
    Error,
    InitError,
}

pub struct Answer {
    pub kind: AnswerKind,
    pub body: Bytes,
    pub at: Instant,
    /// When the event was handed out by `/next`.
    pub served: Option<Instant>,
}

pub struct ApiState {
    pub events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Vec<u8>)>>,
    pub answers: mpsc::UnboundedSender<Answer>,
    pub served: Mutex<HashMap<String, Instant>>,
    pub first_poll: Mutex<Option<Instant>>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedSender<(String, Vec<u8>)>,
    pub answers: mpsc::UnboundedReceiver<Answer>,
    pub state: Arc<ApiState>,
    pub server: tokio::task::JoinHandle<()>,
    pub next_id: u64,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn reply(status: u16, body: &'static str) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("response")
}

pub async fn runtime_api(
    state: Arc<ApiState>,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    const BASE: &str = "/2018-06-01/runtime";
    let path = request.uri().path().to_owned();
    let Some(route) = path.strip_prefix(BASE) else {
        return Ok(reply(404, "{}"));
    };
    if request.method() == Method::GET && route == "/invocation/next" {
        state
            .first_poll
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        let Some((id, event)) = state.events.lock().await.recv().await else {
            return Ok(reply(500, "{\"errorMessage\":\"no more events\"}"));
        };
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis()
            + 30_000;
        state
            .served
            .lock()
            .unwrap()
            .insert(id.clone(), Instant::now());
        return Ok(http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("Lambda-Runtime-Aws-Request-Id", &id)
            .header("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string())
            .header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:000000000000:function:s3kv-local-runtime",
            )
            .header(
                "Lambda-Runtime-Trace-Id",
                "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
            )
            .body(Full::new(Bytes::from(event)))
            .expect("response"));
    }
    if request.method() != Method::POST {
        return Ok(reply(404, "{}"));
    }
    let (kind, id) = if route == "/init/error" {
        (AnswerKind::InitError, None)
    } else if let Some(rest) = route.strip_prefix("/invocation/") {
        match rest.rsplit_once('/') {
            Some((id, "response")) => (AnswerKind::Response, Some(id.to_owned())),
            Some((id, "error")) => (AnswerKind::Error, Some(id.to_owned())),
            _ => return Ok(reply(404, "{}")),
        }
    } else {
        return Ok(reply(404, "{}"));
    };
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let at = Instant::now();
    let served = id.and_then(|id| state.served.lock().unwrap().remove(&id));
    let _ = state.answers.send(Answer {
        kind,
        body,
        at,
        served,
    });
    Ok(reply(202, "{\"status\":\"OK\"}"))
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let state = Arc::new(ApiState {
            events: tokio::sync::Mutex::new(events_rx),
            answers: answers_tx,
            served: Mutex::new(HashMap::new()),
            first_poll: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        runtime_api(state.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            events,
            answers,
            state,
            server,
            next_id: 0,
        }
    }

    pub fn queue(&mut self, event: Vec<u8>) {
        self.next_id += 1;
        let id = format!("event-{:08}", self.next_id);
        self.events.send((id, event)).expect("queue event");
    }

    /// The next answer to an event, from `function`'s process; its output explains a crash or a silence.
    pub async fn answer(&mut self, function: &mut ChildServer) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout(Duration::from_millis(100), self.answers.recv()).await {
                Ok(Some(answer)) => return answer,
                Ok(None) => panic!("runtime API closed"),
                Err(_) => {
                    if let Some(status) = function.exited() {
                        panic!(
                            "{} exited with {status} without answering: {}",
                            function.name(),
                            function.output()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} did not answer within 15 s: {}",
                        function.name(),
                        function.output()
                    );
                }
            }
        }
    }

    pub async fn invoke(&mut self, event: Vec<u8>, function: &mut ChildServer) -> Answer {
        self.queue(event);
        self.answer(function).await
    }
}
