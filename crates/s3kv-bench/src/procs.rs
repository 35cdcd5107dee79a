//! Processes: the servers a run measures against, each a [`ChildServer`] (its output kept, killed when dropped)
//! that is ready once it answers a real request, not once a TCP connect succeeds.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use testkit::ChildServer;
use tokio::sync::mpsc;

use s3kv_local::outbox::{Backlog, Outbox};
use s3kv_local::s3_endpoint::NotifyingFs;
use s3kv_local::{ACCESS_KEY, SECRET_KEY};

/// How long a server may take to answer its first request.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A private `valkey-server` ([`testkit::Valkey`]: on a reserved port, ready once its `INFO server` names it and
/// it answers PING), stopped when dropped.
pub(crate) struct Valkey {
    _server: testkit::Valkey,
    /// Its process, for CPU figures.
    pub(crate) pid: u32,
    pub(crate) url: String,
}

pub(crate) fn start_valkey() -> Valkey {
    let server = testkit::Valkey::try_start(testkit::valkey::Options::default())
        .unwrap_or_else(|e| panic!("{e} (scripts/bench sets S3KV_VALKEY_SERVER)"));
    let pid = server.pid().expect("a started server has a process");
    Valkey {
        url: server.url(),
        pid,
        _server: server,
    }
}

pub(crate) struct S3Server {
    pub(crate) server: ChildServer,
    pub(crate) endpoint: String,
}

/// The project's S3 endpoint in its own process: this executable again, in the `s3` role, on a reserved port;
/// ready once it answers S3 requests.
pub(crate) fn start_s3(dir: &Path) -> S3Server {
    std::fs::create_dir_all(dir).expect("S3 data dir");
    let port = testkit::free_port();
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command
        .env("S3KV_BENCH_ROLE", "s3")
        .env("S3KV_BENCH_S3_DIR", dir)
        .env("S3KV_BENCH_S3_PORT", port.to_string());
    let mut server = ChildServer::spawn("S3 endpoint", command).unwrap_or_else(|e| panic!("{e}"));
    server
        .wait_ready(START_TIMEOUT, |_| s3_answers(port))
        .unwrap_or_else(|e| panic!("{e}"));
    S3Server {
        server,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// Whether the S3 endpoint on `port` answers like S3: an unsigned `GET /` (ListBuckets) is refused by the SigV4
/// check with S3's `AccessDenied` error (or, were it let through, listed).
pub(crate) fn s3_answers(port: u16) -> Result<(), String> {
    let answer = testkit::http::get(port, "/")?;
    let refused = answer.starts_with("HTTP/1.1 403") && answer.contains("AccessDenied");
    let listed = answer.starts_with("HTTP/1.1 200") && answer.contains("ListAllMyBucketsResult");
    if refused || listed {
        Ok(())
    } else {
        Err(format!(
            "GET / answered {:?}",
            answer.chars().take(200).collect::<String>()
        ))
    }
}

/// The `s3` role: the endpoint `s3kv-local` serves ([`NotifyingFs::service`]: s3s-fs over `dir`, SigV4 checks),
/// on 127.0.0.1:`port`, its notifications dropped.
pub(crate) async fn serve_s3(dir: PathBuf, port: u16) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let outbox = Outbox::new(tx, Arc::new(Backlog::default()));
    let service = NotifyingFs::service(&dir, outbox).expect("s3s-fs over the data dir");
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
    // Like S3, `s3kv-local` and any production HTTP server, answer without Nagle's algorithm;
    // `S3KV_BENCH_S3_NODELAY=0` keeps it on, to measure what that costs.
    let nodelay = std::env::var("S3KV_BENCH_S3_NODELAY").as_deref() != Ok("0");
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        socket.set_nodelay(nodelay).expect("TCP_NODELAY");
        let service = service.clone();
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

pub(crate) fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    s3kv::adapters::s3::endpoint_client(endpoint, ACCESS_KEY, SECRET_KEY, Duration::from_secs(10))
}

pub(crate) fn status_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
