//! [`Cache`] over fred: one hash per item, every write through one Lua script on that one key.
//!
//! Works unchanged against a single node or a cluster (ElastiCache Serverless is always a cluster): a script
//! names its only key in KEYS, so it runs on the node owning that key's slot.

use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::scripts::Script;

use crate::adapters::iam_auth::IamTokenProvider;
use crate::config::ConfigError;
use crate::ports::{Applied, Cache, CacheChange, CacheError, CacheLookup, Etag, Object, Snapshot};
use crate::sequencer::Sequencer;

const SCRIPT: &str = include_str!("cache.lua");

#[derive(Clone)]
pub struct ValkeyCache {
    client: Client,
    script: Script,
}

impl ValkeyCache {
    /// Builds a client for `url` (any of fred's URL forms: `valkey://`, `valkeys://`, `valkey-cluster://`,
    /// `valkeys-cluster://`, with `user:password@`). Does not connect; see [`ValkeyCache::connect`].
    ///
    /// `command_timeout` bounds each command, including one issued while disconnected, so callers fall back within
    /// it. The client reconnects forever with capped exponential backoff, from the very first connection too
    /// (`fail_fast = false`): a Lambda that cold-starts while Valkey is unreachable, or is thawed after minutes
    /// frozen with a dead socket, recovers on its own.
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
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let credentials = aws.credentials_provider().ok_or(ConfigError::Missing {
                var: "AWS_ACCESS_KEY_ID",
                hint: "IAM authentication to Valkey needs AWS credentials (the function's role provides them)",
            })?;
            let provider =
                IamTokenProvider::new(&user, cache_name, config.require_region()?, credentials);
            valkey.password = None;
            valkey.credential_provider = Some(std::sync::Arc::new(provider));
        }
        Self::build(valkey, url, command_timeout)
    }

    fn build(config: Config, url: &str, command_timeout: Duration) -> Result<Self, ConfigError> {
        let client = Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = command_timeout)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 2;
            })
            .with_config(|c| c.fail_fast = false)
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build()
            .map_err(|e| ConfigError::Invalid {
                var: "VALKEY_URL",
                value: redact(url),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            script: Script::from_lua(SCRIPT),
        })
    }

    /// Starts the connection task and waits up to `wait` for it. Never fails: if Valkey is down, the client keeps
    /// reconnecting in the background and callers get `CacheError::Unavailable` until it is back.
    pub async fn connect(&self, wait: Duration) {
        let _task = self.client.connect();
        match tokio::time::timeout(wait, self.client.wait_for_connect()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "Valkey not reachable yet; reconnecting in the background")
            }
            Err(_) => tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                "Valkey not reachable yet; reconnecting in the background"
            ),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
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

/// The hash fields a read needs: body, ETag, and the tombstone marker.
const LOOKUP_FIELDS: [&str; 3] = ["b", "e", "d"];

fn decode_lookup(fields: Vec<Option<Bytes>>) -> Result<CacheLookup, CacheError> {
    Ok(match fields.as_slice() {
        [Some(body), etag, _] => CacheLookup::Hit(Object {
            body: body.clone(),
            etag: Etag::new(
                std::str::from_utf8(etag.as_deref().unwrap_or_default()).unwrap_or_default(),
            ),
        }),
        [None, _, Some(_)] => CacheLookup::Tombstone,
        [None, _, None] => CacheLookup::Miss,
        other => {
            return Err(CacheError::Unexpected(format!(
                "HMGET returned {} fields",
                other.len()
            )))
        }
    })
}

impl Cache for ValkeyCache {
    async fn lookup(&self, cache_key: &str) -> Result<CacheLookup, CacheError> {
        let fields: Vec<Option<Bytes>> = self
            .client
            .hmget(cache_key, LOOKUP_FIELDS.to_vec())
            .await
            .map_err(cache_error)?;
        decode_lookup(fields)
    }

    /// One pipeline: fred writes each command to the node owning its key without waiting for answers, so a
    /// batch costs one round trip per node involved.
    async fn lookup_many(&self, cache_keys: &[String]) -> Result<Vec<CacheLookup>, CacheError> {
        let pipeline = self.client.pipeline();
        for cache_key in cache_keys {
            let () = pipeline
                .hmget(cache_key.as_str(), LOOKUP_FIELDS.to_vec())
                .await
                .map_err(cache_error)?;
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
            .map(|answer| {
                let fields: Vec<Option<Bytes>> =
                    answer.and_then(|v| v.convert()).map_err(cache_error)?;
                decode_lookup(fields)
            })
            .collect()
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
                vec![
                    "put".into(),
                    seq,
                    object.etag.as_str().into(),
                    Value::Bytes(object.body.clone()),
                ]
            }
            CacheChange::Tombstone { reason, ttl } => {
                let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                vec![
                    "tomb".into(),
                    seq,
                    (*reason).into(),
                    "".into(),
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
        let args: Vec<Value> = vec![
            "fill".into(),
            "".into(),
            object.etag.as_str().into(),
            Value::Bytes(object.body.clone()),
        ];
        let changed: i64 = self
            .script
            .evalsha_with_reload(&self.client, cache_key, args)
            .await
            .map_err(cache_error)?;
        Ok(changed == 1)
    }

    /// SCAN on every primary (KEYS is unavailable on ElastiCache Serverless).
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        use futures::TryStreamExt;
        let pattern = format!("{}*", escape_glob(prefix));
        let keys: Vec<Key> = if self.client.is_clustered() {
            self.client
                .scan_cluster_buffered(pattern, Some(500), None)
                .try_collect()
                .await
        } else {
            self.client
                .scan_buffered(pattern, Some(500), None)
                .try_collect()
                .await
        }
        .map_err(cache_error)?;
        Ok(keys.into_iter().filter_map(|k| k.into_string()).collect())
    }

    async fn snapshot(&self, cache_key: &str) -> Result<Option<Snapshot>, CacheError> {
        let fields: Vec<Option<String>> = self
            .client
            .hmget(cache_key, vec!["s", "e", "d"])
            .await
            .map_err(cache_error)?;
        Ok(match fields.as_slice() {
            [None, None, None] => None,
            [s, e, d] => Some(Snapshot {
                sequencer: s.clone(),
                etag: e.clone(),
                tombstone: d.clone(),
            }),
            other => {
                return Err(CacheError::Unexpected(format!(
                    "HMGET returned {} fields",
                    other.len()
                )))
            }
        })
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

fn cache_error(error: Error) -> CacheError {
    match error.kind() {
        ErrorKind::InvalidArgument | ErrorKind::InvalidCommand | ErrorKind::Parse => {
            CacheError::Unexpected(error.to_string())
        }
        _ if error.details().starts_with("WRONGTYPE")
            || error.details().contains("S3KV_SCRIPT_ERR") =>
        {
            CacheError::Unexpected(error.to_string())
        }
        _ => CacheError::Unavailable(Box::new(error)),
    }
}

fn parse_url(url: &str) -> Result<Config, ConfigError> {
    Config::from_url(url).map_err(|e| ConfigError::Invalid {
        var: "VALKEY_URL",
        value: redact(url),
        reason: e.details().to_string(),
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
