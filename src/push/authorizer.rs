//! The AppSync Events Lambda authorizer: every connect and subscribe on the stack's Event API comes here with the
//! client's token, and gets the HTTP API's answer for that key and topic.
//!
//! AppSync sends `{"authorizationToken": "<the Authorization header>", "requestContext": {"apiId", "accountId",
//! "requestId", "operation": "EVENT_CONNECT" | "EVENT_SUBSCRIBE" | "EVENT_PUBLISH", "channelNamespaceName",
//! "channel"}, "requestHeaders": {…}}` and takes `{"isAuthorized": bool, "ttlOverride": seconds}` back (AppSync
//! Events developer guide, "Configuring authorization and authentication to secure Event APIs",
//! <https://docs.aws.amazon.com/appsync/latest/eventapi/configure-event-api-auth.html>).
//!
//! A token carries the API key's *value* (what a client holds); grants are by key *id* (what API Gateway logs and
//! `S3KV_API_KEYS` names). [`KeyTable`] maps one to the other from a [`KeySource`] (API Gateway's `GetApiKeys` in
//! AWS), cached per instance.
//!
//! # Caching and revocation
//!
//! AppSync caches an answer for `ttlOverride` seconds. An allowed **connect** is cached for [`CONNECT_TTL_SECS`]
//! (60 s): reconnect storms after a deploy or a network blip then cost one invocation per key a minute, and a
//! revoked key can still connect for at most that long (plus the key table's [`KEY_TABLE_MAX_AGE`]). An allowed
//! **subscribe** is never cached: AppSync does not document whether its cache key includes the channel, and if it
//! were the token alone, a cached allow for `flags/` could open another topic's channel with the same token.
//! Subscribes are rare (one per topic per connection), so this costs little. A refusal is never cached, so a key
//! that was just created works at once. What no TTL changes: a subscription already open is not checked again,
//! so revoking a key stops its new connections and subscriptions, while one already open lasts until its
//! connection ends (at most 24 hours).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{PushError, Token, Topic};
use crate::access::{Access, Permission};

pub const EVENT_CONNECT: &str = "EVENT_CONNECT";
pub const EVENT_SUBSCRIBE: &str = "EVENT_SUBSCRIBE";
pub const EVENT_PUBLISH: &str = "EVENT_PUBLISH";

/// How long AppSync may reuse an allowed connect (see the module docs).
pub const CONNECT_TTL_SECS: u32 = 60;
/// An unknown key value refreshes the key table at most this often, so a flood of made-up keys costs at most one
/// `GetApiKeys` a minute per instance.
pub const KEY_TABLE_MIN_REFRESH: Duration = Duration::from_secs(60);
/// A known key value is trusted from a table at most this old, so a deleted or disabled key stops connecting.
pub const KEY_TABLE_MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequest {
    #[serde(default)]
    pub authorization_token: String,
    pub request_context: RequestContext,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub operation: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub channel_namespace_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    pub is_authorized: bool,
    pub ttl_override: u32,
}

/// Why a request was refused.
#[derive(Debug, Error)]
pub enum Refused {
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("publishing is the notifier's (IAM), never a client's")]
    Publish,
    #[error("a subscribe without a channel")]
    NoChannel,
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    #[error(transparent)]
    Keys(#[from] KeySourceError),
}

/// The decision for one request, once the token's key is resolved to its id (`None` without a key).
pub fn decide(
    access: &Access,
    operation: &str,
    token: &Token,
    key_id: Option<&str>,
    channel: Option<&str>,
) -> Result<Option<Topic>, Refused> {
    match operation {
        // A connection needs a key the HTTP API would let read, or no key where public reads are on.
        EVENT_CONNECT => {
            let permission = match token.api_key {
                Some(_) => Permission::Read,
                None => Permission::Public,
            };
            access
                .authorize(key_id, permission)
                .map_err(PushError::from)?;
            Ok(None)
        }
        EVENT_SUBSCRIBE => {
            let channel = channel.ok_or(Refused::NoChannel)?;
            Ok(Some(super::authorize(access, token, key_id, channel)?))
        }
        EVENT_PUBLISH => Err(Refused::Publish),
        other => Err(Refused::UnknownOperation(other.to_owned())),
    }
}

/// What AppSync is told: allowed connects are cached briefly, nothing else is.
pub fn response(operation: &str, decision: &Result<Option<Topic>, Refused>) -> AuthorizerResponse {
    AuthorizerResponse {
        is_authorized: decision.is_ok(),
        ttl_override: match decision {
            Ok(_) if operation == EVENT_CONNECT => CONNECT_TTL_SECS,
            _ => 0,
        },
    }
}

/// Where API key values are looked up: every enabled key's value → its id.
pub trait KeySource: Send + Sync {
    fn fetch(
        &self,
    ) -> impl std::future::Future<Output = Result<HashMap<String, String>, KeySourceError>> + Send;
}

#[derive(Debug, Error)]
#[error("listing the API keys failed: {0}")]
pub struct KeySourceError(pub String);

/// API key value → id, fetched from a [`KeySource`] on first use, again when a known key's entry is older than
/// [`KEY_TABLE_MAX_AGE`], and on an unknown value at most every [`KEY_TABLE_MIN_REFRESH`].
pub struct KeyTable<S> {
    source: S,
    state: Mutex<KeyState>,
}

#[derive(Default)]
struct KeyState {
    ids: HashMap<String, String>,
    fetched: Option<Instant>,
}

impl<S: KeySource> KeyTable<S> {
    pub fn new(source: S) -> Self {
        Self {
            source,
            state: Mutex::new(KeyState::default()),
        }
    }

    /// The id of the key whose value is `value`, `None` when there is none (or it is disabled).
    pub async fn id_of(&self, value: &str, now: Instant) -> Result<Option<String>, KeySourceError> {
        let refresh = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let age = state.fetched.map(|t| now.saturating_duration_since(t));
            match (state.ids.get(value), age) {
                (Some(id), Some(age)) if age < KEY_TABLE_MAX_AGE => return Ok(Some(id.clone())),
                (None, Some(age)) if age < KEY_TABLE_MIN_REFRESH => return Ok(None),
                _ => true,
            }
        };
        debug_assert!(refresh);
        let ids = self.source.fetch().await?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.ids = ids;
        state.fetched = Some(now);
        Ok(state.ids.get(value).cloned())
    }
}

/// The authorizer use case: token → key id → [`decide`].
pub struct Authorizer<S> {
    access: Access,
    keys: KeyTable<S>,
}

impl<S: KeySource> Authorizer<S> {
    pub fn new(access: Access, keys: S) -> Self {
        Self {
            access,
            keys: KeyTable::new(keys),
        }
    }

    pub async fn decide(
        &self,
        request: &AuthorizerRequest,
        now: Instant,
    ) -> Result<Option<Topic>, Refused> {
        let context = &request.request_context;
        if context.operation == EVENT_PUBLISH {
            return Err(Refused::Publish);
        }
        let token = Token::parse(&request.authorization_token)?;
        let key_id = match &token.api_key {
            None => None,
            Some(value) => Some(
                self.keys
                    .id_of(value, now)
                    .await?
                    .ok_or(PushError::UnknownKey)?,
            ),
        };
        decide(
            &self.access,
            &context.operation,
            &token,
            key_id.as_deref(),
            context.channel.as_deref(),
        )
    }

    /// [`Authorizer::decide`], answered as AppSync expects.
    pub async fn handle(
        &self,
        request: &AuthorizerRequest,
        now: Instant,
    ) -> (AuthorizerResponse, Result<Option<Topic>, Refused>) {
        let decision = self.decide(request, now).await;
        (
            response(&request.request_context.operation, &decision),
            decision,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Grant, Role};
    use crate::key::ItemKey;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const FLAGS_KEY: &str = "flags-key-value-0123456789";
    const ALL_KEY: &str = "all-key-value-0123456789";

    fn access(public: Option<&str>) -> Access {
        let grant = |prefixes: &[&str]| Grant {
            role: Role::Read,
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            name: None,
        };
        Access::new(
            [
                ("flags-id".to_owned(), grant(&["flags/"])),
                ("all-id".to_owned(), grant(&[])),
            ],
            public.map(str::to_owned),
        )
    }

    /// API Gateway's key table, counting the fetches.
    #[derive(Clone, Default)]
    struct Keys {
        ids: Arc<Mutex<HashMap<String, String>>>,
        fetches: Arc<AtomicUsize>,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Keys {
        fn with(pairs: &[(&str, &str)]) -> Self {
            let keys = Self::default();
            for (value, id) in pairs {
                keys.add(value, id);
            }
            keys
        }
        fn add(&self, value: &str, id: &str) {
            self.ids
                .lock()
                .unwrap()
                .insert(value.to_owned(), id.to_owned());
        }
        fn remove(&self, value: &str) {
            self.ids.lock().unwrap().remove(value);
        }
        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl KeySource for Keys {
        async fn fetch(&self) -> Result<HashMap<String, String>, KeySourceError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(KeySourceError("503".into()));
            }
            Ok(self.ids.lock().unwrap().clone())
        }
    }

    fn request(operation: &str, token: &Token, channel: Option<&str>) -> AuthorizerRequest {
        serde_json::from_value(serde_json::json!({
            "authorizationToken": token.encode(),
            "requestContext": {
                "apiId": "aaaaaa123123123example123", "accountId": "111122223333",
                "requestId": "f4081827-1111-4444-5555-5cf4695f339f", "operation": operation,
                "channelNamespaceName": "s3kv", "channel": channel
            },
            "requestHeaders": {"host": "example.appsync-api.us-east-1.amazonaws.com"}
        }))
        .unwrap()
    }

    fn token(key: Option<&str>, topic: Option<Topic>) -> Token {
        Token {
            api_key: key.map(str::to_owned),
            topic,
        }
    }

    fn prefix(p: &str) -> Topic {
        Topic::prefix(p).unwrap()
    }

    #[tokio::test]
    async fn connects_need_a_known_key_or_public_reads() {
        let keys = Keys::with(&[(FLAGS_KEY, "flags-id"), ("stranger", "other-stack-id")]);
        let now = Instant::now();
        let authorizer = Authorizer::new(access(None), keys.clone());
        let connect = |k: Option<&str>| request(EVENT_CONNECT, &token(k, None), None);
        let (answer, _) = authorizer.handle(&connect(Some(FLAGS_KEY)), now).await;
        assert_eq!(
            answer,
            AuthorizerResponse {
                is_authorized: true,
                ttl_override: CONNECT_TTL_SECS
            }
        );
        for refused in [Some("made-up-key-value"), Some("stranger"), None] {
            let (answer, why) = authorizer.handle(&connect(refused), now).await;
            assert_eq!(
                answer,
                AuthorizerResponse {
                    is_authorized: false,
                    ttl_override: 0
                },
                "{refused:?}: {why:?}"
            );
        }
        // With public reads on, a keyless connection is allowed (its subscribes are then held to the prefix).
        let public = Authorizer::new(access(Some("public/")), keys);
        assert!(public.handle(&connect(None), now).await.0.is_authorized);
    }

    #[tokio::test]
    async fn subscribes_follow_the_http_api_roles_and_are_never_cached() {
        let keys = Keys::with(&[(FLAGS_KEY, "flags-id"), (ALL_KEY, "all-id")]);
        let authorizer = Authorizer::new(access(Some("public/")), keys);
        let now = Instant::now();
        let subscribe = |k: Option<&str>, topic: Topic| {
            let channel = topic.channel();
            request(EVENT_SUBSCRIBE, &token(k, Some(topic)), Some(&channel))
        };
        let key = |k: &str| Topic::Key(ItemKey::parse(k).unwrap());
        for (k, topic, allowed) in [
            (Some(ALL_KEY), prefix(""), true),
            (Some(FLAGS_KEY), prefix("flags/"), true),
            (Some(FLAGS_KEY), key("flags/beta"), true),
            (Some(FLAGS_KEY), prefix(""), false),
            (Some(FLAGS_KEY), key("config/x"), false),
            (None, key("public/banner"), true),
            (None, key("flags/beta"), false),
            (Some("made-up-key-value"), key("public/banner"), false),
        ] {
            let (answer, why) = authorizer.handle(&subscribe(k, topic.clone()), now).await;
            assert_eq!(answer.is_authorized, allowed, "{k:?} {topic:?}: {why:?}");
            assert_eq!(answer.ttl_override, 0);
        }
        // A token for one topic cannot open another topic's channel.
        let other = prefix("config/").channel();
        let wrong = request(
            EVENT_SUBSCRIBE,
            &token(Some(ALL_KEY), Some(prefix("flags/"))),
            Some(&other),
        );
        let (answer, why) = authorizer.handle(&wrong, now).await;
        assert!(!answer.is_authorized);
        assert!(matches!(
            why,
            Err(Refused::Push(PushError::WrongChannel { .. }))
        ));
        // A connect token (no topic) cannot subscribe.
        let bare = request(EVENT_SUBSCRIBE, &token(Some(ALL_KEY), None), Some(&other));
        assert!(matches!(
            authorizer.handle(&bare, now).await.1,
            Err(Refused::Push(PushError::NoTopic))
        ));
    }

    #[tokio::test]
    async fn clients_never_publish_and_bad_requests_are_refused() {
        let authorizer = Authorizer::new(access(None), Keys::with(&[(ALL_KEY, "all-id")]));
        let now = Instant::now();
        let channel = prefix("").channel();
        let publish = request(
            EVENT_PUBLISH,
            &token(Some(ALL_KEY), Some(prefix(""))),
            Some(&channel),
        );
        assert!(matches!(
            authorizer.handle(&publish, now).await.1,
            Err(Refused::Publish)
        ));
        let mut garbage = request(EVENT_CONNECT, &token(Some(ALL_KEY), None), None);
        garbage.authorization_token = "Bearer x".into();
        assert!(!authorizer.handle(&garbage, now).await.0.is_authorized);
        let odd = request("EVENT_SOMETHING", &token(Some(ALL_KEY), None), None);
        assert!(matches!(
            authorizer.handle(&odd, now).await.1,
            Err(Refused::UnknownOperation(_))
        ));
    }

    #[tokio::test]
    async fn the_key_table_refreshes_on_unknown_values_at_most_once_a_minute_and_ages_out_known_ones(
    ) {
        let keys = Keys::with(&[(ALL_KEY, "all-id")]);
        let table = KeyTable::new(keys.clone());
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(
            table.id_of(ALL_KEY, t0).await.unwrap().as_deref(),
            Some("all-id")
        );
        assert_eq!(keys.fetches(), 1);
        // Unknown values refresh the table at most once a minute.
        keys.add("new-key", "new-id");
        assert_eq!(table.id_of("nope", at(1)).await.unwrap(), None);
        assert_eq!(keys.fetches(), 1, "refreshed again within the minute");
        assert_eq!(table.id_of("new-key", at(30)).await.unwrap(), None);
        assert_eq!(keys.fetches(), 1);
        assert_eq!(
            table.id_of("new-key", at(61)).await.unwrap().as_deref(),
            Some("new-id")
        );
        assert_eq!(keys.fetches(), 2);
        // Known values are answered from the table until it is five minutes old; then a removed key is gone.
        keys.remove(ALL_KEY);
        assert!(table.id_of(ALL_KEY, at(200)).await.unwrap().is_some());
        assert_eq!(keys.fetches(), 2);
        assert_eq!(table.id_of(ALL_KEY, at(61 + 300)).await.unwrap(), None);
        assert_eq!(keys.fetches(), 3);
        // A failing source is an error (the authorizer refuses), and the next call tries again.
        keys.down.store(true, Ordering::SeqCst);
        assert!(table.id_of("other", at(61 + 300 + 60)).await.is_err());
        keys.down.store(false, Ordering::SeqCst);
        assert_eq!(
            table
                .id_of("new-key", at(61 + 300 + 61))
                .await
                .unwrap()
                .as_deref(),
            Some("new-id")
        );
    }
}
