//! Push: each change to an item reaches every subscriber through a managed WebSocket engine, AWS AppSync Events,
//! so no Lambda waits while a browser listens (a `?wait=` long-poll holds one for up to 25 s). s3kv-local speaks
//! the same protocol on 127.0.0.1, so one client runs against both.
//!
//! # Channels
//!
//! AppSync channels are 1–5 segments of at most 50 characters from `[A-Za-z0-9-]`; item keys are up to 512 bytes
//! of any UTF-8. So a channel names a *topic* by a hash: `/s3kv/k/<h>` for one item key, `/s3kv/p/<h>` for a key
//! prefix that is empty or ends in `/`, where `<h>` is the lowercase hex of the first 16 bytes of SHA-256 over the
//! key or prefix (UTF-8). A change to `flags/beta/x` is published on its key's channel and on the channels of `""`,
//! `flags/` and `flags/beta/`. 128 bits keep one topic's changes from landing on another's channel: a subscriber
//! is authorized for the topic it names, never for a hash.
//!
//! # Protocol (AppSync Events' WebSocket protocol; what s3kv-local implements)
//!
//! * URL: `wss://<id>.appsync-realtime-api.<region>.amazonaws.com/event/realtime` (local:
//!   `ws://127.0.0.1:<port>/event/realtime`). Subprotocols `aws-appsync-event-ws` and `header-<b64url(JSON)>`,
//!   the JSON `{"host": "<the HTTP endpoint's host>", "Authorization": "<token>"}`: a browser cannot set headers
//!   on a WebSocket handshake, and a subprotocol keeps the key out of URLs and access logs.
//! * `{"type":"connection_init"}` → `{"type":"connection_ack","connectionTimeoutMs":300000}`; then
//!   `{"type":"ka"}` every 60 s.
//! * `{"type":"subscribe","id":"<1–128 of [A-Za-z0-9-_+]>","channel":"/s3kv/k/<h>","authorization":{"host":…,
//!   "Authorization":"<token>"}}` → `{"type":"subscribe_success","id"}` or `{"type":"subscribe_error","id",
//!   "errors":[{"errorType":"UnauthorizedException","message"}]}`.
//! * `{"type":"data","id":"<subscription id>","event":"<a change, as a JSON string>"}`; a change is
//!   `{"key","etag"|null,"deleted","sequencer","size","body"?}`: `body` is the document's exact text, present
//!   when it is at most [`INLINE_MAX`] bytes (otherwise re-read it, with `?consistent=true`, and check the ETag).
//!   Delivery is at least once and unordered: keep, per key, the change with the greatest sequencer
//!   ([`crate::sequencer`] order: right-pad the shorter with `0`, compare bytes).
//! * `{"type":"unsubscribe","id"}` → `{"type":"unsubscribe_success","id"}`.
//!
//! A token is `s3kv1.<b64url(JSON)>`: `{"k": "<API key>" | null}` to connect, and to subscribe
//! `{"k": …, "key": "<item key>"}` or `{"k": …, "prefix": "<prefix>"}`. The topic rides in the token because the
//! engine's authorizer sees the channel (a hash) and the token, nothing else: it checks that the token's topic
//! hashes to the channel, and that the key may read the topic (a read key any, a prefix-limited key within its
//! prefixes, no key only within the public prefix) — [`authorize`], the same rules as the HTTP API.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::access::{Access, Denied, Permission};
use crate::key::ItemKey;

pub mod authorizer;
pub mod eventbridge;

/// The channel namespace: the first segment of every s3kv channel.
pub const NAMESPACE: &str = "s3kv";
/// Largest document a change carries inline (AppSync events are at most 240 KB).
pub const INLINE_MAX: usize = 32 * 1024;
/// How a token starts; a later format gets another.
const TOKEN_PREFIX: &str = "s3kv1.";

/// What a subscription follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    Key(ItemKey),
    /// Empty (every item) or ending in `/`.
    Prefix(String),
}

impl Topic {
    pub fn prefix(prefix: &str) -> Result<Self, PushError> {
        if !(prefix.is_empty() || prefix.ends_with('/')) {
            return Err(PushError::BadTopic(format!(
                "a prefix to follow is empty or ends in '/' (got {prefix:?}); follow {:?} and filter, or follow keys",
                boundary(prefix)
            )));
        }
        Ok(Topic::Prefix(prefix.to_owned()))
    }

    /// The topic's channel.
    pub fn channel(&self) -> String {
        match self {
            Topic::Key(key) => channel("k", key.as_str()),
            Topic::Prefix(prefix) => channel("p", prefix),
        }
    }

    /// The key or prefix, as the access rules compare it.
    fn name(&self) -> &str {
        match self {
            Topic::Key(key) => key.as_str(),
            Topic::Prefix(prefix) => prefix,
        }
    }
}

/// The longest prefix of `prefix` that ends in `/` (or the empty prefix).
fn boundary(prefix: &str) -> &str {
    prefix.rfind('/').map_or("", |i| &prefix[..=i])
}

fn channel(kind: &str, name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("/{NAMESPACE}/{kind}/{hex}")
}

/// Every channel a change to `key` is published on: its own, then each prefix's from the empty one down.
pub fn channels(key: &ItemKey) -> Vec<String> {
    let name = key.as_str();
    let mut out = vec![Topic::Key(key.clone()).channel(), channel("p", "")];
    out.extend(
        name.match_indices('/')
            .map(|(i, _)| channel("p", &name[..=i])),
    );
    out
}

/// One change as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    /// `None` for a delete.
    pub etag: Option<String>,
    pub deleted: bool,
    pub sequencer: String,
    pub size: u64,
    /// The document's exact text, when it is at most [`INLINE_MAX`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl Change {
    /// The event text (a JSON object, sent as a JSON string inside the engine's `data` message).
    pub fn event(&self) -> String {
        // Serialising a struct of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A connect or subscribe token, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The API key, as sent in `x-api-key`; `None` for a public subscription.
    pub api_key: Option<String>,
    /// `None` on a connect token.
    pub topic: Option<Topic>,
}

impl Token {
    pub fn parse(raw: &str) -> Result<Self, PushError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            k: Option<String>,
            key: Option<String>,
            prefix: Option<String>,
        }
        let bad = |why: &str| PushError::BadToken(why.to_owned());
        let encoded = raw
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| bad("a token starts with s3kv1."))?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| bad("not base64url after s3kv1."))?;
        let fields: Fields = serde_json::from_slice(&json)
            .map_err(|e| PushError::BadToken(format!("not the token's JSON: {e}")))?;
        let topic = match (fields.key, fields.prefix) {
            (None, None) => None,
            (Some(key), None) => Some(Topic::Key(
                ItemKey::parse(&key).map_err(|e| PushError::BadTopic(e.to_string()))?,
            )),
            (None, Some(prefix)) => Some(Topic::prefix(&prefix)?),
            (Some(_), Some(_)) => return Err(bad("a token names a key or a prefix, not both")),
        };
        Ok(Self {
            api_key: fields.k.filter(|k| !k.is_empty()),
            topic,
        })
    }

    /// The token a client sends (the inverse of [`Token::parse`]).
    pub fn encode(&self) -> String {
        let mut fields = serde_json::json!({ "k": self.api_key });
        match &self.topic {
            Some(Topic::Key(key)) => fields["key"] = key.as_str().into(),
            Some(Topic::Prefix(prefix)) => fields["prefix"] = prefix.as_str().into(),
            None => {}
        }
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fields.to_string());
        format!("{TOKEN_PREFIX}{encoded}")
    }
}

/// Where changes are published: AppSync Events' HTTP publish in AWS, s3kv-local's hub locally.
pub trait Publisher: Send + Sync {
    fn publish(
        &self,
        channel: &str,
        event: &str,
    ) -> impl std::future::Future<Output = Result<(), PublishError>> + Send;
}

impl<P: Publisher> Publisher for std::sync::Arc<P> {
    fn publish(
        &self,
        channel: &str,
        event: &str,
    ) -> impl std::future::Future<Output = Result<(), PublishError>> + Send {
        P::publish(self, channel, event)
    }
}

#[derive(Debug, Error)]
#[error("publish to {channel} failed: {reason}")]
pub struct PublishError {
    pub channel: String,
    pub reason: String,
    pub retryable: bool,
}

/// Turns S3 notification records into published changes: the same records the syncer applies (in AWS the
/// notifier gets them through EventBridge, outside the VPC, since the syncer cannot reach the engine). A change
/// carries its value and sequencer, so a subscriber never depends on the cache having caught up.
pub struct Notifier<S, P> {
    store: S,
    publisher: P,
    keys: crate::key::KeyMap,
}

/// What [`Notifier::notify`] did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// Published on this many channels.
    Published(usize),
    /// Not an item, or superseded by a newer object whose own record will publish it.
    Skipped,
}

impl<S: crate::ports::ObjectStore, P: Publisher> Notifier<S, P> {
    pub fn new(store: S, publisher: P, config: &crate::config::Config) -> Self {
        Self {
            store,
            publisher,
            keys: config.key_map(),
        }
    }

    pub async fn notify(&self, record: &crate::sync::SyncRecord) -> Result<Notified, NotifyError> {
        use crate::ports::StoreError;
        let crate::key::ObjectKind::Item(key) = self.keys.classify(&record.object_key) else {
            return Ok(Notified::Skipped);
        };
        // Both kinds read S3's current state, as the syncer does. A create reads its own version (a 412 or 404
        // means a newer change exists, and its record publishes it). A delete confirms the object is gone: in a
        // versioned bucket, deleting a delete marker (or the newest version) brings an older version back and S3
        // sends only a removal, so a delete whose object exists publishes that object under the delete's sequencer.
        let if_match = match &record.change {
            crate::sync::Change::Created { etag } => etag.as_ref(),
            crate::sync::Change::Removed => None,
        };
        let read = self
            .store
            .get(&record.object_key, if_match, INLINE_MAX as u64)
            .await;
        let (etag, size, body) = match read {
            Ok(object) => {
                let size = object.body.len() as u64;
                let body = String::from_utf8(object.body.to_vec()).ok();
                (object.etag, size, body)
            }
            Err(StoreError::NotFound) if record.change == crate::sync::Change::Removed => {
                let change = Change {
                    key: key.as_str().to_owned(),
                    etag: None,
                    deleted: true,
                    sequencer: record.sequencer.as_str().to_owned(),
                    size: 0,
                    body: None,
                };
                return self.publish(&key, &change).await;
            }
            // Too large to carry: subscribers re-read it by its ETag.
            Err(StoreError::TooLarge { size, .. }) => {
                let etag = match &record.change {
                    crate::sync::Change::Created { etag: Some(etag) } => etag.clone(),
                    _ => match self.store.head(&record.object_key).await {
                        Ok(etag) => etag,
                        Err(StoreError::NotFound) => return Ok(Notified::Skipped),
                        Err(e) => return Err(NotifyError::Store(e)),
                    },
                };
                (etag, size, None)
            }
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => {
                return Ok(Notified::Skipped)
            }
            Err(e) => return Err(NotifyError::Store(e)),
        };
        // Only documents the API would serve are pushed as values; others push without a body.
        let body = body.filter(|b| crate::document::validate(b.as_bytes()).is_ok());
        let change = Change {
            key: key.as_str().to_owned(),
            etag: Some(etag.as_str().to_owned()),
            deleted: false,
            sequencer: record.sequencer.as_str().to_owned(),
            size,
            body,
        };
        self.publish(&key, &change).await
    }

    async fn publish(&self, key: &ItemKey, change: &Change) -> Result<Notified, NotifyError> {
        let event = change.event();
        let channels = channels(key);
        for channel in &channels {
            self.publisher.publish(channel, &event).await?;
        }
        Ok(Notified::Published(channels.len()))
    }
}

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("reading the changed object: {0}")]
    Store(crate::ports::StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl NotifyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Store(e) => crate::retry::Retryable::is_retryable(e),
            NotifyError::Publish(e) => e.retryable,
        }
    }
}

#[derive(Debug, Error)]
pub enum PushError {
    #[error("bad token: {0}")]
    BadToken(String),
    #[error("bad topic: {0}")]
    BadTopic(String),
    #[error("a subscribe token must name the key or prefix it follows")]
    NoTopic,
    #[error("the channel is not the token's topic's ({expected})")]
    WrongChannel { expected: String },
    #[error("unknown API key")]
    UnknownKey,
    #[error(transparent)]
    Denied(#[from] Denied),
}

impl PushError {
    /// AppSync's error type for it, as clients branch on it.
    pub fn error_type(&self) -> &'static str {
        match self {
            PushError::BadToken(_) | PushError::BadTopic(_) | PushError::NoTopic => {
                "BadRequestException"
            }
            _ => "UnauthorizedException",
        }
    }
}

/// Whether a subscription to `channel` with `token` is allowed. `key_id` is the id of the token's API key, looked up
/// by the caller (API Gateway's key table in AWS, the local gateway's in s3kv-local): `Err(UnknownKey)` is the
/// caller's to return when a key was sent and has no id.
pub fn authorize(
    access: &Access,
    token: &Token,
    key_id: Option<&str>,
    channel: &str,
) -> Result<Topic, PushError> {
    let topic = token.topic.clone().ok_or(PushError::NoTopic)?;
    let expected = topic.channel();
    if expected != channel {
        return Err(PushError::WrongChannel { expected });
    }
    let permission = match token.api_key {
        Some(_) => Permission::Read,
        None => Permission::Public,
    };
    let caller = access.authorize(key_id, permission)?;
    if !caller.covers(topic.name()) {
        return Err(caller.outside(topic.name()).into());
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Grant, Role};

    fn key(k: &str) -> ItemKey {
        ItemKey::parse(k).unwrap()
    }

    #[test]
    fn a_change_is_published_on_its_key_and_every_slash_prefix() {
        let got = channels(&key("flags/beta/x"));
        let want: Vec<String> = [
            Topic::Key(key("flags/beta/x")),
            Topic::Prefix(String::new()),
            Topic::Prefix("flags/".into()),
            Topic::Prefix("flags/beta/".into()),
        ]
        .iter()
        .map(Topic::channel)
        .collect();
        assert_eq!(got, want);
        // Channels fit AppSync's rules: 3 segments of [A-Za-z0-9-], at most 50 characters each.
        for channel in &got {
            let segments: Vec<&str> = channel.trim_start_matches('/').split('/').collect();
            assert_eq!(segments.len(), 3, "{channel}");
            assert!(segments.iter().all(|s| !s.is_empty()
                && s.len() <= 50
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
        }
        // Fixed by the spec, so clients compute the same: sha256("") starts e3b0c442….
        assert_eq!(
            Topic::Prefix(String::new()).channel(),
            "/s3kv/p/e3b0c44298fc1c149afbf4c8996fb924"
        );
    }

    #[test]
    fn prefixes_to_follow_end_at_a_slash() {
        assert!(Topic::prefix("").is_ok());
        assert!(Topic::prefix("flags/").is_ok());
        let err = Topic::prefix("flags/be").unwrap_err().to_string();
        assert!(err.contains("\"flags/\""), "{err}");
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        for token in [
            Token {
                api_key: Some("k".repeat(20)),
                topic: Some(Topic::Key(key("a b/ç"))),
            },
            Token {
                api_key: None,
                topic: Some(Topic::Prefix("public/".into())),
            },
            Token {
                api_key: Some("x".repeat(20)),
                topic: None,
            },
        ] {
            assert_eq!(Token::parse(&token.encode()).unwrap(), token);
        }
        for bad in ["", "s3kv1.", "s3kv1.!!", "Bearer x", "s3kv1.eyJ6IjoxfQ"] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subscriptions_keep_the_roles_of_the_http_api() {
        let flags = Grant {
            role: Role::Read,
            prefixes: vec!["flags/".into()],
            name: None,
        };
        let all = Grant {
            role: Role::Read,
            prefixes: vec![],
            name: None,
        };
        let access = Access::new(
            [("flags-id".to_owned(), flags), ("all-id".to_owned(), all)],
            Some("public/".into()),
        );
        let token = |k: Option<&str>, topic: Topic| Token {
            api_key: k.map(str::to_owned),
            topic: Some(topic),
        };
        let check = |k: Option<&str>, id: Option<&str>, topic: Topic| {
            let channel = topic.channel();
            authorize(&access, &token(k, topic), id, &channel).map(|_| ())
        };
        let k = Some("a-key-of-twenty-chars");
        assert!(check(k, Some("all-id"), Topic::Prefix(String::new())).is_ok());
        assert!(check(k, Some("flags-id"), Topic::Prefix("flags/".into())).is_ok());
        assert!(check(k, Some("flags-id"), Topic::Key(key("flags/x"))).is_ok());
        assert!(check(k, Some("flags-id"), Topic::Prefix(String::new())).is_err());
        assert!(check(k, Some("flags-id"), Topic::Key(key("config/x"))).is_err());
        assert!(check(None, None, Topic::Key(key("public/banner"))).is_ok());
        assert!(check(None, None, Topic::Prefix("public/".into())).is_ok());
        assert!(check(None, None, Topic::Key(key("flags/x"))).is_err());
        assert!(check(k, Some("nobody"), Topic::Key(key("flags/x"))).is_err());
        // The topic must be the channel's: a token for flags/ cannot open config/'s channel.
        let other = Topic::Prefix("config/".into()).channel();
        let result = authorize(
            &access,
            &token(k, Topic::Prefix("flags/".into())),
            Some("flags-id"),
            &other,
        );
        assert!(matches!(result, Err(PushError::WrongChannel { .. })));
    }

    /// Records what is published, by channel.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<(String, Change)>>);

    impl Publisher for Recorder {
        async fn publish(&self, channel: &str, event: &str) -> Result<(), PublishError> {
            let change = serde_json::from_str(event).unwrap();
            self.0.lock().unwrap().push((channel.to_owned(), change));
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_notifier_publishes_what_s3_holds_now() {
        use crate::ports::{ObjectStore, PutMode};
        use crate::sequencer::Sequencer;
        use crate::sync::{Change as Kind, SyncRecord};
        let store = crate::memory::MemoryStore::default();
        let config = crate::config::Config::from_lookup(|v| match v {
            "S3KV_BUCKET" => Some("b".into()),
            "S3KV_PREFIX" => Some("items/".into()),
            _ => None,
        })
        .unwrap();
        let recorder = std::sync::Arc::new(Recorder::default());
        let notifier = Notifier::new(store.clone(), recorder.clone(), &config);
        let record = |change, sequencer: &str| SyncRecord {
            object_key: "items/flags/a.json".into(),
            sequencer: Sequencer::parse(sequencer).unwrap(),
            change,
            event_time: None,
            principal: None,
        };
        let last = || recorder.0.lock().unwrap().last().cloned().unwrap().1;
        let author = crate::audit::Author::default();
        let put = |body: &'static str| {
            store.put(
                "items/flags/a.json",
                bytes::Bytes::from(body),
                PutMode::Overwrite,
                &author,
            )
        };
        let v1 = put(r#"{"on":true}"#).await.unwrap();
        let created = record(
            Kind::Created {
                etag: Some(v1.clone()),
            },
            "0A",
        );
        assert_eq!(
            notifier.notify(&created).await.unwrap(),
            Notified::Published(3)
        );
        assert_eq!(
            (last().etag, last().deleted, last().body),
            (
                Some(v1.as_str().to_owned()),
                false,
                Some(r#"{"on":true}"#.to_owned())
            )
        );
        // A record for a version S3 no longer holds is left to the newer version's record.
        let v2 = put(r#"{"on":false}"#).await.unwrap();
        assert_eq!(notifier.notify(&created).await.unwrap(), Notified::Skipped);
        // A removal while the object exists (a delete marker deleted: an older version is back) publishes it.
        let removed = record(Kind::Removed, "0C");
        notifier.notify(&removed).await.unwrap();
        assert_eq!(
            (last().etag, last().deleted, last().sequencer.as_str()),
            (Some(v2.as_str().to_owned()), false, "0C")
        );
        store.delete("items/flags/a.json", None).await.unwrap();
        notifier.notify(&record(Kind::Removed, "0D")).await.unwrap();
        assert_eq!(
            (last().etag, last().deleted, last().body),
            (None, true, None)
        );
        // Not an item: nothing is published.
        let mut other = record(Kind::Removed, "0E");
        other.object_key = "elsewhere/a.json".into();
        assert_eq!(notifier.notify(&other).await.unwrap(), Notified::Skipped);
    }
}
