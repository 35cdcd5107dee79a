//! Push for `watch`: one subscription over AppSync Events' WebSocket protocol (see [`s3kv::push`] for the protocol,
//! the channels and the tokens), the changes it delivers, and getting it back after the connection is lost.

use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use s3kv::push::{Change, Token, Topic};
use s3kv::sequencer::Sequencer;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::output::{note, Output};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The subprotocol AppSync Events speaks; the other one offered carries the credentials.
const SUBPROTOCOL: &str = "aws-appsync-event-ws";
/// A watch has one subscription per connection: its id.
const SUBSCRIPTION: &str = "watch";
/// Connecting, `connection_init` and the subscribe together, before push counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What AppSync announces in `connection_ack` when a server says nothing: no message (not even a keep-alive,
/// sent every 60 s) for this long means the connection is gone.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// The first pause before reconnecting, doubled after each failure up to [`MOST`], each one jittered (a random
/// part of its second half), so many watchers cut off together do not come back together.
const FIRST: Duration = Duration::from_millis(1000);
const MOST: Duration = Duration::from_secs(5);

/// Where push is, and who connects.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    /// `wss://<id>.appsync-realtime-api.<region>.amazonaws.com/event/realtime`, or s3kv-local's `ws://…`.
    pub url: String,
    /// The `host` the credentials name: the Event API's HTTP host in AWS, the API's address locally.
    pub host: String,
    pub api_key: Option<String>,
}

/// The push URL for an endpoint on this machine: s3kv-local serves push on the API's own address.
pub(crate) fn local_url(endpoint: &str) -> Option<String> {
    let authority = endpoint.strip_prefix("http://")?.trim_end_matches('/');
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        .then(|| format!("ws://{authority}/event/realtime"))
}

/// The credentials' `host` for a push URL: AppSync's rule (the realtime host `…appsync-realtime-api…` is the
/// HTTP host `…appsync-api…`), else the URL's own host and port (s3kv-local, or a custom domain, serves both on
/// one).
pub(crate) fn auth_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return None;
    }
    Some(authority.replacen(".appsync-realtime-api.", ".appsync-api.", 1))
}

/// One topic followed on one connection.
pub(crate) struct Subscription {
    socket: Socket,
    /// Silence this long ends the connection (the `connection_ack`'s `connectionTimeoutMs`).
    silence: Duration,
}

impl Push {
    fn token(&self, topic: Option<&Topic>) -> String {
        Token {
            api_key: self.api_key.clone(),
            topic: topic.cloned(),
        }
        .encode()
    }

    /// Connects and subscribes to `topic`; why not, said so a person can act on it.
    pub(crate) async fn subscribe(&self, topic: &Topic) -> Result<Subscription, String> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.subscribe_now(topic))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{} did not answer within {}s",
                    self.url,
                    CONNECT_TIMEOUT.as_secs()
                ))
            })
    }

    async fn subscribe_now(&self, topic: &Topic) -> Result<Subscription, String> {
        // A browser cannot set headers on a handshake; AppSync takes them in a subprotocol, which keeps the key
        // out of URLs and logs.
        let header = json!({ "host": self.host, "Authorization": self.token(None) }).to_string();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("push URL {:?}: {e}", self.url))?;
        let protocols = format!("{SUBPROTOCOL}, header-{header}")
            .parse()
            .map_err(|_| "the API key cannot be sent in a WebSocket header".to_owned())?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols);
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        send(&mut socket, json!({ "type": "connection_init" })).await?;
        let ack = answer(&mut socket).await?;
        if ack["type"] != "connection_ack" {
            return Err(format!(
                "the push endpoint refused the connection: {}",
                errors(&ack)
            ));
        }
        let silence = ack["connectionTimeoutMs"]
            .as_u64()
            .map_or(CONNECTION_TIMEOUT, Duration::from_millis);
        let authorization = json!({ "host": self.host, "Authorization": self.token(Some(topic)) });
        let subscribe = json!({ "type": "subscribe", "id": SUBSCRIPTION, "channel": topic.channel(),
            "authorization": authorization });
        send(&mut socket, subscribe).await?;
        let subscribed = answer(&mut socket).await?;
        if subscribed["type"] != "subscribe_success" {
            return Err(format!(
                "the push endpoint refused the subscription: {}",
                errors(&subscribed)
            ));
        }
        Ok(Subscription { socket, silence })
    }

    /// Subscribes again after the connection was lost (`why`), pausing between attempts (see [`FIRST`]) and
    /// saying so on stderr, until it can.
    pub(crate) async fn resubscribe(&self, topic: &Topic, out: Output, why: &str) -> Subscription {
        let mut pause = FIRST;
        let mut why = why.to_owned();
        loop {
            let wait = pause / 2 + jitter(pause / 2);
            let secs = (wait.as_millis() as f64 / 100.0).round() / 10.0;
            note(
                out,
                &format!("s3kv: push: {why}; reconnecting in {secs}s"),
                json!({ "warning": why, "reconnectIn": secs }),
            );
            tokio::time::sleep(wait).await;
            match self.subscribe(topic).await {
                Ok(subscription) => return subscription,
                Err(e) => why = e,
            }
            pause = (pause * 2).min(MOST);
        }
    }
}

/// A random part of `range` (the clock's nanoseconds: no generator is needed for a pause).
fn jitter(range: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let millis = range.as_millis().max(1) as u64;
    Duration::from_millis(u64::from(nanos) % millis)
}

async fn send(socket: &mut Socket, message: Value) -> Result<(), String> {
    socket
        .send(Message::text(message.to_string()))
        .await
        .map_err(|e| format!("the push connection failed: {e}"))
}

/// The next message other than a keep-alive, during the handshake.
async fn answer(socket: &mut Socket) -> Result<Value, String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str())
                    .map_err(|_| format!("the push endpoint sent something not JSON: {text}"))?;
                if value["type"] != "ka" {
                    return Ok(value);
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err("the push endpoint closed the connection".into())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("the push connection failed: {e}")),
        }
    }
}

/// An error message's `errors`, as AppSync sends them (`[{"errorType","message"}]`).
fn errors(message: &Value) -> String {
    match message["errors"].as_array() {
        Some(errors) if !errors.is_empty() => errors
            .iter()
            .map(|e| {
                let kind = e["errorType"].as_str().unwrap_or("error");
                match e["message"].as_str() {
                    Some(text) => format!("{kind}: {text}"),
                    None => kind.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => message.to_string(),
    }
}

impl Subscription {
    /// The next change delivered; `Err` (why) once the connection is lost.
    pub(crate) async fn next(&mut self) -> Result<Change, String> {
        loop {
            let message = tokio::time::timeout(self.silence, self.socket.next())
                .await
                .map_err(|_| {
                    format!(
                        "no message from the push endpoint in {}s",
                        self.silence.as_secs()
                    )
                })?;
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => {
                    return Err("the push endpoint closed the connection".into())
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("the push connection failed: {e}")),
            };
            let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            match message["type"].as_str() {
                Some("data") if message["id"] == SUBSCRIPTION => {
                    // The event is a JSON string (AppSync's framing); an object is taken as well.
                    let change = match &message["event"] {
                        Value::String(event) => serde_json::from_str::<Change>(event).ok(),
                        event => serde_json::from_value::<Change>(event.clone()).ok(),
                    };
                    // Not a change s3kv publishes: nothing to follow in it.
                    if let Some(change) = change {
                        return Ok(change);
                    }
                }
                Some("connection_error" | "subscribe_error") => {
                    return Err(format!("the push endpoint said {}", errors(&message)))
                }
                _ => {}
            }
        }
    }

    /// A change already received, without waiting for one; `None` when there is none yet.
    pub(crate) async fn ready(&mut self) -> Option<Result<Change, String>> {
        // A stream's next() is cancel-safe: a message is either returned or still queued.
        tokio::time::timeout(Duration::ZERO, self.next()).await.ok()
    }
}

/// Whether `sequencer` is after `last` (none yet: anything is), in S3's sequencer order (right-padded, then
/// compared); one that does not parse is taken as new, as a re-read then says what is true.
pub(crate) fn newer(sequencer: &str, last: Option<&str>) -> bool {
    let Some(last) = last else { return true };
    match (Sequencer::parse(sequencer), Sequencer::parse(last)) {
        (Ok(new), Ok(old)) => new > old,
        _ => sequencer != last,
    }
}

/// The topic a `watch --prefix P` subscribes to: P, or when P does not end in `/`, the nearest prefix that does
/// (its changes are filtered to P).
pub(crate) fn prefix_topic(prefix: &str) -> Topic {
    let boundary = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
    Topic::prefix(boundary).unwrap_or(Topic::Prefix(String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints_get_their_push_url_and_others_none() {
        assert_eq!(
            local_url("http://127.0.0.1:3000").as_deref(),
            Some("ws://127.0.0.1:3000/event/realtime")
        );
        assert_eq!(
            local_url("http://localhost:8080/").as_deref(),
            Some("ws://localhost:8080/event/realtime")
        );
        assert_eq!(
            local_url("https://x.execute-api.eu-west-1.amazonaws.com/prod"),
            None
        );
        assert_eq!(local_url("http://10.0.0.1:3000"), None);
    }

    #[test]
    fn the_auth_host_follows_appsyncs_rule() {
        assert_eq!(
            auth_host("wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime")
                .as_deref(),
            Some("abc.appsync-api.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            auth_host("ws://127.0.0.1:3000/event/realtime").as_deref(),
            Some("127.0.0.1:3000")
        );
        assert_eq!(auth_host("https://x/event/realtime"), None);
    }

    #[test]
    fn sequencers_compare_right_padded_and_prefixes_follow_their_slash() {
        assert!(newer("0055AED6DCD90281E5", None));
        assert!(newer("0055AED6DCD90281E6", Some("0055AED6DCD90281E5")));
        assert!(!newer("0055AED6DCD90281E5", Some("0055AED6DCD90281E5")));
        // Right-padded: "…E5" is "…E500", before "…E501".
        assert!(newer("0055AED6DCD90281E501", Some("0055AED6DCD90281E5")));
        assert_eq!(prefix_topic("flags/be"), Topic::Prefix("flags/".into()));
        assert_eq!(prefix_topic("fl"), Topic::Prefix(String::new()));
        assert_eq!(prefix_topic("a/b/"), Topic::Prefix("a/b/".into()));
    }
}
