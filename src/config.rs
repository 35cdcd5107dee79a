//! All configuration, read once from the environment into one validated struct.
//!
//! Every error names the variable, because the person reading it is looking at a template or a shell, not at
//! this code. The table in docs/src/configuration.md lists the same variables with the same defaults.

use std::time::Duration;

use thiserror::Error;

use crate::key::KeyMap;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var} is not set; {hint}")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `S3KV_BUCKET`: the bucket holding the items.
    pub bucket: String,
    /// `S3KV_PREFIX`: object key prefix for items (default empty).
    pub object_prefix: String,
    /// `S3KV_CACHE_PREFIX`: Valkey key prefix (default `s3kv:`).
    pub cache_prefix: String,
    /// `VALKEY_URL`: required by the syncer and the reader, unused by the writer.
    pub valkey_url: Option<String>,
    /// `S3KV_MAX_BODY_BYTES`: largest request body the writer accepts (default 1 MiB).
    pub max_body_bytes: usize,
    /// `S3KV_MAX_OBJECT_BYTES`: largest object the syncer caches and the reader serves (default 16 MiB).
    pub max_object_bytes: u64,
    /// `S3KV_CACHE_TIMEOUT_MS`: reader's Valkey command timeout before it bypasses to S3 (default 50).
    pub cache_timeout: Duration,
    /// `S3KV_SYNC_CACHE_TIMEOUT_MS`: syncer's Valkey command timeout; its writes carry whole documents (default 2000).
    pub sync_cache_timeout: Duration,
    /// `S3KV_S3_TIMEOUT_MS`: timeout of one S3 request attempt (default 5000).
    pub s3_timeout: Duration,
    /// `S3KV_TOMBSTONE_TTL_SECS`: how long a delete is remembered against late creates (default 86400).
    pub tombstone_ttl: Duration,
    /// `S3KV_SYNC_CONCURRENCY`: records of one event processed at once (default 16).
    pub sync_concurrency: usize,
    /// `AWS_ENDPOINT_URL_S3`: an S3-compatible endpoint; when set, path-style addressing is used.
    pub s3_endpoint: Option<String>,
    /// `S3KV_VALKEY_IAM_CACHE`: the ElastiCache Serverless cache name; when set, the `VALKEY_URL` user
    /// authenticates with IAM tokens signed by the function's role instead of a password.
    pub valkey_iam_cache: Option<String>,
    /// `AWS_REGION` (set by Lambda): the region IAM tokens are signed for.
    pub aws_region: Option<String>,
    /// `S3KV_CORS_ORIGIN`: the origin browsers may call the API from (`*` or `https://app.example.com`);
    /// unset, responses carry no CORS headers.
    pub cors_origin: Option<String>,
    /// `S3KV_METRICS_NAMESPACE`: CloudWatch namespace of the EMF metrics (default `s3kv`).
    pub metrics_namespace: String,
    /// `S3KV_METRICS`: `on` (default) or `off`, whether to write EMF metric lines.
    pub metrics: bool,
    /// `S3KV_API_KEYS`: the API keys' roles, a JSON object of key id to grant ([`crate::access`] parses it,
    /// in the API functions only, so a mistake there never stops the syncer).
    pub api_keys: Option<String>,
    /// `S3KV_EXTRA_API_KEYS`: more grants in the same form, the operator's (the template's `ExtraApiKeys`).
    pub extra_api_keys: Option<String>,
    /// `S3KV_PUBLIC_PREFIX`: items under this prefix may be read without an API key (`GET /public/{key}`).
    pub public_prefix: Option<String>,
    /// `S3KV_OFREP_PREFIX`: the item key prefix OpenFeature flag keys live under (default `flags/`): flag `beta`
    /// is the item `flags/beta` ([`crate::api`]'s OFREP routes).
    pub ofrep_prefix: String,
    /// `S3KV_FEED_RETENTION`: how many changes the change feed keeps (default 10,000; a cursor older than that
    /// answers 410).
    pub feed_retention: usize,
    /// `S3KV_MAX_WAIT_SECS`: the longest `?wait=` the reader honours, 0 to 25 (default 25; 0 answers every wait at
    /// once). Each waiting request holds one reader instance, so small accounts may want it lower.
    pub max_wait: Duration,
    /// `S3KV_PUSH_ENDPOINT`: the notifier's AppSync Event API, its HTTP domain (`Dns.Http`) or a base URL; the
    /// notifier publishes each change to `<endpoint>/event`.
    pub push_endpoint: Option<String>,
}

/// `S3KV_CACHE_PREFIX`, `S3KV_OFREP_PREFIX` and `S3KV_FEED_RETENTION` when unset.
pub const DEFAULT_CACHE_PREFIX: &str = "s3kv:";
pub const DEFAULT_OFREP_PREFIX: &str = "flags/";
pub const DEFAULT_FEED_RETENTION: u64 = 10_000;
/// `S3KV_TOMBSTONE_TTL_SECS`'s default.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(86_400);

/// API Gateway ends an integration after 29 s; a wait must end, and answer, before that.
pub const MAX_WAIT_SECS: u64 = 25;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.is_empty());
        let bucket = get("S3KV_BUCKET").ok_or(ConfigError::Missing {
            var: "S3KV_BUCKET",
            hint: "set it to the name of the items bucket",
        })?;
        let object_prefix = get("S3KV_PREFIX").unwrap_or_default();
        if object_prefix.len() > 500 || object_prefix.starts_with('/') {
            return Err(invalid(
                "S3KV_PREFIX",
                &object_prefix,
                "use at most 500 bytes and no leading '/'",
            ));
        }
        let cache_prefix =
            get("S3KV_CACHE_PREFIX").unwrap_or_else(|| DEFAULT_CACHE_PREFIX.to_owned());
        let valkey_url = get("VALKEY_URL");
        if let Some(url) = &valkey_url {
            let scheme = url.split("://").next().unwrap_or_default();
            let known = ["redis", "rediss", "valkey", "valkeys"]
                .iter()
                .any(|s| scheme == *s || scheme.strip_suffix("-cluster") == Some(s));
            if !url.contains("://") || !known {
                return Err(invalid(
                    "VALKEY_URL",
                    url,
                    "expected valkey[s]://[user:password@]host:port, or valkey[s]-cluster://... for cluster mode",
                ));
            }
        }
        let positive = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(var, &v, "expected a whole number greater than 0")),
            }
        };
        let ms = |var, default| positive(var, default).map(Duration::from_millis);
        let metrics = match get("S3KV_METRICS").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(invalid("S3KV_METRICS", other, "expected on or off")),
        };
        let cors_origin = get("S3KV_CORS_ORIGIN");
        if let Some(origin) = &cors_origin {
            let visible = origin.bytes().all(|b| b.is_ascii_graphic());
            if !visible || origin.contains(',') {
                return Err(invalid(
                    "S3KV_CORS_ORIGIN",
                    origin,
                    "expected * or one origin such as https://app.example.com",
                ));
            }
        }
        Ok(Self {
            bucket,
            object_prefix,
            cache_prefix,
            valkey_url,
            max_body_bytes: positive("S3KV_MAX_BODY_BYTES", 1024 * 1024)? as usize,
            max_object_bytes: positive("S3KV_MAX_OBJECT_BYTES", 16 * 1024 * 1024)?,
            cache_timeout: ms("S3KV_CACHE_TIMEOUT_MS", 50)?,
            sync_cache_timeout: ms("S3KV_SYNC_CACHE_TIMEOUT_MS", 2000)?,
            s3_timeout: ms("S3KV_S3_TIMEOUT_MS", 5000)?,
            tombstone_ttl: Duration::from_secs(positive(
                "S3KV_TOMBSTONE_TTL_SECS",
                DEFAULT_TOMBSTONE_TTL.as_secs(),
            )?),
            sync_concurrency: positive("S3KV_SYNC_CONCURRENCY", 16)? as usize,
            s3_endpoint: get("AWS_ENDPOINT_URL_S3"),
            valkey_iam_cache: get("S3KV_VALKEY_IAM_CACHE"),
            aws_region: get("AWS_REGION"),
            cors_origin,
            metrics_namespace: get("S3KV_METRICS_NAMESPACE").unwrap_or_else(|| "s3kv".to_owned()),
            metrics,
            api_keys: get("S3KV_API_KEYS"),
            extra_api_keys: get("S3KV_EXTRA_API_KEYS"),
            public_prefix: get("S3KV_PUBLIC_PREFIX"),
            ofrep_prefix: match get("S3KV_OFREP_PREFIX") {
                None => DEFAULT_OFREP_PREFIX.to_owned(),
                Some(v) => match crate::key::KeyPrefix::parse(&v) {
                    Ok(_) => v,
                    Err(e) => return Err(invalid("S3KV_OFREP_PREFIX", &v, &e.to_string())),
                },
            },
            feed_retention: positive("S3KV_FEED_RETENTION", DEFAULT_FEED_RETENTION)? as usize,
            max_wait: Duration::from_secs(match get("S3KV_MAX_WAIT_SECS") {
                None => MAX_WAIT_SECS,
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= MAX_WAIT_SECS)
                    .ok_or_else(|| {
                        invalid(
                            "S3KV_MAX_WAIT_SECS",
                            &v,
                            "expected a whole number from 0 to 25",
                        )
                    })?,
            }),
            push_endpoint: get("S3KV_PUSH_ENDPOINT"),
        })
    }

    /// The reader and the syncer cannot work without Valkey; the writer never asks.
    pub fn require_valkey_url(&self) -> Result<&str, ConfigError> {
        self.valkey_url.as_deref().ok_or(ConfigError::Missing {
            var: "VALKEY_URL",
            hint: "set it to the cache endpoint, e.g. valkeys-cluster://user:password@host:6379",
        })
    }

    /// The region for IAM tokens: required only when IAM authentication is on.
    pub fn require_region(&self) -> Result<&str, ConfigError> {
        self.aws_region.as_deref().ok_or(ConfigError::Missing {
            var: "AWS_REGION",
            hint: "S3KV_VALKEY_IAM_CACHE needs the region to sign tokens for (Lambda sets AWS_REGION itself)",
        })
    }

    /// The notifier cannot publish without its Event API.
    pub fn require_push_endpoint(&self) -> Result<&str, ConfigError> {
        self.push_endpoint.as_deref().ok_or(ConfigError::Missing {
            var: "S3KV_PUSH_ENDPOINT",
            hint: "set it to the AppSync Event API's HTTP domain (the template's PushApi Dns.Http)",
        })
    }

    pub fn key_map(&self) -> KeyMap {
        KeyMap::new(&self.object_prefix, &self.cache_prefix)
    }
}

fn invalid(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    /// The variables [`Config`] reads, in the order it asks for them.
    fn variables_read() -> Vec<String> {
        let asked = std::cell::RefCell::new(Vec::new());
        Config::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            (name == "S3KV_BUCKET").then(|| "b".to_owned())
        })
        .unwrap();
        asked.into_inner()
    }

    /// The docs page whose configuration table a test holds to [`Config`].
    const CONFIG_DOC: &str = "docs/src/configuration.md";
    /// Documented variables that other code reads: the AWS SDK, the log subscriber, Lambda.
    const READ_ELSEWHERE: &[&str] = &["AWS_ENDPOINT_URL_S3", "AWS_REGION", "RUST_LOG"];

    #[test]
    fn the_docs_configuration_table_lists_exactly_the_variables_read() {
        let docs = std::fs::read_to_string(format!("{}/{CONFIG_DOC}", env!("CARGO_MANIFEST_DIR")))
            .expect("the configuration page");
        let table = docs
            .split("| Variable | Default | Used by | Meaning |")
            .nth(1)
            .expect("a configuration table");
        let documented: std::collections::BTreeSet<&str> = table
            .lines()
            .skip(2)
            .map_while(|line| line.strip_prefix("| `"))
            .filter_map(|line| line.split('`').next())
            .collect();
        let mut read: std::collections::BTreeSet<String> = variables_read().into_iter().collect();
        read.extend(READ_ELSEWHERE.iter().map(|v| (*v).to_owned()));
        let read: std::collections::BTreeSet<&str> = read.iter().map(String::as_str).collect();
        assert_eq!(documented, read, "{CONFIG_DOC}'s configuration table");
    }

    #[test]
    fn defaults_apply_when_only_the_bucket_is_set() {
        let c = load(&[("S3KV_BUCKET", "b")]).unwrap();
        assert_eq!(
            (c.object_prefix.as_str(), c.cache_prefix.as_str()),
            ("", "s3kv:")
        );
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.cache_timeout, Duration::from_millis(50));
        assert_eq!(c.tombstone_ttl, Duration::from_secs(86_400));
        assert_eq!(c.valkey_url, None);
        assert_eq!(
            (c.feed_retention, c.max_wait),
            (10_000, Duration::from_secs(25))
        );
        assert!(load(&[("S3KV_BUCKET", "b"), ("S3KV_MAX_WAIT_SECS", "26")]).is_err());
        assert_eq!(
            load(&[("S3KV_BUCKET", "b"), ("S3KV_MAX_WAIT_SECS", "0")])
                .unwrap()
                .max_wait,
            Duration::ZERO
        );
    }

    #[test]
    fn missing_bucket_names_the_variable() {
        let err = load(&[]).unwrap_err();
        assert!(
            err.to_string().starts_with("S3KV_BUCKET is not set"),
            "{err}"
        );
    }

    #[test]
    fn bad_numbers_name_the_variable_and_value() {
        let err = load(&[("S3KV_BUCKET", "b"), ("S3KV_CACHE_TIMEOUT_MS", "fast")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "S3KV_CACHE_TIMEOUT_MS=\"fast\" is invalid: expected a whole number greater than 0"
        );
        assert!(load(&[("S3KV_BUCKET", "b"), ("S3KV_MAX_BODY_BYTES", "0")]).is_err());
    }

    #[test]
    fn valkey_url_forms() {
        for ok in [
            "valkey://h:6379",
            "valkeys://u:p@h:6379",
            "valkeys-cluster://u:p@h:6379",
            "redis://h",
            "rediss-cluster://h",
        ] {
            assert!(
                load(&[("S3KV_BUCKET", "b"), ("VALKEY_URL", ok)]).is_ok(),
                "{ok}"
            );
        }
        for bad in ["h:6379", "http://h", "valkey-sentinel://h"] {
            let err = load(&[("S3KV_BUCKET", "b"), ("VALKEY_URL", bad)]).unwrap_err();
            assert!(err.to_string().starts_with("VALKEY_URL="), "{err}");
        }
        let c = load(&[("S3KV_BUCKET", "b")]).unwrap();
        assert!(c
            .require_valkey_url()
            .unwrap_err()
            .to_string()
            .starts_with("VALKEY_URL is not set"));
    }

    #[test]
    fn prefix_with_leading_slash_is_rejected() {
        assert!(load(&[("S3KV_BUCKET", "b"), ("S3KV_PREFIX", "/items/")]).is_err());
        assert_eq!(
            load(&[("S3KV_BUCKET", "b"), ("S3KV_PREFIX", "items/")])
                .unwrap()
                .object_prefix,
            "items/"
        );
    }
}
