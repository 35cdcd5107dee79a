//! `s3kv-local`: the whole architecture on 127.0.0.1, in one process, with no AWS account.
//!
//! * an S3 endpoint (s3s + s3s-fs over a data directory) speaking the real S3 protocol, so the aws CLI and SDKs
//!   work against it, and emitting AWS-shaped notifications after every change ([`s3_endpoint`]);
//! * the [`outbox`] of those notifications: sequencers, a backlog count, and at-least-once delivery to the
//!   syncer handler;
//! * the REST API with API Gateway's key check, calling the writer and reader handlers ([`gateway`]), and the
//!   web console beside it at `/console/` ([`console`]);
//! * Valkey: `VALKEY_URL`, or a private `valkey-server` child process ([`testkit::Valkey`], the one the tests
//!   start) on a reserved port.
//!
//! The handlers are the ones the Lambda functions run, talking to the S3 endpoint over HTTP like in AWS.

pub mod console;
pub mod gateway;
mod key_index;
mod keys;
pub mod outbox;
pub mod push;
pub mod s3_endpoint;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timeouts;
pub mod versions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::config::{Config, ConfigError};
use s3kv::read::Reader;
use s3kv::reap::Reaper;
use s3kv::reconcile::Reconciler;
use s3kv::sync::Syncer;
use s3kv::write::Writer;

use gateway::Gateway;
use keys::{local_keys, parse_key_spec, parse_key_value};
pub use keys::{KeySpec, LocalKey, KEY_LENGTHS};
use outbox::{Backlog, Outbox};
use s3_endpoint::NotifyingFs;

/// Credentials the local S3 endpoint accepts (it checks SigV4 signatures like S3 does).
pub const ACCESS_KEY: &str = "s3kv-local";
pub const SECRET_KEY: &str = "s3kv-local-secret";
pub const REGION: &str = "us-east-1";

#[derive(Debug, Error)]
pub enum LocalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start valkey-server: {0}")]
    Valkey(#[from] testkit::StartError),
    #[error("cannot reconcile the cache with the bucket: {0}")]
    Reload(String),
    #[error("{0}")]
    Keys(String),
}

/// What `s3kv-local` runs with: flags first, then environment variables, then defaults.
#[derive(Debug, Clone, PartialEq, Eq, clap::Parser)]
#[command(
    name = "s3kv-local",
    about = "The whole s3kv stack on 127.0.0.1: S3 endpoint, notifications, syncer, API and Valkey"
)]
pub struct Options {
    /// API listen address
    #[arg(long, env = "S3KV_API_ADDR", default_value = "127.0.0.1:3000")]
    pub api_addr: SocketAddr,
    /// S3 endpoint address
    #[arg(long, env = "S3KV_S3_ADDR", default_value = "127.0.0.1:9000")]
    pub s3_addr: SocketAddr,
    /// Where objects are stored
    #[arg(long, env = "S3KV_DATA_DIR", default_value = ".s3kv-data")]
    pub data_dir: PathBuf,
    /// Bucket name
    #[arg(long, env = "S3KV_BUCKET", default_value = "s3kv")]
    pub bucket: String,
    /// Item key prefix
    #[arg(long, env = "S3KV_PREFIX", default_value = "")]
    pub prefix: String,
    /// An x-api-key value with full access, 20 to 128 visible ASCII characters [default: generated and printed]
    #[arg(long, env = "S3KV_API_KEY", value_parser = parse_key_value)]
    pub api_key: Option<String>,
    /// An x-api-key value that may only read (repeatable)
    #[arg(long = "read-key", value_name = "KEY", value_parser = parse_key_spec)]
    pub read_keys: Vec<KeySpec>,
    /// An x-api-key value that may read and write, limited to these item key prefixes if given (repeatable)
    #[arg(long = "write-key", value_name = "KEY[:PREFIX,...]", value_parser = parse_key_spec)]
    pub write_keys: Vec<KeySpec>,
    /// Items under this prefix may be read without a key, at /public/{key}
    #[arg(long, env = "S3KV_PUBLIC_PREFIX")]
    pub public_prefix: Option<String>,
    /// The longest ?wait= in seconds, 0 to 25 (0 answers every wait at once)
    #[arg(long, env = "S3KV_MAX_WAIT_SECS", default_value_t = s3kv::config::MAX_WAIT_SECS)]
    pub max_wait_secs: u64,
    /// Use this Valkey [default: a private valkey-server]
    #[arg(long, env = "VALKEY_URL")]
    pub valkey_url: Option<String>,
    /// The origin browsers may call the API from (Access-Control-Allow-Origin) [default: *]
    #[arg(long, env = "S3KV_CORS_ORIGIN")]
    pub cors_origin: Option<String>,
}

impl Options {
    /// A stack for tests and tools on free loopback ports, with `data_dir` and no keys but the generated one:
    /// set what a test needs with struct update syntax (`Options { read_keys, ..Options::loopback(dir) }`), so a
    /// new option changes one place.
    pub fn loopback(data_dir: PathBuf) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            api_addr: any,
            s3_addr: any,
            data_dir,
            bucket: "s3kv".into(),
            prefix: String::new(),
            api_key: None,
            read_keys: Vec::new(),
            write_keys: Vec::new(),
            public_prefix: None,
            max_wait_secs: s3kv::config::MAX_WAIT_SECS,
            valkey_url: None,
            cors_origin: None,
        }
    }
}

/// How often s3kv-local's reaper looks for expired items (the template's schedule: every minute).
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// What tests turn and the command line does not.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How long a request head, or a gap in a request body, may take on either server before the connection is
    /// closed (a head) or the request failed (a body: 408 from the API, an error from the S3 endpoint).
    pub read_timeout: Duration,
    /// How often the reaper runs. A test that must see an expired item before its object is deleted sets this
    /// long and reaps with [`LocalStack::reap_now`] (the reaper's first run is at start, before anything expired).
    pub reap_interval: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            read_timeout: timeouts::READ_TIMEOUT,
            reap_interval: REAP_INTERVAL,
        }
    }
}

/// A running local stack. Dropping it stops the servers and the private valkey-server.
pub struct LocalStack {
    pub api_addr: SocketAddr,
    pub s3_addr: SocketAddr,
    /// The full-access key (`--api-key`, or generated).
    pub api_key: String,
    /// Every key and what it may do, the full-access key first.
    pub keys: Vec<LocalKey>,
    pub public_prefix: Option<String>,
    pub bucket: String,
    pub valkey_url: String,
    pub backlog: Arc<Backlog>,
    pub push: Arc<push::Hub>,
    reaper: Arc<Reaper<S3Store, ValkeyCache>>,
    tasks: Vec<JoinHandle<()>>,
    _valkey: Option<testkit::Valkey>,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl LocalStack {
    pub async fn start(options: Options) -> Result<Self, LocalError> {
        Self::start_tuned(options, Tuning::default()).await
    }

    pub async fn start_tuned(options: Options, tuning: Tuning) -> Result<Self, LocalError> {
        let read_timeout = tuning.read_timeout;
        let api_key = options.api_key.clone().unwrap_or_else(generate_api_key);
        let keys = local_keys(&options, &api_key)?;
        let bucket_dir = options.data_dir.join(&options.bucket);
        std::fs::create_dir_all(&bucket_dir).map_err(|source| LocalError::DataDir {
            dir: bucket_dir.clone(),
            source,
        })?;
        let backlog = Arc::new(Backlog::default());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let outbox = Outbox::new(tx, backlog.clone());

        // S3 endpoint.
        let s3_service =
            NotifyingFs::service(&options.data_dir, outbox.clone()).map_err(|source| {
                LocalError::DataDir {
                    dir: options.data_dir.clone(),
                    source,
                }
            })?;
        let s3_listener = bind(options.s3_addr).await?;
        let s3_addr = s3_listener
            .local_addr()
            .map_err(|source| LocalError::Bind {
                addr: options.s3_addr,
                source,
            })?;
        let s3_builder = timeouts::builder(read_timeout);
        let mut tasks = vec![tokio::spawn(serve(s3_listener, move |io| {
            let service = s3_service.clone();
            let builder = s3_builder.clone();
            async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let service = service.clone();
                        let request = request.map(|body| {
                            s3s::Body::http_body_unsync(timeouts::IdleBody::new(body, read_timeout))
                        });
                        async move { service.call(request).await }
                    },
                );
                let _ = builder.serve_connection(io, service).await;
            }
        }))];

        // Valkey.
        let (valkey_url, valkey_child) = match &options.valkey_url {
            Some(url) => (url.clone(), None),
            None => {
                let valkey = tokio::task::spawn_blocking(|| {
                    testkit::Valkey::try_start(testkit::valkey::Options::default())
                })
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
                (valkey.url(), Some(valkey))
            }
        };

        // The functions, configured as in AWS but pointed at the local endpoint.
        let env = |name: &str| match name {
            "S3KV_BUCKET" => Some(options.bucket.clone()),
            "S3KV_PREFIX" => Some(options.prefix.clone()),
            "VALKEY_URL" => Some(valkey_url.clone()),
            "AWS_ENDPOINT_URL_S3" => Some(format!("http://{s3_addr}")),
            "S3KV_MAX_WAIT_SECS" => Some(options.max_wait_secs.to_string()),
            // Browser apps under development call the local API from their own dev server's origin.
            "S3KV_CORS_ORIGIN" => Some(
                options
                    .cors_origin
                    .clone()
                    .unwrap_or_else(|| "*".to_owned()),
            ),
            // There is no CloudWatch here to read EMF lines; they would bury the log.
            "S3KV_METRICS" => std::env::var(name).ok().or_else(|| Some("off".to_owned())),
            other => std::env::var(other).ok(),
        };
        let config = Config::from_lookup(env)?;
        let store = S3Store::new(s3_client(s3_addr, &config), &config.bucket);
        let reader_cache = ValkeyCache::new(&valkey_url, config.cache_timeout)?.with_feed(&config);
        let syncer_cache =
            ValkeyCache::new(&valkey_url, config.sync_cache_timeout)?.with_feed(&config);
        reader_cache.connect(Duration::from_secs(5)).await;
        syncer_cache.connect(Duration::from_secs(5)).await;
        // The cache may be fresh (a private valkey-server) or hold what an earlier run left: make it match the
        // bucket before serving, as the scheduled reconcile does in AWS.
        let reconciler = Reconciler::new(store.clone(), syncer_cache.clone(), &config);
        let report = reconciler
            .run(std::time::Instant::now() + Duration::from_secs(300))
            .await;
        match report {
            Ok(report) => tracing::info!(?report, "cache reconciled with the bucket"),
            // Some keys could not be read: each is named in the log, reads of them go to the bucket and fail
            // there, and every other key is served. One bad object must not keep the stack from starting.
            Err(s3kv::reconcile::ReconcileError::Partial { first, report }) => {
                tracing::error!(?report, first_error = %first, "{} keys could not be reconciled; serving the rest", report.failed)
            }
            Err(e) => return Err(LocalError::Reload(e.to_string())),
        }
        // Push: the hub stands in for AppSync Events; the notifier publishes each change once it is synced.
        let public_prefix = options.public_prefix.clone().filter(|p| !p.is_empty());
        let access = s3kv::access::Access::new(
            keys.iter().map(|k| (k.id.clone(), k.grant.clone())),
            public_prefix.clone(),
        );
        let key_ids: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.value.clone(), k.id.clone()))
            .collect();
        let push = push::Hub::new(access.clone(), key_ids.clone());
        let notifier = Arc::new(s3kv::push::Notifier::new(
            store.clone(),
            push.clone(),
            &config,
        ));
        // The reaper, as the scheduled function in AWS but every REAP_INTERVAL: an expired item's object is
        // deleted a second or so after its expiry.
        let reaper = Arc::new(Reaper::new(store.clone(), syncer_cache.clone(), &config));
        let scheduled = reaper.clone();
        tasks.push(tokio::spawn(async move {
            let reaper = scheduled;
            let mut tick = tokio::time::interval(tuning.reap_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match reaper.run(Instant::now() + Duration::from_secs(60)).await {
                    Ok(report) if report.due > 0 => tracing::info!(?report, "reaped"),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "reaper run failed; the next one tries again")
                    }
                }
            }
        }));
        let syncer = Arc::new(Syncer::new(store.clone(), syncer_cache, &config));
        tasks.push(tokio::spawn(outbox::run(
            syncer,
            notifier,
            rx,
            backlog.clone(),
        )));

        // API.
        let gateway = Arc::new(Gateway {
            keys: key_ids,
            push: push.clone(),
            access,
            cors: s3kv::api::Cors::from_config(&config),
            bucket: config.bucket.clone(),
            key_map: config.key_map(),
            data_dir: options.data_dir.clone(),
            read_timeout,
            writer: Writer::new(store.clone(), &config),
            reader: Reader::new(store, reader_cache, &config),
        });
        let api_listener = bind(options.api_addr).await?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| LocalError::Bind {
                addr: options.api_addr,
                source,
            })?;
        let api_builder = timeouts::builder(read_timeout);
        tasks.push(tokio::spawn(serve(api_listener, move |io| {
            let gateway = gateway.clone();
            let builder = api_builder.clone();
            async move {
                let service =
                    hyper::service::service_fn(move |request| gateway.clone().serve(request));
                // With upgrades: push subscriptions upgrade their connection to a WebSocket (crate::push).
                let _ = builder.serve_connection_with_upgrades(io, service).await;
            }
        })));

        Ok(Self {
            api_addr,
            s3_addr,
            api_key,
            keys,
            public_prefix,
            bucket: options.bucket,
            valkey_url,
            backlog,
            push,
            reaper,
            tasks,
            _valkey: valkey_child,
        })
    }

    /// One reaper run now, as the schedule would (see [`Tuning::reap_interval`]).
    pub async fn reap_now(&self) -> Result<s3kv::reap::ReapReport, s3kv::reap::ReapError> {
        self.reaper
            .run(Instant::now() + Duration::from_secs(60))
            .await
    }

    /// Closes every push connection, as a lost network would: clients reconnect and catch up.
    pub fn drop_push_connections(&self) {
        self.push.drop_connections();
    }

    /// The push endpoint's URL (AppSync Events' protocol; the auth header's `host` is the API's address).
    pub fn push_url(&self) -> String {
        format!("ws://{}{}", self.api_addr, push::PATH)
    }

    /// The private valkey-server's process id, when the stack started one.
    pub fn valkey_pid(&self) -> Option<u32> {
        self._valkey.as_ref().and_then(testkit::Valkey::pid)
    }

    /// What to print on start: endpoints, keys and what each may do, and three commands to try.
    pub fn banner(&self) -> String {
        let (api, s3, key, bucket) = (self.api_addr, self.s3_addr, &self.api_key, &self.bucket);
        let mut keys = String::new();
        for local in &self.keys {
            let what = match local.grant.role {
                s3kv::access::Role::Read => "read",
                s3kv::access::Role::Write => "read, write",
            };
            let scope = match local.grant.prefixes.as_slice() {
                [] => "every item".to_owned(),
                prefixes => format!("items under {}", prefixes.join(", ")),
            };
            let name = local.grant.name.as_deref().unwrap_or_default();
            keys.push_str(&format!("  {name:<12} {}  {what}, {scope}\n", local.value));
        }
        if let Some(prefix) = &self.public_prefix {
            keys.push_str(&format!(
                "  {:<12} (none)  read items under {prefix} at http://{api}/public/{{key}}\n",
                "public"
            ));
        }
        format!(
            "s3kv is running locally\n\n  API        http://{api}/items/{{key}}\n  S3         http://{s3}  bucket {bucket}  (access key {ACCESS_KEY}, secret {SECRET_KEY}, region {REGION})\n  Push       ws://{api}{push_path}  (AppSync Events' protocol; auth host {api})\n  Console    http://{api}/console/  (asks for a key below)\n  Valkey     {valkey}\n\nAPI keys (x-api-key):\n{keys}\nThe CLI (scripts/s3kv, or s3kv once installed with cargo install --path crates/s3kv-cli):\n  export S3KV_ENDPOINT=http://{api} S3KV_API_KEY={key}\n  echo '{{\"enabled\": true}}' | scripts/s3kv put flags/maintenance\n  scripts/s3kv get flags/maintenance\n\nTry:\n  curl -X PUT -H 'x-api-key: {key}' -d '{{\"enabled\": true}}' http://{api}/items/flags/maintenance\n  echo '{{\"hello\": \"s3\"}}' > hello.json && AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_DEFAULT_REGION={REGION} aws --endpoint-url http://{s3} s3 cp hello.json s3://{bucket}/docs/hello.json\n  curl -H 'x-api-key: {key}' http://{api}/items/docs/hello\n\nWatch (in another terminal, then write again):\n  curl -H 'x-api-key: {key}' 'http://{api}/changes?wait=25'\n\nCtrl-C stops everything; objects stay in the data directory.\n",
            valkey = self.valkey_url,
            push_path = push::PATH,
        )
    }

    /// Stops accepting, then gives in-flight syncs a moment to finish.
    pub async fn shutdown(self) {
        if !self.backlog.wait_idle(Duration::from_secs(5)).await {
            tracing::warn!(
                pending = self.backlog.pending(),
                "stopping with notifications not yet synced; the next start reloads the cache"
            );
        }
    }
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP: every way a terminal, a process manager or `kill` asks a process to stop,
/// so that each one stops the stack and its valkey-server (SIGKILL cannot be caught: see
/// [`testkit::ChildServer`], whose children die with their parent).
pub async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, hangup) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut term), Ok(mut hangup)) = (term, hangup) else {
        tracing::warn!("SIGTERM and SIGHUP cannot be handled; only Ctrl-C stops the stack cleanly");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hangup.recv() => {}
    }
}

/// A client for the local endpoint, with the stack's credentials (whatever AWS credentials the user has set).
pub fn s3_client(s3_addr: SocketAddr, config: &Config) -> aws_sdk_s3::Client {
    s3kv::adapters::s3::endpoint_client(
        &format!("http://{s3_addr}"),
        ACCESS_KEY,
        SECRET_KEY,
        config.s3_timeout,
    )
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, LocalError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| LocalError::Bind { addr, source })
}

async fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TokioIo<tokio::net::TcpStream>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                // Answer without Nagle's algorithm, as S3 and API Gateway do: with it, a response written in two
                // parts waits for the client's delayed ACK, 40 ms per request (BENCHMARKS.md, propagation).
                if let Err(error) = socket.set_nodelay(true) {
                    tracing::warn!(%error, "TCP_NODELAY not set");
                }
                tokio::spawn(handle(TokioIo::new(socket)));
            }
            Err(error) => tracing::warn!(%error, "accept failed"),
        }
    }
}

fn generate_api_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..2)
        .map(|i| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(i);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    pub(crate) fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("s3kv-local").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.api_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(o.s3_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(
            (o.bucket.as_str(), o.api_key, o.valkey_url),
            ("s3kv", None, None)
        );
    }

    #[test]
    fn flags_are_read_in_both_spellings() {
        let o = parse(&["--api-addr", "127.0.0.1:4000", "--bucket=b2"]).unwrap();
        assert_eq!((o.api_addr.port(), o.bucket.as_str()), (4000, "b2"));
    }

    #[test]
    fn bad_flags_explain_themselves() {
        for args in [
            &["--nope", "x"][..],
            &["--api-addr"],
            &["--api-addr", "localhost"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn generated_api_keys_differ() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
