//! Push on 127.0.0.1: AppSync Events' WebSocket protocol (see [`s3kv::push`] for the protocol and the channels),
//! served on the API's own address at [`PATH`], so the client code that subscribes in AWS subscribes here.
//!
//! [`Hub`] is the engine's stand-in: it keeps each connection's subscriptions by channel, authorizes every
//! subscribe with the functions' own rules ([`s3kv::push::authorize`] over the gateway's key table), and fans a
//! published change out to every subscription on its channel. The outbox publishes each change through
//! [`s3kv::push::Notifier`] once the syncer has applied it, as the notifier Lambda does in AWS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use s3kv::access::Access;
use s3kv::push::authorizer::{Refused, EVENT_CONNECT};
use s3kv::push::{PublishError, Publisher, PushError, Token};

/// Where the WebSocket is served (AppSync's path on its realtime host).
pub const PATH: &str = "/event/realtime";
/// The subprotocol AppSync Events speaks; the other offered one carries the credentials.
const SUBPROTOCOL: &str = "aws-appsync-event-ws";
/// AppSync's keep-alive interval and the timeout it announces in `connection_ack`.
const KEEP_ALIVE: Duration = Duration::from_secs(60);
const CONNECTION_TIMEOUT_MS: u64 = 300_000;
/// Messages queued for one slow connection before it is dropped (it reconnects and catches up).
const QUEUE: usize = 1024;

/// Subscriptions by channel, and every open connection.
pub struct Hub {
    access: Access,
    /// x-api-key value → key id, as the gateway checks keys.
    keys: Vec<(String, String)>,
    state: Mutex<State>,
    next_connection: AtomicU64,
}

#[derive(Default)]
struct State {
    /// channel → (connection, subscription id)
    channels: HashMap<String, Vec<(u64, String)>>,
    connections: HashMap<u64, Connection>,
}

/// An open connection: where its messages go, and how to close it from outside.
struct Connection {
    tx: mpsc::Sender<Message>,
    close: Arc<Notify>,
}

impl Hub {
    pub fn new(access: Access, keys: Vec<(String, String)>) -> Arc<Self> {
        Arc::new(Self {
            access,
            keys,
            state: Mutex::new(State::default()),
            next_connection: AtomicU64::new(1),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes every connection, as a network failure would (tests use it to prove clients catch up).
    pub fn drop_connections(&self) {
        let mut state = self.state();
        for (_, connection) in state.connections.drain() {
            connection.close.notify_one();
        }
        state.channels.clear();
    }

    /// Open connections, for tests and the benchmark.
    pub fn connections(&self) -> usize {
        self.state().connections.len()
    }

    fn key_id(&self, token: &Token) -> Result<Option<&str>, PushError> {
        match &token.api_key {
            None => Ok(None),
            Some(value) => self
                .keys
                .iter()
                .find(|(v, _)| v == value)
                .map(|(_, id)| Some(id.as_str()))
                .ok_or(PushError::UnknownKey),
        }
    }

    /// The upgrade of an HTTP request to `PATH`, or `None` when it is not one (the gateway then answers it).
    pub fn upgrade(
        self: &Arc<Self>,
        request: &mut Request<Incoming>,
    ) -> Option<Response<Full<bytes::Bytes>>> {
        if request.uri().path() != PATH {
            return None;
        }
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let Some(key) = header("sec-websocket-key")
            .filter(|_| header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")))
        else {
            return Some(refuse(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade is expected here",
            ));
        };
        let accept = derive_accept_key(key.as_bytes());
        let offered: Vec<String> = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .collect();
        if !offered.iter().any(|p| p == SUBPROTOCOL) {
            return Some(refuse(
                StatusCode::BAD_REQUEST,
                "offer the aws-appsync-event-ws subprotocol",
            ));
        }
        let auth = offered
            .iter()
            .find_map(|p| p.strip_prefix("header-"))
            .map(str::to_owned);
        let upgrade = hyper::upgrade::on(request);
        let hub = self.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(socket_config()),
            )
            .await;
            hub.run(socket, auth).await;
        });
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("connection", HeaderValue::from_static("Upgrade"));
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert("sec-websocket-accept", accept);
        }
        Some(response)
    }

    /// One connection: its messages in, the hub's (and keep-alives) out, until either side ends it.
    async fn run(
        self: Arc<Self>,
        socket: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
        auth: Option<String>,
    ) {
        let (mut sink, mut stream) = socket.split();
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        // The connection is authorized by the push authorizer's own rule for EVENT_CONNECT: a key the HTTP API
        // would let read, or no key where public reads are on.
        let connected = connect_token(auth.as_deref()).and_then(|token| {
            let key_id = self.key_id(&token)?;
            s3kv::push::authorizer::decide(&self.access, EVENT_CONNECT, &token, key_id, None)
                .map(drop)
                .map_err(|refused| match refused {
                    Refused::Push(error) => error,
                    other => PushError::BadToken(other.to_string()),
                })
        });
        if let Err(error) = connected {
            let message = json!({ "type": "connection_error", "errors": [
                { "errorType": error.error_type(), "message": error.to_string() } ] });
            let _ = sink.send(Message::text(message.to_string())).await;
            let _ = sink.close().await;
            return;
        }
        let close = Arc::new(Notify::new());
        let connection = Connection {
            tx: tx.clone(),
            close: close.clone(),
        };
        self.state().connections.insert(id, connection);
        let closed = close.clone();
        let writer = tokio::spawn(async move {
            let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
            keep_alive.tick().await;
            loop {
                let message = tokio::select! {
                    message = rx.recv() => match message { Some(m) => m, None => break },
                    _ = keep_alive.tick() => Message::text(json!({ "type": "ka" }).to_string()),
                    _ = closed.notified() => break,
                };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            // Dropping the socket without a close frame, as a lost network would.
            drop(sink);
        });
        loop {
            let message = tokio::select! {
                message = stream.next() => match message { Some(Ok(m)) => m, _ => break },
                _ = close.notified() => break,
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => break,
                _ => continue,
            };

            let answer = self.answer(id, text.as_str());
            if tx.send(Message::text(answer.to_string())).await.is_err() {
                break;
            }
        }
        self.forget(id);
        close.notify_one();
        drop(tx);
        let _ = writer.await;
    }

    /// The answer to one client message.
    fn answer(&self, connection: u64, text: &str) -> Value {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return error("error", None, "BadRequestException", "not a JSON message");
        };
        let id = message["id"].as_str().map(str::to_owned);
        match message["type"].as_str() {
            Some("connection_init") => json!({ "type": "connection_ack", "connectionTimeoutMs": CONNECTION_TIMEOUT_MS }),
            Some("subscribe") => {
                let Some(id) = id.filter(|id| valid_id(id)) else {
                    return error("subscribe_error", None, "BadRequestException", "a subscription id is 1 to 128 of A-Z a-z 0-9 - _ +");
                };
                let channel = message["channel"].as_str().unwrap_or_default();
                let token = message["authorization"]["Authorization"].as_str().unwrap_or_default();
                let allowed = Token::parse(token).and_then(|token| {
                    let key_id = self.key_id(&token)?;
                    s3kv::push::authorize(&self.access, &token, key_id, channel)
                });
                match allowed {
                    Ok(_) => {
                        let mut state = self.state();
                        let taken = state.channels.values().flatten().any(|(c, s)| *c == connection && *s == id);
                        if taken {
                            drop(state);
                            return error("subscribe_error", Some(&id), "BadRequestException", "this connection already has a subscription with that id");
                        }
                        state.channels.entry(channel.to_owned()).or_default().push((connection, id.clone()));
                        json!({ "type": "subscribe_success", "id": id })
                    }
                    Err(e) => error("subscribe_error", Some(&id), e.error_type(), &e.to_string()),
                }
            }
            Some("unsubscribe") => {
                let id = id.unwrap_or_default();
                let mut state = self.state();
                let mut found = false;
                for subscribers in state.channels.values_mut() {
                    subscribers.retain(|(c, s)| {
                        let this = *c == connection && *s == id;
                        found |= this;
                        !this
                    });
                }
                if found {
                    json!({ "type": "unsubscribe_success", "id": id })
                } else {
                    error("unsubscribe_error", Some(&id), "UnknownOperationError", &format!("Unknown operation id {id}"))
                }
            }
            _ => error("error", id.as_deref(), "UnsupportedOperation", "s3kv-local takes connection_init, subscribe and unsubscribe (publishing is the notifier's)"),
        }
    }

    fn forget(&self, connection: u64) {
        let mut state = self.state();
        if let Some(open) = state.connections.remove(&connection) {
            open.close.notify_one();
        }
        for subscribers in state.channels.values_mut() {
            subscribers.retain(|(c, _)| *c != connection);
        }
    }
}

impl Publisher for Hub {
    async fn publish(&self, channel: &str, event: &str) -> Result<(), PublishError> {
        let mut slow = Vec::new();
        {
            let state = self.state();
            for (connection, id) in state.channels.get(channel).into_iter().flatten() {
                let Some(open) = state.connections.get(connection) else {
                    continue;
                };
                let message = json!({ "type": "data", "id": id, "event": event }).to_string();
                if open.tx.try_send(Message::text(message)).is_err() {
                    slow.push(*connection);
                }
            }
        }
        // A connection that cannot keep up is closed, never waited for: its client reconnects and catches up.
        for connection in slow {
            tracing::warn!(connection, "push connection too slow; closing it");
            self.forget(connection);
        }
        Ok(())
    }
}

/// Subscribers send a few small messages and mostly listen: tungstenite's default 128 KiB read buffer per
/// connection was most of the 136 KiB each of 10,000 subscribers cost (docs/src/benchmarks/push.md).
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

fn connect_token(auth: Option<&str>) -> Result<Token, PushError> {
    let bad = |why: &str| PushError::BadToken(why.to_owned());
    let encoded =
        auth.ok_or_else(|| bad("offer a header-<base64url JSON> subprotocol with Authorization"))?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| bad("the header- subprotocol is not base64url"))?;
    let header: Value =
        serde_json::from_slice(&json).map_err(|_| bad("the header- subprotocol is not JSON"))?;
    Token::parse(header["Authorization"].as_str().unwrap_or_default())
}

fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+".contains(&b))
}

fn error(kind: &str, id: Option<&str>, error_type: &str, message: &str) -> Value {
    let mut answer =
        json!({ "type": kind, "errors": [{ "errorType": error_type, "message": message }] });
    if let Some(id) = id {
        answer["id"] = json!(id);
    }
    answer
}

fn refuse(status: StatusCode, message: &str) -> Response<Full<bytes::Bytes>> {
    let body = json!({ "error": "bad_upgrade", "message": message }).to_string();
    let mut response = Response::new(Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    response
}
