//! [`Cache`] over fred: one string per item ([`Entry`]), read with one GET, every write through one Lua script on
//! that one key.
//!
//! Works unchanged against a single node or a cluster (ElastiCache Serverless is always a cluster): a script
//! names its only key in KEYS, so it runs on the node owning that key's slot.

mod entry;
mod feed;

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;

pub use self::entry::Entry;

use self::entry::{decode_lookup, marks};
use self::feed::FeedState;
use crate::adapters::iam_auth::IamTokenProvider;
use crate::config::ConfigError;
use crate::expiry::Expiry;
use crate::ports::{
    Applied, Cache, CacheChange, CacheError, CacheLookup, ExpiryIndex, Marks, Object, Snapshot,
};
use crate::sequencer::Sequencer;

const SCRIPT: &str = include_str!("cache.lua");

#[derive(Clone)]
pub struct ValkeyCache {
    client: Client,
    script: Script,
    pub(super) feed: std::sync::Arc<FeedState>,
    /// The reaper's index of expiring items (see [`crate::ports::ExpiryIndex`]).
    expiry_key: String,
    /// How long an expiring item's entry outlives its expiry: the tombstone TTL (see [`ValkeyCache::keep_until`]).
    expired_grace: Duration,
}

impl ValkeyCache {
    /// Builds a client for `url` (any of fred's URL forms: `valkey://`, `valkeys://`, `valkey-cluster://`,
    /// `valkeys-cluster://`, with `user:password@`). Does not connect; see [`ValkeyCache::connect`].
    ///
    /// `command_timeout` bounds each command, including one issued while disconnected, so callers fall back within
    /// it. Once connected, the client reconnects forever with capped, jittered exponential backoff. The first
    /// connection is [`ValkeyCache::connect`]'s: a Lambda that cold-starts while Valkey is unreachable, or is thawed
    /// after minutes frozen with a dead socket, recovers on its own.
    pub fn new(url: &str, command_timeout: Duration) -> Result<Self, ConfigError> {
        Self::build(parse_url(url)?, url, command_timeout)
    }

    /// The client the Lambda functions use: `VALKEY_URL`, with IAM authentication when `S3KV_VALKEY_IAM_CACHE`
    /// is set (the URL then carries the user and no password; credentials come from the function's role).
    pub async fn from_config(
        config: &crate::config::Config,
        command_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let url = config.require_valkey_url()?;
        let mut valkey = parse_url(url)?;
        if let Some(cache_name) = &config.valkey_iam_cache {
            let user = valkey.username.clone().ok_or_else(|| ConfigError::Invalid {
                var: "VALKEY_URL",
                value: redact(url),
                reason: "IAM authentication (S3KV_VALKEY_IAM_CACHE) needs the ElastiCache user id in the URL: valkeys-cluster://USER@host:port".into(),
            })?;
            let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(crate::adapters::tls::sdk_http_client())
                .load()
                .await;
            let credentials = aws.credentials_provider().ok_or(ConfigError::Missing {
                var: "AWS_ACCESS_KEY_ID",
                hint: "IAM authentication to Valkey needs AWS credentials (the function's role provides them)",
            })?;
            let provider =
                IamTokenProvider::new(&user, cache_name, config.require_region()?, credentials);
            valkey.password = None;
            valkey.credential_provider = Some(std::sync::Arc::new(provider));
        }
        let cache = Self::build(valkey, url, command_timeout)?;
        Ok(cache.with_feed(config))
    }

    fn build(config: Config, url: &str, command_timeout: Duration) -> Result<Self, ConfigError> {
        let client = Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = command_timeout)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 2;
            })
            .with_config(|c| c.fail_fast = true)
            .set_policy(reconnect_policy())
            .build()
            .map_err(|e| ConfigError::Invalid {
                var: "VALKEY_URL",
                value: redact(url),
                reason: e.to_string(),
            })?;
        // The feed of the default cache prefix; `with_feed` sets a configuration's.
        let feed = FeedState::new(
            &client,
            crate::key::KeyMap::new("", crate::config::DEFAULT_CACHE_PREFIX).feed_key(),
            crate::config::DEFAULT_FEED_RETENTION as usize,
        );
        Ok(Self {
            client,
            script: Script::from_lua(SCRIPT),
            feed: std::sync::Arc::new(feed),
            expiry_key: crate::key::KeyMap::new("", crate::config::DEFAULT_CACHE_PREFIX)
                .expiry_key(),
            expired_grace: crate::config::DEFAULT_TOMBSTONE_TTL,
        })
    }

    /// Starts connecting and waits up to `wait` for the connection. Never fails: if Valkey is down, a background
    /// task keeps trying (the policy's backoff, 50 ms to 2 s) and callers get `CacheError::Unavailable` until it
    /// is back.
    ///
    /// The first attempt is made at once. fred's own retry of a first connection (`fail_fast = false`) sleeps the
    /// reconnect policy's first delay, with its jitter, before even trying: 50–150 ms on every cold start of the
    /// reader and syncer (BENCHMARKS.md). So the client fails fast, and this loop retries the first connection.
    pub async fn connect(&self, wait: Duration) {
        drive(&self.client, wait).await;
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The change feed of `config`'s cache prefix, keeping `S3KV_FEED_RETENTION` entries, its expiry index, and its
    /// tombstone TTL as the time an expired item's entry is kept (without this, the defaults').
    pub fn with_feed(mut self, config: &crate::config::Config) -> Self {
        self.expiry_key = config.key_map().expiry_key();
        self.expired_grace = config.tombstone_ttl;
        let feed = FeedState::new(
            &self.client,
            config.key_map().feed_key(),
            config.feed_retention,
        );
        self.feed = std::sync::Arc::new(feed);
        self
    }
}

/// [`ValkeyCache::connect`] for any client: the feed's blocking connection starts the same way.
pub(super) async fn drive(client: &Client, wait: Duration) {
    {
        let client = client.clone();
        tokio::spawn(async move {
            let mut policy = reconnect_policy();
            // The task ends Ok when the client quits; Err when it could not connect the first time.
            while let Ok(Err(error)) = client.connect().await {
                if *error.kind() == ErrorKind::Config {
                    // Another task already drives this client (connect called twice), or the settings are wrong.
                    tracing::warn!(%error, "not retrying the Valkey connection");
                    return;
                }
                let delay = policy.next_delay().unwrap_or(2_000);
                tracing::debug!(%error, delay_ms = delay, "Valkey not reachable; retrying");
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        });
    }
    let connected = async {
        // A failed attempt also wakes `wait_for_connect`; the short timeout covers the success broadcast
        // landing between a failure and the next subscription.
        while !client.is_connected() {
            let _ =
                tokio::time::timeout(Duration::from_millis(20), client.wait_for_connect()).await;
        }
    };
    if tokio::time::timeout(wait, connected).await.is_err() {
        tracing::warn!(
            wait_ms = wait.as_millis() as u64,
            "Valkey not reachable yet; reconnecting in the background"
        );
    }
}

/// Forever, 50 ms doubling to 2 s, with fred's default jitter: for reconnects and for `connect`'s first attempts.
fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 50, 2_000, 2)
}

/// Escapes SCAN's glob syntax so a prefix matches only itself.
fn escape_glob(prefix: &str) -> String {
    prefix.chars().fold(String::new(), |mut out, c| {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Longest etag or reason an entry header carries; cache.lua reads this much of an entry (HEADER_MAX) to find
/// its header, so the two limits move together.
const HEADER_FIELD_MAX: usize = 1024;
/// How much of an entry `snapshot` and `marks_many` read: every header fits (sequencers have at most 64 digits).
const HEADER_READ_MAX: usize = 1200;
// A sequencer (at most 64 digits), an etag or a reason (the other is empty), and three newlines.
const _: () = assert!(64 + HEADER_FIELD_MAX + 3 <= HEADER_READ_MAX);

impl ValkeyCache {
    /// When the entry of an expiring item may go (`PXAT`, in milliseconds): its expiry plus the tombstone TTL.
    ///
    /// Not at the expiry itself. An entry is also the memory of which event wrote it, and a syncer invocation
    /// that read an older version before this one was written, then stalled, must still find it and lose; a
    /// tombstone keeps that memory for the same time after a delete. Readers never serve the entry after the
    /// expiry (they compare it with the clock), and the reaper's delete replaces it with a small tombstone within
    /// minutes, so the body does not stay in memory for long; this bound holds if the reaper never runs.
    fn keep_until(&self, object: &Object) -> Option<i64> {
        let at = object.provenance.expires?;
        let grace = i64::try_from(self.expired_grace.as_secs()).unwrap_or(i64::MAX);
        Some(at.unix_seconds().saturating_add(grace).saturating_mul(1000))
    }
}

/// The `PXAT` argument of a put or fill: empty for an entry that never expires.
fn pxat(keep_until: Option<i64>) -> Value {
    keep_until.map_or_else(|| Value::from(""), Value::from)
}

/// GET or GETRANGE on a key of another type: the value is not an entry (see [`decode_lookup`]).
fn not_a_string(error: &Error) -> bool {
    error.details().starts_with("WRONGTYPE")
}

/// A read's raw answer, with a value of another type counted as no value.
impl ValkeyCache {
    /// Each key's value (or its first `head` bytes) in one pipeline: fred writes each command to the node owning
    /// its key without waiting for answers, so a batch costs one round trip per node involved.
    async fn fetch_many(
        &self,
        cache_keys: &[String],
        head: Option<usize>,
    ) -> Result<Vec<Option<Bytes>>, CacheError> {
        let pipeline = self.client.pipeline();
        for cache_key in cache_keys {
            let queued: Result<(), Error> = match head {
                None => pipeline.get(cache_key.as_str()).await,
                Some(bytes) => pipeline.getrange(cache_key.as_str(), 0, bytes - 1).await,
            };
            queued.map_err(cache_error)?;
        }
        let answers = pipeline.try_all::<Value>().await;
        if answers.len() != cache_keys.len() {
            return Err(CacheError::Unexpected(format!(
                "{} answers to {} lookups",
                answers.len(),
                cache_keys.len()
            )));
        }
        answers
            .into_iter()
            .map(|answer| raw_value(answer.and_then(|v| v.convert())))
            .collect()
    }
}

fn raw_value(answer: Result<Option<Bytes>, Error>) -> Result<Option<Bytes>, CacheError> {
    match answer {
        Err(error) if not_a_string(&error) => Ok(None),
        other => other.map_err(cache_error),
    }
}

impl Cache for ValkeyCache {
    async fn lookup(&self, cache_key: &str) -> Result<CacheLookup, CacheError> {
        Ok(decode_lookup(raw_value(self.client.get(cache_key).await)?))
    }

    async fn lookup_many(&self, cache_keys: &[String]) -> Result<Vec<CacheLookup>, CacheError> {
        let raw = self.fetch_many(cache_keys, None).await?;
        Ok(raw.into_iter().map(decode_lookup).collect())
    }

    async fn marks_many(&self, cache_keys: &[String]) -> Result<Vec<Marks>, CacheError> {
        let heads = self.fetch_many(cache_keys, Some(HEADER_READ_MAX)).await?;
        Ok(heads.iter().map(|head| marks(head.as_ref())).collect())
    }

    async fn apply(
        &self,
        cache_key: &str,
        sequencer: &Sequencer,
        change: &CacheChange,
    ) -> Result<Applied, CacheError> {
        let seq = Value::from(sequencer.as_str());
        let args: Vec<Value> = match change {
            CacheChange::Put(object) => {
                let entry = Entry {
                    sequencer: sequencer.as_str().to_owned(),
                    etag: object.etag.as_str().to_owned(),
                    tombstone: String::new(),
                    provenance: object.provenance.clone(),
                    body: object.body.clone(),
                };
                let keep_until = pxat(self.keep_until(object));
                vec!["put".into(), seq, Value::Bytes(entry.encode()?), keep_until]
            }
            CacheChange::Tombstone { reason, ttl } => {
                let entry = Entry {
                    sequencer: sequencer.as_str().to_owned(),
                    tombstone: (*reason).to_owned(),
                    ..Entry::default()
                };
                let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
                vec![
                    "tomb".into(),
                    seq,
                    Value::Bytes(entry.encode()?),
                    ttl_ms.into(),
                ]
            }
        };
        let changed: i64 = self
            .script
            .evalsha_with_reload(&self.client, cache_key, args)
            .await
            .map_err(cache_error)?;
        Ok(if changed == 1 {
            Applied::Applied
        } else {
            Applied::Stale
        })
    }

    async fn fill(&self, cache_key: &str, object: &Object) -> Result<bool, CacheError> {
        let entry = Entry {
            etag: object.etag.as_str().to_owned(),
            provenance: object.provenance.clone(),
            body: object.body.clone(),
            ..Entry::default()
        };
        let args: Vec<Value> = vec![
            "fill".into(),
            "".into(),
            Value::Bytes(entry.encode()?),
            pxat(self.keep_until(object)),
        ];
        let changed: i64 = self
            .script
            .evalsha_with_reload(&self.client, cache_key, args)
            .await
            .map_err(cache_error)?;
        Ok(changed == 1)
    }

    async fn evict(&self, cache_key: &str) -> Result<(), CacheError> {
        let _: i64 = self.client.del(cache_key).await.map_err(cache_error)?;
        Ok(())
    }

    async fn note(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.client.get(key).await.map_err(cache_error)
    }

    async fn set_note(
        &self,
        key: &str,
        value: Option<&str>,
        ttl: std::time::Duration,
    ) -> Result<(), CacheError> {
        match value {
            Some(value) => {
                let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
                self.client
                    .set::<(), _, _>(key, value, Some(Expiration::EX(seconds)), None, false)
                    .await
            }
            None => self.client.del::<(), _>(key).await,
        }
        .map_err(cache_error)
    }

    /// SCAN on every primary (KEYS is unavailable on ElastiCache Serverless).
    async fn keys(
        &self,
        prefix: &str,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<String>, CacheError> {
        use futures::{StreamExt, TryStreamExt};
        let pattern = format!("{}*", escape_glob(prefix));
        let scan = if self.client.is_clustered() {
            self.client
                .scan_cluster_buffered(pattern, Some(500), None)
                .boxed()
        } else {
            self.client.scan_buffered(pattern, Some(500), None).boxed()
        };
        scan.map_err(cache_error)
            .try_filter_map(|key| async move { Ok(key.into_string().filter(|k| keep(k))) })
            .try_collect()
            .await
    }

    async fn snapshot(&self, cache_key: &str) -> Result<Option<Snapshot>, CacheError> {
        let head = raw_value(self.client.getrange(cache_key, 0, HEADER_READ_MAX).await)?;
        // GETRANGE answers "" for an absent key; a value that is not an entry reads as absent, and reconcile's
        // fill then replaces it.
        Ok(head
            .as_ref()
            .and_then(Entry::decode)
            .map(|entry| entry.snapshot()))
    }

    async fn remove_if_unchanged(
        &self,
        cache_key: &str,
        expected: &Snapshot,
    ) -> Result<bool, CacheError> {
        let field = |f: &Option<String>| Value::from(f.clone().unwrap_or_default());
        let args: Vec<Value> = vec![
            "del_if".into(),
            field(&expected.sequencer),
            field(&expected.etag),
            field(&expected.tombstone),
        ];
        let changed: i64 = self
            .script
            .evalsha_with_reload(&self.client, cache_key, args)
            .await
            .map_err(cache_error)?;
        Ok(changed == 1)
    }
}

/// One sorted set under one key, so every command names one key and runs on the node owning its slot (cluster
/// mode refuses commands across slots); its score is the expiry, so the due members are one range read.
impl ExpiryIndex for ValkeyCache {
    async fn schedule(&self, member: &str, at: Expiry) -> Result<(), CacheError> {
        let args: Vec<Value> = vec![
            self.expiry_key.as_str().into(),
            at.unix_seconds().into(),
            member.into(),
        ];
        let _: i64 = self.sorted_set("ZADD", args).await?;
        Ok(())
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>, CacheError> {
        let args: Vec<Value> = vec![
            self.expiry_key.as_str().into(),
            "-inf".into(),
            now.into(),
            "LIMIT".into(),
            0.into(),
            (limit as i64).into(),
        ];
        self.sorted_set("ZRANGEBYSCORE", args).await
    }

    async fn unschedule(&self, member: &str) -> Result<(), CacheError> {
        let args: Vec<Value> = vec![self.expiry_key.as_str().into(), member.into()];
        let _: i64 = self.sorted_set("ZREM", args).await?;
        Ok(())
    }
}

impl ValkeyCache {
    /// A sorted-set command on the index key (its first argument), routed by that key's slot. As a custom command:
    /// these three are all s3kv uses of sorted sets, not worth fred's whole sorted-set interface.
    async fn sorted_set<R: FromValue>(
        &self,
        command: &'static str,
        args: Vec<Value>,
    ) -> Result<R, CacheError> {
        let command = fred::types::CustomCommand::new_static(
            command,
            fred::types::ClusterHash::FirstKey,
            false,
        );
        self.client.custom(command, args).await.map_err(cache_error)
    }
}

pub(super) fn cache_error(error: Error) -> CacheError {
    // "OOM command not allowed when used memory > 'maxmemory'": the server is at its cap (noeviction).
    if error.details().starts_with("OOM") {
        return CacheError::Full(error.details().to_owned());
    }
    match error.kind() {
        ErrorKind::InvalidArgument | ErrorKind::InvalidCommand | ErrorKind::Parse => {
            CacheError::Unexpected(error.to_string())
        }
        _ if not_a_string(&error)
            || error.details().contains("S3KV_SCRIPT_ERR")
            || error.details().starts_with("NOPERM") =>
        {
            CacheError::Unexpected(error.to_string())
        }
        _ => CacheError::Unavailable(Box::new(error)),
    }
}

/// fred's configuration for `url`. For a TLS scheme (`rediss…`, `valkeys…`) fred would read the system's root
/// certificates itself (the bundle and then the whole certificate directory, on every parse); the URL is parsed
/// in its plain form instead and given the process's roots ([`crate::adapters::tls`]: one bundle, decoded once,
/// the same the S3 client trusts).
fn parse_url(url: &str) -> Result<Config, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var: "VALKEY_URL",
        value: redact(url),
        reason,
    };
    let plain = plain_scheme(url);
    let mut config = Config::from_url(plain.as_deref().unwrap_or(url))
        .map_err(|e| invalid(e.details().to_string()))?;
    if plain.is_some() {
        let rustls = crate::adapters::tls::rustls_config().map_err(|e| invalid(e.to_string()))?;
        config.tls = Some(fred::types::config::TlsConnector::from(rustls).into());
    }
    Ok(config)
}

/// `url` with its TLS scheme (fred's: any starting `rediss` or `valkeys`) made plain, or `None` if it has none.
fn plain_scheme(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let lower = scheme.to_ascii_lowercase();
    ["rediss", "valkeys"].iter().find_map(|tls| {
        let suffix = lower.strip_prefix(tls)?;
        Some(format!("{}{suffix}://{rest}", &tls[..tls.len() - 1]))
    })
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_urls_are_parsed_plain_and_given_the_process_roots() {
        for (url, plain) in [
            ("valkeys://h:6379", Some("valkey://h:6379")),
            ("rediss://u:p@h:6380", Some("redis://u:p@h:6380")),
            (
                "valkeys-cluster://u@h:6379",
                Some("valkey-cluster://u@h:6379"),
            ),
            ("REDISS-cluster://h", Some("redis-cluster://h")),
            ("valkey://h:6379", None),
            ("redis-cluster://h", None),
            ("no scheme", None),
        ] {
            assert_eq!(plain_scheme(url).as_deref(), plain, "{url}");
        }
        let tls = parse_url("valkeys-cluster://u:p@h:6379").unwrap();
        assert!(tls.tls.is_some());
        assert_eq!(
            (tls.username.as_deref(), tls.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert!(matches!(tls.server, ServerConfig::Clustered { .. }));
        assert!(parse_url("valkey://h:6379").unwrap().tls.is_none());
    }

    #[test]
    fn the_script_reads_as_much_header_as_entries_can_have() {
        assert!(SCRIPT.contains(&format!("local HEADER_MAX = {HEADER_READ_MAX}\n")));
    }

    #[test]
    fn glob_characters_in_prefixes_are_escaped() {
        assert_eq!(escape_glob("s3kv:"), "s3kv:");
        assert_eq!(escape_glob("a*[b]?\\"), "a\\*\\[b\\]\\?\\\\");
    }

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(
            redact("valkeys://app:s3cret@h:6379"),
            "valkeys://app:***@h:6379"
        );
        assert_eq!(redact("valkey://h:6379"), "valkey://h:6379");
    }

    #[test]
    fn a_bad_url_names_the_variable_without_the_password() {
        let err = ValkeyCache::new("valkey://app:s3cret@:notaport", Duration::from_millis(50))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.starts_with("VALKEY_URL="), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
