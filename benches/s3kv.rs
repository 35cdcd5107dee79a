//! s3kv's read and sync paths measured against their physical limits and the reference designs, every comparison
//! taken in the same run, against real servers this harness starts on 127.0.0.1 (each its own process):
//!
//! * `valkey-server` (`S3KV_VALKEY_SERVER`, as the tests find it);
//! * the project's own S3 endpoint (`s3kv::local::s3_endpoint::NotifyingFs` over s3s-fs, the one `s3kv-local`
//!   serves), run by this very executable re-started with `S3KV_BENCH_ROLE=s3`; its notifications are dropped, so
//!   nothing else runs during a measurement. The S3 baseline and the reader's S3 path use this one endpoint;
//! * `target/release/s3kv-local` for propagation, and `target/release/{reader,writer,syncer}` behind a minimal
//!   Lambda Runtime API for cold starts and peak RSS.
//!
//! `scripts/bench` builds what this needs, runs it `S3KV_BENCH_RUNS` times and prints the Markdown report
//! (min/median/max over the runs). `cargo bench --bench s3kv` alone does one run and prints its report.
//!
//! Environment: `S3KV_BENCH_OUT` (append this run's results, one JSON line), `S3KV_BENCH_REPORT` (only print the
//! report of a results file), `S3KV_BENCH_ITEMS` (1000), `S3KV_BENCH_PHASE_MS` (1000), `S3KV_BENCH_ROUNDS` (2),
//! `S3KV_BENCH_SYNC_ROUNDS` (15), `S3KV_BENCH_PROPAGATION_WRITES` (1000), `S3KV_BENCH_COLD_STARTS` (10),
//! `S3KV_BENCH_INVOCATIONS` (2000).
//!
//! Every answer is checked (a reader answer must be 200 with `X-Cache: HIT` and the exact body, a sync must apply
//! every record, a function's first answer must be a correct response): a number measured on failures would be
//! meaningless, so any wrong answer stops the run.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::s3::S3EventRecord;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use fred::prelude::*;
use futures::stream::{self, StreamExt};
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::config::Config;
use s3kv::local::{ACCESS_KEY, SECRET_KEY};
use s3kv::ports::{Applied, Cache, CacheChange, Etag, Object, ObjectStore};
use s3kv::read::Reader;
use s3kv::s3_event::{self, EventName, ObjectChange};
use s3kv::sequencer::Sequencer;
use s3kv::sync::Syncer;
use s3kv::{api, percent, retry};

const BUCKET: &str = "s3kv-bench";
const PREFIX: &str = "items/";
const READ_BODY_BYTES: usize = 1024;
const SYNC_BODY_BYTES: usize = 4096;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// The reader's Valkey timeout, as tests/common sets it for loaded machines (default 50 ms): on a busy 2-core
/// machine a lookup can stall past 50 ms, and its answer (BYPASS, from S3) would stop the run. The timeout only
/// decides when to give up on Valkey; a hit costs the same either way.
const READER_CACHE_TIMEOUT_MS: &str = "1000";

// ---------------------------------------------------------------------------------------------------------------
// Settings

struct Settings {
    items: usize,
    phase: Duration,
    rounds: usize,
    sync_rounds: usize,
    propagation_writes: usize,
    cold_starts: usize,
    invocations: usize,
    /// `S3KV_BENCH_ONLY`: comma-separated sections to run (read, functions, sync, propagation); default all.
    only: Option<Vec<String>>,
    /// `S3KV_BENCH_READ_VARIANTS`: which read variants to run (raw_get, raw_entry, reader, reader_quiet, s3); default all.
    read_variants: Option<Vec<String>>,
}

impl Settings {
    fn from_env() -> Self {
        let n = |var: &str, default: usize| -> usize {
            std::env::var(var)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{var}={v:?}: expected a number"))
                })
                .unwrap_or(default)
                .max(1)
        };
        Self {
            items: n("S3KV_BENCH_ITEMS", 1000),
            phase: Duration::from_millis(n("S3KV_BENCH_PHASE_MS", 1000) as u64),
            rounds: n("S3KV_BENCH_ROUNDS", 2),
            sync_rounds: n("S3KV_BENCH_SYNC_ROUNDS", 15),
            propagation_writes: n("S3KV_BENCH_PROPAGATION_WRITES", 1000),
            cold_starts: n("S3KV_BENCH_COLD_STARTS", 10),
            invocations: n("S3KV_BENCH_INVOCATIONS", 2000),
            only: list("S3KV_BENCH_ONLY"),
            read_variants: list("S3KV_BENCH_READ_VARIANTS"),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

fn list(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// CPU time a process has used so far (every thread), from the scheduler's nanosecond counters.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn release_binary(name: &str) -> PathBuf {
    let path = target_dir().join("release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --release --bins` (scripts/bench does)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------------------------
// Results and the report

/// `value >= bound` (`at_least`) or `value <= bound`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Target {
    at_least: bool,
    bound: f64,
}

impl Target {
    fn met(&self, value: f64) -> bool {
        if self.at_least {
            value >= self.bound
        } else {
            value <= self.bound
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {}",
            if self.at_least { "≥" } else { "≤" },
            fmt_num(self.bound)
        )
    }
}

fn at_least(bound: f64) -> Option<Target> {
    Some(Target {
        at_least: true,
        bound,
    })
}

fn at_most(bound: f64) -> Option<Target> {
    Some(Target {
        at_least: false,
        bound,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Metric {
    id: String,
    section: String,
    label: String,
    unit: String,
    value: f64,
    target: Option<Target>,
}

#[derive(Default)]
struct Metrics(Vec<Metric>);

impl Metrics {
    fn add(&mut self, section: &str, id: &str, label: &str, unit: &str, value: f64) {
        self.add_target(section, id, label, unit, value, None);
    }

    fn add_target(
        &mut self,
        section: &str,
        id: &str,
        label: &str,
        unit: &str,
        value: f64,
        target: Option<Target>,
    ) {
        assert!(value.is_finite(), "{id} is not a number: {value}");
        eprintln!("  {label}: {} {unit}", fmt_num(value));
        self.0.push(Metric {
            id: id.into(),
            section: section.into(),
            label: label.into(),
            unit: unit.into(),
            value,
            target,
        });
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileFact {
    path: String,
    arch: String,
    bytes: u64,
    modified_unix: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RunRecord {
    started_unix: u64,
    seconds: f64,
    load_start: String,
    load_end: String,
    metrics: Vec<Metric>,
    files: Vec<FileFact>,
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{v:.0}");
        let (sign, digits) = s.split_at(if v < 0.0 { 1 } else { 0 });
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn machine() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    vec![
        (
            "CPUs (nproc)".into(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into()),
        ),
        (
            "CPU model".into(),
            format!(
                "{} (family {}, model {})",
                field("model name"),
                field("cpu family"),
                field("model\t")
            ),
        ),
        (
            "Memory".into(),
            format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
        ),
        (
            "Kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
        ("rustc".into(), rustc),
    ]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The Markdown report over one or more runs: min/median/max of every figure; targets judged on the median,
/// with how many runs met them.
fn report(runs: &[RunRecord]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let line = |w: &mut String, s: String| {
        w.push_str(&s);
        w.push('\n');
    };
    line(w, "# s3kv benchmark report\n".into());
    line(
        w,
        format!(
            "{} run(s); every figure is min / median / max over the runs. Targets are judged on the median; \
             \"runs\" says how many runs met them.\n",
            runs.len()
        ),
    );
    line(w, "| Machine | |\n| --- | --- |".into());
    for (k, v) in machine() {
        line(w, format!("| {k} | {v} |"));
    }
    line(w, String::new());
    line(
        w,
        "| Run | started (UTC) | duration | load average at start | at end |\n| --- | --- | --- | --- | --- |"
            .into(),
    );
    for (i, r) in runs.iter().enumerate() {
        line(
            w,
            format!(
                "| {} | {} | {:.0} s | {} | {} |",
                i + 1,
                chrono::DateTime::from_timestamp(r.started_unix as i64, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                r.seconds,
                r.load_start,
                r.load_end
            ),
        );
    }
    // Figures in the first run's order.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut values: HashMap<String, Vec<f64>> = HashMap::new();
    let mut meta: HashMap<String, Metric> = HashMap::new();
    for r in runs {
        for m in &r.metrics {
            if !meta.contains_key(&m.id) {
                order.push((m.section.clone(), m.id.clone()));
                meta.insert(m.id.clone(), m.clone());
            }
            values.entry(m.id.clone()).or_default().push(m.value);
        }
    }
    let mut sections: Vec<&String> = Vec::new();
    for (sec, _) in &order {
        if !sections.contains(&sec) {
            sections.push(sec);
        }
    }
    // The bill is derived from the other sections: it comes last.
    sections.sort_by_key(|s| s.as_str() == BILL);
    let order: Vec<&(String, String)> = sections
        .iter()
        .flat_map(|s| order.iter().filter(move |(sec, _)| sec == *s))
        .collect();
    let mut section = String::new();
    let mut targets = Vec::new();
    for (sec, id) in order {
        if *sec != section {
            section = sec.clone();
            line(w, format!("\n## {section}\n"));
            line(
                w,
                "| Figure | unit | min | median | max | target | runs |\n| --- | --- | --- | --- | --- | --- | --- |"
                    .into(),
            );
        }
        let m = &meta[id];
        let mut v = values[id].clone();
        v.sort_by(f64::total_cmp);
        let med = median(&v);
        let (target, verdict) = match m.target {
            Some(t) => {
                let met = values[id].iter().filter(|x| t.met(**x)).count();
                let verdict = format!(
                    "{} ({met}/{})",
                    if t.met(med) { "**met**" } else { "**missed**" },
                    v.len()
                );
                targets.push((m.label.clone(), t, med, verdict.clone()));
                (t.describe(), verdict)
            }
            None => (String::new(), String::new()),
        };
        line(
            w,
            format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                m.label,
                m.unit,
                fmt_num(v[0]),
                fmt_num(med),
                fmt_num(v[v.len() - 1]),
                target,
                verdict
            ),
        );
    }
    line(
        w,
        "\n## Targets (median of the runs)\n\n| Target | median | verdict (runs met) |\n| --- | --- | --- |"
            .into(),
    );
    for (label, t, med, verdict) in targets {
        line(
            w,
            format!(
                "| {label} {} | {} | {verdict} |",
                t.describe(),
                fmt_num(med)
            ),
        );
    }
    if let Some(last) = runs.last() {
        line(
            w,
            "\n## Binaries\n\n| File | architecture | size | MiB | built (UTC) |\n| --- | --- | --- | --- | --- |"
                .into(),
        );
        for f in &last.files {
            line(
                w,
                format!(
                    "| `{}` | {} | {} B | {:.2} | {} |",
                    f.path,
                    f.arch,
                    fmt_num(f.bytes as f64),
                    f.bytes as f64 / 1024.0 / 1024.0,
                    chrono::DateTime::from_timestamp(f.modified_unix as i64, 0)
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default()
                ),
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Processes

/// A child process, killed (SIGKILL, by its own handle) when dropped.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| format!("{} exited with {status}", self.what))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        if let Some(e) = proc.exited() {
            panic!("{e} before listening on {port}");
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {port} within 30 s",
            proc.what
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Valkey {
    proc: Proc,
    url: String,
}

fn start_valkey() -> Valkey {
    let binary = s3kv::local::find_valkey()
        .expect("no valkey-server: set S3KV_VALKEY_SERVER (scripts/bench does)");
    let port = free_port();
    let child = s3kv::local::valkey_server_command(&binary, port)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let mut proc = Proc {
        child,
        what: "valkey-server".into(),
    };
    wait_for_port(port, &mut proc);
    Valkey {
        proc,
        url: format!("valkey://127.0.0.1:{port}"),
    }
}

struct S3Server {
    proc: Proc,
    endpoint: String,
}

/// The project's S3 endpoint in its own process: this executable again, in the `s3` role.
fn start_s3(dir: &Path) -> S3Server {
    std::fs::create_dir_all(dir).expect("S3 data dir");
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env("S3KV_BENCH_ROLE", "s3")
        .env("S3KV_BENCH_S3_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the S3 endpoint");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("S3 endpoint's address");
    let addr = first
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("S3 endpoint said {first:?}"))
        .to_owned();
    S3Server {
        proc: Proc {
            child,
            what: "S3 endpoint".into(),
        },
        endpoint: format!("http://{addr}"),
    }
}

/// The `s3` role: `NotifyingFs` (the endpoint `s3kv-local` serves) with SigV4 checks, notifications dropped.
async fn serve_s3(dir: PathBuf) {
    use s3kv::local::delivery::Backlog;
    use s3kv::local::s3_endpoint::{NotifyingFs, Outbox};
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let outbox = Outbox::new(tx, Arc::new(Backlog::default()));
    let fs = s3s_fs::FileSystem::new(&dir).expect("s3s-fs over the data dir");
    let mut builder =
        s3s::service::S3ServiceBuilder::new(NotifyingFs::new(fs, dir.clone(), outbox));
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    println!("LISTENING {}", listener.local_addr().expect("addr"));
    std::io::stdout().flush().expect("flush");
    // Like S3 and any production HTTP server, answer without Nagle's algorithm; `S3KV_BENCH_S3_NODELAY=0` keeps
    // it on, as `s3kv-local`'s listeners do today, to measure what that costs.
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

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    s3kv::adapters::s3::endpoint_client(endpoint, ACCESS_KEY, SECRET_KEY, Duration::from_secs(10))
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------------------------
// Load generation

#[derive(Default)]
struct Sample {
    elapsed: Duration,
    lat_ns: Vec<u64>,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.elapsed += other.elapsed;
        self.lat_ns.extend(other.lat_ns);
    }

    fn ops_per_sec(&self) -> f64 {
        self.lat_ns.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, in microseconds.
    fn pct_us(&mut self, p: f64) -> f64 {
        self.lat_ns.sort_unstable();
        percentile(&self.lat_ns, p) as f64 / 1000.0
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty(), "no samples");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `concurrency` tasks call `op(i)` back to back (each starting at its own place among `n` items) until `duration`
/// has passed; throughput counts until the last call in flight has finished.
async fn run_phase<F, Fut>(concurrency: usize, duration: Duration, n: usize, op: F) -> Sample
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let stop = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                let mut i = t * n / concurrency;
                loop {
                    let t0 = Instant::now();
                    if t0 >= stop {
                        break;
                    }
                    op(i % n).await?;
                    lat.push(t0.elapsed().as_nanos() as u64);
                    i += 1;
                }
                Ok::<_, String>(lat)
            })
        })
        .collect();
    let mut lat_ns = Vec::new();
    for task in tasks {
        match task.await.expect("load task") {
            Ok(l) => lat_ns.extend(l),
            Err(e) => panic!("a wrong answer makes the measurement meaningless: {e}"),
        }
    }
    Sample {
        elapsed: start.elapsed(),
        lat_ns,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Test data

fn json_body(tag: &str, i: usize, size: usize) -> String {
    let head = format!(
        "{{\"id\":{i},\"name\":\"{tag}-{i}\",\"enabled\":{},\"tags\":[\"bench\",\"s3kv\"],\"pad\":\"",
        i % 2 == 0
    );
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = head;
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    debug_assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok());
    s
}

static SEQUENCE: AtomicU64 = AtomicU64::new(1_000_000);

fn next_sequencer() -> Sequencer {
    Sequencer::from_counter(SEQUENCE.fetch_add(1, Ordering::SeqCst))
}

fn created(object_key: &str, etag: &Etag, size: usize) -> S3EventRecord {
    s3_event::record(&ObjectChange {
        name: EventName::Put,
        bucket: BUCKET,
        object_key,
        etag: Some(etag),
        size: size as u64,
        version_id: None,
        sequencer: &next_sequencer(),
    })
}

/// An API Gateway REST proxy request for `/items/{key+}`, as tests/common builds them.
fn request(method: Method, key: &str, body: Option<&str>) -> ApiGatewayProxyRequest {
    let encoded = percent::encode_path(key);
    let mut request = ApiGatewayProxyRequest::default();
    request.http_method = method;
    request.resource = Some("/items/{key+}".into());
    request.path = Some(format!("/items/{encoded}"));
    request.path_parameters = HashMap::from([("key".to_owned(), encoded)]);
    request.body = body.map(str::to_owned);
    request
}

struct Item {
    key: String,
    object_key: String,
    cache_key: String,
    body: Bytes,
    etag: Etag,
}

/// Uploads `n` objects of `size` bytes under `tag/`, 16 at a time.
async fn upload_items(
    s3: &aws_sdk_s3::Client,
    config: &Config,
    tag: &str,
    n: usize,
    size: usize,
) -> Vec<Item> {
    let keys = config.key_map();
    stream::iter(0..n)
        .map(|i| {
            let key = format!("{tag}/item-{i:05}");
            let item_key = s3kv::key::ItemKey::parse(&key).expect("item key");
            let object_key = keys.object_key(&item_key);
            let cache_key = keys.cache_key(&item_key);
            let body = Bytes::from(json_body(tag, i, size));
            async move {
                let out = s3
                    .put_object()
                    .bucket(BUCKET)
                    .key(&object_key)
                    .content_type("application/json")
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await
                    .expect("upload");
                Item {
                    key,
                    object_key,
                    cache_key,
                    body,
                    etag: Etag::new(out.e_tag().expect("etag")),
                }
            }
        })
        .buffered(16)
        .collect()
        .await
}

type BenchReader = Reader<S3Store, ValkeyCache>;
type BenchSyncer = Syncer<S3Store, ValkeyCache>;

/// A create record per item, as S3 would send them.
fn created_records(items: &[Item]) -> Vec<S3EventRecord> {
    items
        .iter()
        .map(|it| created(&it.object_key, &it.etag, it.body.len()))
        .collect()
}

/// Syncs `records` through the real syncer in one event, and checks every record was applied.
async fn sync_all(syncer: &BenchSyncer, records: Vec<S3EventRecord>) -> Duration {
    let n = records.len();
    let event = s3_event::event(records);
    let t0 = Instant::now();
    let report = s3_event::handle(syncer, event, Instant::now() + Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("sync failed: {e}"));
    let elapsed = t0.elapsed();
    assert_eq!(
        (report.applied, report.failed),
        (n, 0),
        "every record must be applied: {report:?}"
    );
    elapsed
}

// ---------------------------------------------------------------------------------------------------------------
// Read path

struct Bench {
    settings: Settings,
    valkey_pid: u32,
    s3_pid: u32,
    config: Config,
    s3: aws_sdk_s3::Client,
    s3_endpoint: String,
    valkey_url: String,
    reader_cache: ValkeyCache,
    reader: Arc<BenchReader>,
    /// The same reader with `S3KV_METRICS=off`: no EMF line per request.
    reader_quiet: Arc<BenchReader>,
    syncer_cache: ValkeyCache,
    syncer: BenchSyncer,
    read_items: Arc<Vec<Item>>,
}

fn check_read(response: &ApiGatewayProxyResponse, want: &[u8]) -> Result<(), String> {
    let cache = response
        .headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok());
    let body = match &response.body {
        Some(Body::Text(t)) => t.as_bytes(),
        _ => b"",
    };
    if response.status_code != 200 || cache != Some("HIT") || body != want {
        return Err(format!(
            "reader answered {} with X-Cache {cache:?} and a {}-byte body (want 200, HIT, {} bytes)",
            response.status_code,
            body.len(),
            want.len()
        ));
    }
    Ok(())
}

impl Bench {
    async fn read_path(&self, m: &mut Metrics) {
        let items = self.read_items.clone();
        let n = items.len();
        let requests: Arc<Vec<ApiGatewayProxyRequest>> = Arc::new(
            items
                .iter()
                .map(|it| request(Method::GET, &it.key, None))
                .collect(),
        );
        let raw_keys: Arc<Vec<String>> =
            Arc::new(items.iter().map(|it| format!("raw:{}", it.key)).collect());
        // The raw baselines use the reader's own fred client: same connection, same settings.
        let client = self.reader_cache.client().clone();
        for (key, it) in raw_keys.iter().zip(items.iter()) {
            let _: () = client
                .set(key.as_str(), it.body.clone(), None, None, false)
                .await
                .expect("SET raw copy");
        }

        type Op = Arc<
            dyn Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
                + Send
                + Sync,
        >;
        let raw_get: Op = {
            let (client, keys, items) = (client.clone(), raw_keys.clone(), items.clone());
            Arc::new(move |i| {
                let (client, keys, items) = (client.clone(), keys.clone(), items.clone());
                Box::pin(async move {
                    let got: Option<Bytes> = client
                        .get(keys[i].as_str())
                        .await
                        .map_err(|e| e.to_string())?;
                    (got.as_ref() == Some(&items[i].body))
                        .then_some(())
                        .ok_or_else(|| format!("raw GET {} answered {got:?}", keys[i]))
                })
            })
        };
        let raw_entry: Op = {
            let (client, items) = (client.clone(), items.clone());
            Arc::new(move |i| {
                let (client, items) = (client.clone(), items.clone());
                Box::pin(async move {
                    let got: Option<Bytes> = client
                        .get(items[i].cache_key.as_str())
                        .await
                        .map_err(|e| e.to_string())?;
                    got.as_ref()
                        .is_some_and(|entry| entry.ends_with(&items[i].body))
                        .then_some(())
                        .ok_or_else(|| format!("raw GET {} answered {got:?}", items[i].cache_key))
                })
            })
        };
        let reader: Op = {
            let (reader, requests, items) = (self.reader.clone(), requests.clone(), items.clone());
            Arc::new(move |i| {
                let (reader, requests, items) = (reader.clone(), requests.clone(), items.clone());
                Box::pin(async move {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let response = api::handle_read(&*reader, &requests[i], deadline).await;
                    check_read(&response, &items[i].body)
                })
            })
        };
        let reader_quiet: Op = {
            let (reader, requests, items) =
                (self.reader_quiet.clone(), requests.clone(), items.clone());
            Arc::new(move |i| {
                let (reader, requests, items) = (reader.clone(), requests.clone(), items.clone());
                Box::pin(async move {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let response = api::handle_read(&*reader, &requests[i], deadline).await;
                    check_read(&response, &items[i].body)
                })
            })
        };
        let s3_get: Op = {
            let (s3, items) = (self.s3.clone(), items.clone());
            Arc::new(move |i| {
                let (s3, items) = (s3.clone(), items.clone());
                Box::pin(async move {
                    let out = s3
                        .get_object()
                        .bucket(BUCKET)
                        .key(&items[i].object_key)
                        .send()
                        .await
                        .map_err(|e| format!("S3 GET: {e:?}"))?;
                    let body = out
                        .body
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .into_bytes();
                    (body == items[i].body)
                        .then_some(())
                        .ok_or_else(|| "S3 GET answered another body".to_owned())
                })
            })
        };
        let all: [(&str, &str, &Op); 5] = [
            ("raw_get", "raw fred GET", &raw_get),
            (
                "raw_entry",
                "raw fred GET of the reader's cache entry (diagnostic)",
                &raw_entry,
            ),
            ("reader", "reader handler", &reader),
            (
                "reader_quiet",
                "reader handler with S3KV_METRICS=off (diagnostic)",
                &reader_quiet,
            ),
            ("s3", "plain S3 GET (seed design)", &s3_get),
        ];
        let variants: Vec<_> = all
            .into_iter()
            .filter(|(name, _, _)| {
                self.settings
                    .read_variants
                    .as_ref()
                    .is_none_or(|v| v.iter().any(|x| x == name))
            })
            .collect();
        let pids = [std::process::id(), self.valkey_pid, self.s3_pid];
        for c in CONCURRENCY {
            eprintln!("read path, concurrency {c}");
            let mut samples: HashMap<&str, (Sample, [u64; 3])> = HashMap::new();
            for (_, _, op) in &variants {
                let op = (*op).clone();
                run_phase(c, Duration::from_millis(200), n, move |i| op(i)).await;
            }
            // Interleaved rounds, so that a burst of outside load hits every variant alike.
            for round in 0..self.settings.rounds {
                let mut order: Vec<_> = variants.iter().collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for &(name, _, op) in order {
                    let op = op.clone();
                    let before = pids.map(cpu_ns);
                    let s = run_phase(c, self.settings.phase, n, move |i| op(i)).await;
                    let after = pids.map(cpu_ns);
                    let entry = samples.entry(name).or_default();
                    entry.0.merge(s);
                    for k in 0..3 {
                        entry.1[k] += after[k] - before[k];
                    }
                }
            }
            let sec = format!("Read path, concurrency {c}");
            let mut stats = HashMap::new();
            for &(name, label, _) in &variants {
                let (s, cpu) = samples.get_mut(name).expect("sample");
                let (ops, p50, p99) = (s.ops_per_sec(), s.pct_us(50.0), s.pct_us(99.0));
                let count = s.lat_ns.len() as f64;
                let id = |what: &str| format!("read.c{c}.{name}.{what}");
                let label = |what: &str| format!("c={c} {label}: {what}");
                m.add(&sec, &id("ops"), &label("throughput"), "ops/s", ops);
                m.add(&sec, &id("p50"), &label("p50"), "µs", p50);
                m.add(&sec, &id("p99"), &label("p99"), "µs", p99);
                m.add(
                    &sec,
                    &id("cpu"),
                    &label("bench-process CPU per op"),
                    "µs",
                    cpu[0] as f64 / count / 1e3,
                );
                let (server, server_cpu) = if name == "s3" {
                    ("S3 endpoint", cpu[2])
                } else {
                    ("valkey-server", cpu[1])
                };
                m.add(
                    &sec,
                    &id("server_cpu"),
                    &label(&format!("{server} CPU per op")),
                    "µs",
                    server_cpu as f64 / count / 1e3,
                );
                stats.insert(name, (ops, p50, p99));
                if name == "s3" && c == 1 {
                    let billed = mean_billed_ms(&s.lat_ns);
                    m.add(
                        BILL,
                        "bill.seed.billed_ms",
                        "seed design's read (one S3 GET, c=1, this machine): mean billed duration",
                        "ms",
                        billed,
                    );
                    m.add(
                        BILL,
                        "bill.seed.gbs",
                        "seed design at 1,024 MB: GB-s per million reads (lower bound: the S3 GET alone)",
                        "GB-s",
                        billed * 1.0 * 1000.0,
                    );
                }
            }
            // (ops/s, p50, p99) of two variants, as ratios; the ceiling rows are what a reader with no work of its
            // own (a raw GET) would get over S3 on this machine.
            let mut ratio = |id: &str, label: &str, value: f64, target: Option<Target>| {
                let (id, label) = (format!("read.c{c}.{id}"), format!("c={c} {label}"));
                m.add_target(&sec, &id, &label, "x", value, target);
            };
            if let (Some(r), Some(raw)) = (stats.get("reader"), stats.get("raw_get")) {
                ratio(
                    "ratio.ops",
                    "reader / raw GET throughput",
                    r.0 / raw.0,
                    at_least(0.9),
                );
                ratio(
                    "ratio.p99",
                    "reader / raw GET p99",
                    r.2 / raw.2,
                    at_most(1.2),
                );
                ratio("ratio.p50", "reader / raw GET p50", r.1 / raw.1, None);
            }
            if let (Some(raw), Some(s3)) = (stats.get("raw_get"), stats.get("s3")) {
                let label = "ceiling: raw GET / S3 GET throughput (diagnostic)";
                ratio("ceiling.ops", label, raw.0 / s3.0, None);
                let label = "ceiling: S3 GET p50 / raw GET p50 (diagnostic)";
                ratio("ceiling.p50", label, s3.1 / raw.1, None);
            }
            if let (Some(r), Some(s3)) = (stats.get("reader"), stats.get("s3")) {
                let label = "speedup over S3 GET, throughput (reader / S3)";
                ratio("speedup.ops", label, r.0 / s3.0, at_least(10.0));
                let label = "speedup over S3 GET, p50 (S3 / reader)";
                ratio("speedup.p50", label, s3.1 / r.1, at_least(10.0));
            }
        }
        let _: i64 = client.del(raw_keys.to_vec()).await.expect("DEL raw copies");
    }

    // -----------------------------------------------------------------------------------------------------------
    // Sync path

    async fn sync_path(&self, m: &mut Metrics) {
        eprintln!("sync path");
        let items = upload_items(
            &self.s3,
            &self.config,
            "sync",
            self.settings.items,
            SYNC_BODY_BYTES,
        )
        .await;
        let client = self.syncer_cache.client().clone();
        let concurrency = self.config.sync_concurrency;
        let pids = [std::process::id(), self.valkey_pid, self.s3_pid];
        let mut elapsed = [Duration::ZERO; SYNC_LAYERS.len()];
        let mut cpu = [[0u64; 3]; SYNC_LAYERS.len()];
        for round in 0..self.settings.sync_rounds {
            // Each round rotates the order, so no layer always runs first after the upload or last.
            for step in 0..SYNC_LAYERS.len() {
                let v = (step + round) % SYNC_LAYERS.len();
                let _: () = client.flushall(false).await.expect("FLUSHALL");
                let before = pids.map(cpu_ns);
                elapsed[v] += self.sync_variant(SYNC_LAYERS[v].variant, &items).await;
                let after = pids.map(cpu_ns);
                for k in 0..3 {
                    cpu[v][k] += after[k] - before[k];
                }
            }
        }
        let records = (items.len() * self.settings.sync_rounds) as f64;
        let sec = "Sync path";
        let rps: Vec<f64> = elapsed.iter().map(|e| records / e.as_secs_f64()).collect();
        for (v, layer) in SYNC_LAYERS.iter().enumerate() {
            let label = match layer.variant {
                SyncVariant::Syncer => format!(
                    "{}, {}-record events (concurrency {concurrency})",
                    layer.label,
                    items.len()
                ),
                _ => format!("{} (concurrency {concurrency})", layer.label),
            };
            m.add(
                sec,
                &format!("sync.{}.rps", layer.id),
                &label,
                "records/s",
                rps[v],
            );
        }
        m.add_target(
            sec,
            "sync.ratio",
            "syncer / raw work",
            "x",
            rps[SYNCER] / rps[RAW],
            at_least(0.9),
        );
        for (v, layer) in SYNC_LAYERS.iter().enumerate() {
            if let Some(base) = layer.against {
                m.add(
                    sec,
                    &format!("sync.{}.ratio", layer.id),
                    &format!("{} / {}", layer.label, SYNC_LAYERS[base].label),
                    "x",
                    rps[v] / rps[base],
                );
            }
        }
        for (v, layer) in SYNC_LAYERS.iter().enumerate() {
            for (k, process) in ["bench process", "valkey-server", "S3 endpoint"]
                .iter()
                .enumerate()
            {
                m.add(
                    sec,
                    &format!("sync.{}.cpu{k}", layer.id),
                    &format!("{}: {process} CPU per record", layer.label),
                    "µs",
                    cpu[v][k] as f64 / records / 1e3,
                );
            }
        }
        let _: () = client.flushall(false).await.expect("FLUSHALL");
        self.sync_steps(m, &items).await;
    }

    /// What the layers' differences are made of: the syncer's own CPU work per record, each step alone over the
    /// sync items (no I/O), and the S3 read alone, one at a time, in the forms the S3 layer adds up.
    async fn sync_steps(&self, m: &mut Metrics, items: &[Item]) {
        let sec = "Sync path: the syncer's own steps (diagnostic)";
        let keys = self.config.key_map();
        let records = created_records(items);
        let n = items.len();
        // Best of 5 passes over every item, after one warm-up pass: CPU-only steps, so the least disturbed pass
        // is the cost.
        let per_item_us = |step: &mut dyn FnMut(usize)| -> f64 {
            (0..n).for_each(&mut *step);
            (0..5)
                .map(|_| {
                    let t0 = Instant::now();
                    (0..n).for_each(&mut *step);
                    t0.elapsed().as_secs_f64() * 1e6 / n as f64
                })
                .fold(f64::INFINITY, f64::min)
        };
        let steps: [Step<'_>; 4] = [
            (
                "decode",
                "decode the S3 record (s3_event::decode)",
                Box::new(|i| {
                    std::hint::black_box(s3_event::decode(&records[i]).expect("decodes"));
                }),
            ),
            (
                "keys",
                "classify the object key and build the cache key",
                Box::new(|i| match keys.classify(&items[i].object_key) {
                    s3kv::key::ObjectKind::Item(key) => {
                        std::hint::black_box(keys.cache_key(&key));
                    }
                    other => panic!("bench object key is not an item: {other:?}"),
                }),
            ),
            (
                "validate",
                "validate the 4 KiB document (document::validate)",
                Box::new(|i| s3kv::document::validate(&items[i].body).expect("valid JSON")),
            ),
            (
                "entry",
                "encode the cache entry (Entry::encode)",
                Box::new(|i| {
                    let entry = s3kv::adapters::valkey::Entry {
                        sequencer: "0055B8E1C7A3D2F001".into(),
                        etag: items[i].etag.as_str().to_owned(),
                        tombstone: String::new(),
                        body: items[i].body.clone(),
                    };
                    std::hint::black_box(entry.encode().expect("encodes"));
                }),
            ),
        ];
        for (id, label, mut step) in steps {
            let us = per_item_us(&mut *step);
            m.add(sec, &format!("sync.step.{id}"), label, "µs", us);
        }

        // The S3 read, one request at a time (so that CPU per request is not blurred by batching), each form
        // in turn for `rounds` rounds over the same objects.
        let store = S3Store::new(self.s3.clone(), BUCKET);
        let deadline = Instant::now() + Duration::from_secs(600);
        let max_bytes = self.config.max_object_bytes;
        let (rounds, per_round) = (6, n.min(300));
        let forms = [
            ("sdk", "raw SDK GetObject"),
            ("sdk_if_match", "raw SDK GetObject with If-Match"),
            ("store", "S3Store::get with If-Match"),
            (
                "store_retry",
                "S3Store::get with If-Match inside retry::with_deadline (the syncer's read)",
            ),
        ];
        let mut cpu = [0u64; 4];
        let me = std::process::id();
        for round in 0..rounds {
            for step in 0..forms.len() {
                let form = (step + round) % forms.len();
                let before = cpu_ns(me);
                for it in &items[..per_round] {
                    let bytes = match form {
                        0 | 1 => {
                            let out = self
                                .s3
                                .get_object()
                                .bucket(BUCKET)
                                .key(&it.object_key)
                                .set_if_match((form == 1).then(|| it.etag.quoted()))
                                .send()
                                .await
                                .expect("GetObject");
                            out.body.collect().await.expect("body").into_bytes()
                        }
                        2 => {
                            store
                                .get(&it.object_key, Some(&it.etag), max_bytes)
                                .await
                                .expect("S3Store::get")
                                .body
                        }
                        _ => {
                            syncer_read(&store, it, deadline, max_bytes)
                                .await
                                .expect("S3Store::get")
                                .body
                        }
                    };
                    assert_eq!(bytes, it.body, "{} read another body", forms[form].1);
                }
                cpu[form] += cpu_ns(me) - before;
            }
        }
        for (form, (id, label)) in forms.iter().enumerate() {
            m.add(
                sec,
                &format!("sync.s3_read.{id}"),
                &format!("{label}, one at a time: bench-process CPU per request"),
                "µs",
                cpu[form] as f64 / (rounds * per_round) as f64 / 1e3,
            );
        }
    }

    /// Runs one layer of the sync work over `items` at the syncer's concurrency, checks that every record
    /// reached the cache, and returns the time it took (inputs are built before the clock starts).
    async fn sync_variant(&self, variant: SyncVariant, items: &[Item]) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(120);
        let store = S3Store::new(self.s3.clone(), BUCKET);
        let (s3, cache, client) = (&self.s3, &self.syncer_cache, self.syncer_cache.client());
        let max_bytes = self.config.max_object_bytes;
        let records = created_records(items);
        let concurrency = self.config.sync_concurrency;
        let elapsed = match variant {
            SyncVariant::Raw => {
                per_item(items, concurrency, |it| async {
                    raw_set(client, &it.cache_key, sdk_get(s3, &it.object_key).await?).await
                })
                .await
            }
            SyncVariant::S3Adapter => {
                let store = &store;
                per_item(items, concurrency, |it| async move {
                    let object = syncer_read(store, it, deadline, max_bytes).await?;
                    raw_set(client, &it.cache_key, object.body).await
                })
                .await
            }
            SyncVariant::CacheAdapter => {
                per_item(items, concurrency, |it| async move {
                    let body = sdk_get(s3, &it.object_key).await?;
                    let change = CacheChange::Put(Object {
                        body,
                        etag: it.etag.clone(),
                    });
                    applied(cache.apply(&it.cache_key, &next_sequencer(), &change).await)
                })
                .await
            }
            SyncVariant::BothAdapters => {
                let store = &store;
                per_item(items, concurrency, |it| async move {
                    let object = syncer_read(store, it, deadline, max_bytes).await?;
                    let (sequencer, change) = (next_sequencer(), CacheChange::Put(object));
                    let result = retry::with_deadline(deadline, "cache apply", || {
                        cache.apply(&it.cache_key, &sequencer, &change)
                    })
                    .await;
                    applied(result)
                })
                .await
            }
            SyncVariant::UseCase => {
                let decoded: Vec<_> = records
                    .iter()
                    .map(|r| match s3_event::decode(r) {
                        Ok(Some(record)) => Ok(record),
                        other => panic!("bench record does not decode: {other:?}"),
                    })
                    .collect();
                let t0 = Instant::now();
                let report = self.syncer.run(decoded, deadline).await;
                let elapsed = t0.elapsed();
                let report = report.unwrap_or_else(|e| panic!("sync failed: {e}"));
                assert_eq!((report.applied, report.records), (items.len(), items.len()));
                elapsed
            }
            SyncVariant::Syncer => sync_all(&self.syncer, records).await,
            SyncVariant::SetAlone => {
                per_item(items, concurrency, |it| {
                    raw_set(client, &it.cache_key, it.body.clone())
                })
                .await
            }
            SyncVariant::ScriptSetAlone => {
                let script = &fred::types::scripts::Script::from_lua(SCRIPT_SET);
                per_item(items, concurrency, |it| async move {
                    let changed: i64 = script
                        .evalsha_with_reload(client, it.cache_key.as_str(), vec![it.body.clone()])
                        .await
                        .map_err(|e| e.to_string())?;
                    (changed == 1)
                        .then_some(())
                        .ok_or_else(|| format!("script answered {changed}"))
                })
                .await
            }
            SyncVariant::ApplyAlone => {
                per_item(items, concurrency, |it| async move {
                    let change = CacheChange::Put(Object {
                        body: it.body.clone(),
                        etag: it.etag.clone(),
                    });
                    applied(cache.apply(&it.cache_key, &next_sequencer(), &change).await)
                })
                .await
            }
        };
        // Whatever wrote it, the first item must now be readable in its variant's format.
        let stored: Option<Bytes> = client.get(items[0].cache_key.as_str()).await.expect("GET");
        let stored = stored.unwrap_or_else(|| panic!("{variant:?} left no value in the cache"));
        assert!(
            stored.ends_with(&items[0].body),
            "{variant:?} stored another body"
        );
        elapsed
    }
}

/// The syncer's S3 read of an item: its own version (If-Match), retried within the deadline as `Syncer::apply` does.
async fn syncer_read(
    store: &S3Store,
    it: &Item,
    deadline: Instant,
    max_bytes: u64,
) -> Result<Object, String> {
    retry::with_deadline(deadline, "s3 get", || {
        store.get(&it.object_key, Some(&it.etag), max_bytes)
    })
    .await
    .map_err(|e| e.to_string())
}

/// A cache write the bench expects to apply (every layer writes fresh sequencers to a flushed cache).
fn applied(result: Result<Applied, s3kv::ports::CacheError>) -> Result<(), String> {
    match result {
        Ok(Applied::Applied) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

async fn sdk_get(s3: &aws_sdk_s3::Client, object_key: &str) -> Result<Bytes, String> {
    let out = s3
        .get_object()
        .bucket(BUCKET)
        .key(object_key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let body = out.body.collect().await.map_err(|e| e.to_string())?;
    Ok(body.into_bytes())
}

async fn raw_set(client: &Client, cache_key: &str, body: Bytes) -> Result<(), String> {
    client
        .set::<(), _, _>(cache_key, body, None, None, false)
        .await
        .map_err(|e| e.to_string())
}

/// Runs `work` for every item, `concurrency` at a time as the syncer does, and returns how long that took;
/// any failure stops the run.
async fn per_item<'a, F, Fut>(items: &'a [Item], concurrency: usize, work: F) -> Duration
where
    F: FnMut(&'a Item) -> Fut,
    Fut: Future<Output = Result<(), String>> + 'a,
{
    let t0 = Instant::now();
    let results: Vec<Result<(), String>> = stream::iter(items)
        .map(work)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = t0.elapsed();
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        panic!("sync work failed: {e}");
    }
    elapsed
}

/// The sync work in layers, each adding one part of the syncer to the raw work, so that the syncer's cost over
/// the raw work can be attributed by difference; and the two cache writes alone. All run at the syncer's
/// concurrency over the same objects, each after a FLUSHALL.
#[derive(Clone, Copy, Debug)]
enum SyncVariant {
    Raw,
    S3Adapter,
    CacheAdapter,
    BothAdapters,
    UseCase,
    Syncer,
    SetAlone,
    ScriptSetAlone,
    ApplyAlone,
}

struct SyncLayer {
    variant: SyncVariant,
    id: &'static str,
    label: &'static str,
    /// The layer this one is reported as a ratio of.
    against: Option<usize>,
}

const RAW: usize = 0;
const SYNCER: usize = 5;
const SET_ALONE: usize = 6;
// The indices above name their layers, whatever is inserted before them.
const _: () = assert!(matches!(SYNC_LAYERS[RAW].variant, SyncVariant::Raw));
const _: () = assert!(matches!(SYNC_LAYERS[SYNCER].variant, SyncVariant::Syncer));
const _: () = assert!(matches!(
    SYNC_LAYERS[SET_ALONE].variant,
    SyncVariant::SetAlone
));
/// One of the syncer's own steps, timed alone: an id, a label, and the step over item `i`.
type Step<'a> = (&'static str, &'static str, Box<dyn FnMut(usize) + 'a>);

/// A Lua script that only does what cache.lua must do in any case: one SET of the value, from inside a script.
const SCRIPT_SET: &str = "redis.call('SET', KEYS[1], ARGV[1]) return 1";

const SYNC_LAYERS: [SyncLayer; 9] = [
    SyncLayer {
        variant: SyncVariant::Raw,
        id: "raw",
        label: "raw S3 GET + Valkey SET",
        against: None,
    },
    SyncLayer {
        variant: SyncVariant::S3Adapter,
        id: "s3_adapter",
        label: "syncer's S3 read (If-Match, bounded retry) + Valkey SET",
        against: Some(RAW),
    },
    SyncLayer {
        variant: SyncVariant::CacheAdapter,
        id: "cache_adapter",
        label: "raw S3 GET + syncer's cache write (entry, ordered Lua write)",
        against: Some(RAW),
    },
    SyncLayer {
        variant: SyncVariant::BothAdapters,
        id: "both_adapters",
        label:
            "both adapters as the syncer calls them, without Syncer (no validation, keys, outcomes)",
        against: Some(RAW),
    },
    SyncLayer {
        variant: SyncVariant::UseCase,
        id: "use_case",
        label: "Syncer::run over decoded records (both adapters, validation, keys)",
        against: Some(RAW),
    },
    // Its ratio to the raw work is the target row.
    SyncLayer {
        variant: SyncVariant::Syncer,
        id: "syncer",
        label: "syncer handler",
        against: None,
    },
    SyncLayer {
        variant: SyncVariant::SetAlone,
        id: "set_alone",
        label: "Valkey SET alone",
        against: None,
    },
    SyncLayer {
        variant: SyncVariant::ScriptSetAlone,
        id: "script_set_alone",
        label: "a Lua script that only SETs (EVALSHA), alone",
        against: Some(SET_ALONE),
    },
    SyncLayer {
        variant: SyncVariant::ApplyAlone,
        id: "apply_alone",
        label: "syncer's cache write alone",
        against: Some(SET_ALONE),
    },
];

// ---------------------------------------------------------------------------------------------------------------
// Propagation through s3kv-local

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

struct Reply {
    status: u16,
    cache: Option<String>,
    body: Bytes,
}

async fn call(client: &HttpClient, method: &str, url: &str, body: Option<&str>) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("x-api-key", "bench-key")
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("HTTP request");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        cache,
        body,
    }
}

/// Polls GET until it answers `want`; returns whether the answer came from the cache.
async fn until_visible(client: &HttpClient, url: &str, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = call(client, "GET", url, None).await;
        if reply.status == 200 && reply.body == want.as_bytes() {
            return reply.cache.as_deref() == Some("HIT");
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not show the new value within 10 s (last: {} {:?})",
            reply.status,
            reply.cache
        );
    }
}

/// Starts `target/release/s3kv-local` on free ports; returns its API base URL and S3 endpoint.
async fn start_s3kv_local(tmp: &Path, valkey: &Valkey) -> (Proc, String, String) {
    let log_path = tmp.join("s3kv-local.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(release_binary("s3kv-local"))
        .args([
            "--api-addr",
            "127.0.0.1:0",
            "--s3-addr",
            "127.0.0.1:0",
            "--api-key",
            "bench-key",
        ])
        .arg("--data-dir")
        .arg(tmp.join("local-data"))
        .args(["--valkey-url", &valkey.url])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn s3kv-local");
    let mut local = Proc {
        child,
        what: "s3kv-local".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (api, s3_endpoint) = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let find = |label: &str| {
            text.lines()
                .filter(|l| l.trim_start().starts_with(label))
                .filter_map(|l| l.split_whitespace().nth(1))
                .find(|url| url.starts_with("http://"))
                .map(str::to_owned)
        };
        if text.contains("s3kv is running locally") {
            let api = find("API ").expect("API line");
            let s3 = find("S3 ").expect("S3 line");
            break (api.trim_end_matches("/items/{key}").to_owned(), s3);
        }
        if let Some(e) = local.exited() {
            panic!("{e}: {text}");
        }
        assert!(
            Instant::now() < deadline,
            "s3kv-local did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (local, api, s3_endpoint)
}

async fn propagation(settings: &Settings, tmp: &Path, m: &mut Metrics) {
    eprintln!("propagation through s3kv-local");
    let valkey = start_valkey();
    let (mut local, api, s3_endpoint) = start_s3kv_local(tmp, &valkey).await;
    let sec = "Propagation through s3kv-local (sequential writes)";
    propagate(settings, &api, &s3_endpoint, sec, "prop", m).await;
    if let Some(e) = local.exited() {
        panic!("{e}");
    }
}

async fn propagate(
    settings: &Settings,
    api: &str,
    s3_endpoint: &str,
    sec: &str,
    id: &str,
    m: &mut Metrics,
) {
    let target = at_most;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let s3 = s3_client(s3_endpoint);
    const KEYS: usize = 100;
    let url = |kind: &str, k: usize| format!("{api}/items/{kind}/k{k:03}");

    // Through the API: overwrite keys that are already cached, so the new value can only come from the syncer.
    let body = |kind: &str, i: usize| json_body(kind, i, READ_BODY_BYTES);
    for k in 0..KEYS {
        let b = body("api", k);
        assert!(matches!(
            call(&client, "PUT", &url("api", k), Some(&b)).await.status,
            200 | 201
        ));
        until_visible(&client, &url("api", k), &b).await;
    }
    let (mut visible, mut put_ms, mut not_hit) = (Vec::new(), Vec::new(), 0);
    for i in KEYS..KEYS + settings.propagation_writes {
        let (u, b) = (url("api", i % KEYS), body("api", i));
        let t0 = Instant::now();
        let status = call(&client, "PUT", &u, Some(&b)).await.status;
        put_ms.push(t0.elapsed().as_nanos() as u64);
        assert_eq!(status, 200, "PUT {u}");
        if !until_visible(&client, &u, &b).await {
            not_hit += 1;
        }
        visible.push(t0.elapsed().as_nanos() as u64);
    }
    let ms = |v: &mut Vec<u64>, p: f64| {
        v.sort_unstable();
        percentile(v, p) as f64 / 1e6
    };
    m.add(
        sec,
        &format!("{id}.api.put.p50"),
        "API PUT answered: p50",
        "ms",
        ms(&mut put_ms, 50.0),
    );
    m.add(
        sec,
        &format!("{id}.api.p50"),
        "API PUT → visible on GET: p50",
        "ms",
        ms(&mut visible, 50.0),
    );
    m.add_target(
        sec,
        &format!("{id}.api.p99"),
        "API PUT → visible on GET: p99",
        "ms",
        ms(&mut visible, 99.0),
        target(20.0),
    );
    m.add(
        sec,
        &format!("{id}.api.not_hit"),
        "API writes first seen without X-Cache HIT",
        "writes",
        not_hit as f64,
    );

    // A manual upload straight to the S3 endpoint.
    let object_key = |k: usize| format!("manual/k{k:03}.json");
    let upload = |k: usize, b: String| {
        let (s3, key) = (s3.clone(), object_key(k));
        async move {
            s3.put_object()
                .bucket("s3kv")
                .key(key)
                .body(ByteStream::from(Bytes::from(b)))
                .send()
                .await
                .expect("manual upload");
        }
    };
    for k in 0..KEYS {
        let b = body("manual", k);
        upload(k, b.clone()).await;
        until_visible(&client, &url("manual", k), &b).await;
    }
    let (mut visible, mut not_hit) = (Vec::new(), 0);
    for i in KEYS..KEYS + settings.propagation_writes {
        let b = body("manual", i);
        let t0 = Instant::now();
        upload(i % KEYS, b.clone()).await;
        if !until_visible(&client, &url("manual", i % KEYS), &b).await {
            not_hit += 1;
        }
        visible.push(t0.elapsed().as_nanos() as u64);
    }
    m.add(
        sec,
        &format!("{id}.s3.p50"),
        "S3 PutObject → visible on GET: p50",
        "ms",
        ms(&mut visible, 50.0),
    );
    m.add_target(
        sec,
        &format!("{id}.s3.p99"),
        "S3 PutObject → visible on GET: p99",
        "ms",
        ms(&mut visible, 99.0),
        target(20.0),
    );
    m.add(
        sec,
        &format!("{id}.s3.not_hit"),
        "uploads first seen without X-Cache HIT",
        "writes",
        not_hit as f64,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal Lambda Runtime API (2018-06-01), enough for lambda_runtime

enum AnswerKind {
    Response,
    Error,
    InitError,
}

struct Answer {
    kind: AnswerKind,
    body: Bytes,
    at: Instant,
    /// When the event was handed out by `/next`.
    served: Option<Instant>,
}

struct ApiState {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Vec<u8>)>>,
    answers: mpsc::UnboundedSender<Answer>,
    served: Mutex<HashMap<String, Instant>>,
    first_poll: Mutex<Option<Instant>>,
}

struct RuntimeApi {
    addr: SocketAddr,
    events: mpsc::UnboundedSender<(String, Vec<u8>)>,
    answers: mpsc::UnboundedReceiver<Answer>,
    state: Arc<ApiState>,
    server: tokio::task::JoinHandle<()>,
    next_id: u64,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn reply(status: u16, body: &'static str) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("response")
}

async fn runtime_api(
    state: Arc<ApiState>,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    const BASE: &str = "/2018-06-01/runtime";
    let path = request.uri().path().to_owned();
    let Some(route) = path.strip_prefix(BASE) else {
        return Ok(reply(404, "{}"));
    };
    if request.method() == Method::GET && route == "/invocation/next" {
        state
            .first_poll
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        let Some((id, event)) = state.events.lock().await.recv().await else {
            return Ok(reply(500, "{\"errorMessage\":\"no more events\"}"));
        };
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis()
            + 30_000;
        state
            .served
            .lock()
            .unwrap()
            .insert(id.clone(), Instant::now());
        return Ok(http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("Lambda-Runtime-Aws-Request-Id", &id)
            .header("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string())
            .header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:000000000000:function:s3kv-bench",
            )
            .header(
                "Lambda-Runtime-Trace-Id",
                "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
            )
            .body(Full::new(Bytes::from(event)))
            .expect("response"));
    }
    if request.method() != Method::POST {
        return Ok(reply(404, "{}"));
    }
    let (kind, id) = if route == "/init/error" {
        (AnswerKind::InitError, None)
    } else if let Some(rest) = route.strip_prefix("/invocation/") {
        match rest.rsplit_once('/') {
            Some((id, "response")) => (AnswerKind::Response, Some(id.to_owned())),
            Some((id, "error")) => (AnswerKind::Error, Some(id.to_owned())),
            _ => return Ok(reply(404, "{}")),
        }
    } else {
        return Ok(reply(404, "{}"));
    };
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let at = Instant::now();
    let served = id.and_then(|id| state.served.lock().unwrap().remove(&id));
    let _ = state.answers.send(Answer {
        kind,
        body,
        at,
        served,
    });
    Ok(reply(202, "{\"status\":\"OK\"}"))
}

impl RuntimeApi {
    async fn start() -> Self {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let state = Arc::new(ApiState {
            events: tokio::sync::Mutex::new(events_rx),
            answers: answers_tx,
            served: Mutex::new(HashMap::new()),
            first_poll: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        runtime_api(state.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            events,
            answers,
            state,
            server,
            next_id: 0,
        }
    }

    fn queue(&mut self, event: Vec<u8>) {
        self.next_id += 1;
        let id = format!("bench-{:08}", self.next_id);
        self.events.send((id, event)).expect("queue event");
    }

    async fn answer(&mut self, function: &mut Proc, log: &Path) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout(Duration::from_millis(100), self.answers.recv()).await {
                Ok(Some(answer)) => return answer,
                Ok(None) => panic!("runtime API closed"),
                Err(_) => {
                    let tail = std::fs::read_to_string(log).unwrap_or_default();
                    if let Some(e) = function.exited() {
                        panic!("{e} without answering: {tail}");
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} did not answer within 15 s: {tail}",
                        function.what
                    );
                }
            }
        }
    }

    async fn invoke(&mut self, event: Vec<u8>, function: &mut Proc, log: &Path) -> Answer {
        self.queue(event);
        self.answer(function, log).await
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Function {
    Reader,
    Writer,
    Syncer,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::Reader => "reader",
            Function::Writer => "writer",
            Function::Syncer => "syncer",
        }
    }
}

const SYNC_RECORDS_PER_EVENT: usize = 4;

impl Bench {
    fn event(&self, f: Function, i: usize) -> Vec<u8> {
        let items = &self.read_items;
        match f {
            Function::Reader => {
                serde_json::to_vec(&request(Method::GET, &items[i % items.len()].key, None))
            }
            Function::Writer => serde_json::to_vec(&request(
                Method::PUT,
                &format!("writes/k{:03}", i % 100),
                Some(&json_body("write", i, READ_BODY_BYTES)),
            )),
            Function::Syncer => {
                let records = (0..SYNC_RECORDS_PER_EVENT)
                    .map(|r| {
                        let it = &items[(i * SYNC_RECORDS_PER_EVENT + r) % items.len()];
                        created(&it.object_key, &it.etag, it.body.len())
                    })
                    .collect();
                serde_json::to_vec(&s3_event::event(records))
            }
        }
        .expect("event JSON")
    }

    /// Whether the function answered this event correctly: a crash or an error must never look fast.
    fn check(&self, f: Function, i: usize, answer: &Answer) -> Result<(), String> {
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        if !matches!(answer.kind, AnswerKind::Response) {
            return Err(format!("{} failed: {text}", f.name()));
        }
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        let ok = match f {
            Function::Reader => {
                let want = &self.read_items[i % self.read_items.len()].body;
                let cache = v["headers"]
                    .as_object()
                    .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-cache")))
                    .and_then(|(_, v)| v.as_str());
                v["statusCode"] == 200
                    && cache == Some("HIT")
                    && v["body"].as_str().map(str::as_bytes) == Some(&want[..])
            }
            Function::Writer => v["statusCode"] == 200 || v["statusCode"] == 201,
            Function::Syncer => v["applied"] == SYNC_RECORDS_PER_EVENT && v["failed"] == 0,
        };
        ok.then_some(())
            .ok_or_else(|| format!("{} answered wrongly: {text}", f.name()))
    }

    fn spawn_function(&self, f: Function, api: &RuntimeApi, log: &Path) -> Proc {
        let log = std::fs::File::create(log).expect("log file");
        let child = Command::new(release_binary(f.name()))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("s3kv-{}", f.name()))
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_ENDPOINT_URL_S3", &self.s3_endpoint)
            .env("S3KV_BUCKET", BUCKET)
            .env("S3KV_PREFIX", PREFIX)
            .env("VALKEY_URL", &self.valkey_url)
            .env("S3KV_CACHE_TIMEOUT_MS", READER_CACHE_TIMEOUT_MS)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", f.name()));
        Proc {
            child,
            what: f.name().into(),
        }
    }

    async fn functions(&self, tmp: &Path, m: &mut Metrics) {
        let sec = "Lambda functions (release x86_64 binaries behind a local Runtime API)";
        // What the reader's and syncer's init spends on Valkey: s3kv's client settings against fred's defaults.
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..self.settings.cold_starts {
            let t0 = Instant::now();
            let cache = ValkeyCache::new(&self.valkey_url, Duration::from_millis(50)).expect("url");
            cache.connect(Duration::from_secs(1)).await;
            let _: Option<Bytes> = cache.client().get("probe").await.expect("GET");
            ours.push(t0.elapsed().as_nanos() as u64);
            let _ = cache.client().quit().await;
            let t0 = Instant::now();
            let config = fred::types::config::Config::from_url(&self.valkey_url).expect("url");
            let client = Client::new(config, None, None, None);
            client.init().await.expect("connect");
            let _: Option<Bytes> = client.get("probe").await.expect("GET");
            plain.push(t0.elapsed().as_nanos() as u64);
            let _ = client.quit().await;
        }
        ours.sort_unstable();
        plain.sort_unstable();
        let k = ours.len();
        m.add(
            sec,
            "fn.valkey_connect.s3kv",
            &format!("Valkey connect + first GET, s3kv's client settings (median of {k})"),
            "ms",
            percentile(&ours, 50.0) as f64 / 1e6,
        );
        m.add(
            sec,
            "fn.valkey_connect.fred",
            &format!("Valkey connect + first GET, fred's defaults (median of {k})"),
            "ms",
            percentile(&plain, 50.0) as f64 / 1e6,
        );
        for f in [Function::Reader, Function::Writer, Function::Syncer] {
            eprintln!("{} function: cold starts and load", f.name());
            let log = tmp.join(format!("{}.log", f.name()));
            let (mut total, mut init) = (Vec::new(), Vec::new());
            for k in 0..self.settings.cold_starts {
                let mut api = RuntimeApi::start().await;
                api.queue(self.event(f, k));
                let t0 = Instant::now();
                let mut proc = self.spawn_function(f, &api, &log);
                let answer = api.answer(&mut proc, &log).await;
                if let Err(e) = self.check(f, k, &answer) {
                    panic!("first answer of a cold start: {e}");
                }
                total.push((answer.at - t0).as_nanos() as u64);
                let first_poll = api.state.first_poll.lock().unwrap().expect("polled");
                init.push((first_poll - t0).as_nanos() as u64);
            }
            total.sort_unstable();
            init.sort_unstable();
            let name = f.name();
            m.add(
                sec,
                &format!("fn.{name}.init.p50"),
                &format!(
                    "{name}: process start → first /next (median of {})",
                    init.len()
                ),
                "ms",
                percentile(&init, 50.0) as f64 / 1e6,
            );
            m.add_target(
                sec,
                &format!("fn.{name}.cold.p50"),
                &format!(
                    "{name}: cold start proxy, process start → first answer (median of {})",
                    total.len()
                ),
                "ms",
                percentile(&total, 50.0) as f64 / 1e6,
                at_most(30.0),
            );
            m.add(
                sec,
                &format!("fn.{name}.cold.max"),
                &format!("{name}: cold start proxy, slowest of {}", total.len()),
                "ms",
                total[total.len() - 1] as f64 / 1e6,
            );

            // Under load: one warm environment, sequential invocations as Lambda sends them.
            let mut api = RuntimeApi::start().await;
            let mut proc = self.spawn_function(f, &api, &log);
            let first = api.invoke(self.event(f, 0), &mut proc, &log).await;
            self.check(f, 0, &first).unwrap_or_else(|e| panic!("{e}"));
            let rss_first = status_field(proc.pid(), "VmHWM:").unwrap_or_default();
            let mut durations = Vec::with_capacity(self.settings.invocations);
            let cpu_before = cpu_ns(proc.pid());
            for i in 1..=self.settings.invocations {
                let answer = api.invoke(self.event(f, i), &mut proc, &log).await;
                self.check(f, i, &answer)
                    .unwrap_or_else(|e| panic!("invocation {i}: {e}"));
                durations.push((answer.at - answer.served.expect("served")).as_nanos() as u64);
            }
            let cpu = (cpu_ns(proc.pid()) - cpu_before) as f64 / self.settings.invocations as f64;
            let peak = status_field(proc.pid(), "VmHWM:").expect("VmHWM of a live child");
            drop(proc);
            durations.sort_unstable();
            let n = self.settings.invocations;
            m.add(
                sec,
                &format!("fn.{name}.invoke.p50"),
                &format!("{name}: invocation duration (event out → response in), p50 of {n}"),
                "ms",
                percentile(&durations, 50.0) as f64 / 1e6,
            );
            m.add(
                sec,
                &format!("fn.{name}.invoke.p99"),
                &format!("{name}: invocation duration, p99 of {n}"),
                "ms",
                percentile(&durations, 99.0) as f64 / 1e6,
            );
            m.add(
                sec,
                &format!("fn.{name}.cpu"),
                &format!("{name}: CPU time per invocation (the function's process, every thread)"),
                "ms",
                cpu / 1e6,
            );
            m.add(
                sec,
                &format!("fn.{name}.rss.first"),
                &format!("{name}: peak RSS after the first invocation"),
                "MiB",
                rss_first as f64 / 1024.0,
            );
            m.add_target(
                sec,
                &format!("fn.{name}.rss.peak"),
                &format!("{name}: peak RSS (VmHWM) after {n} invocations"),
                "MiB",
                peak as f64 / 1024.0,
                at_most(32.0),
            );
            let billed = mean_billed_ms(&durations);
            let what = match f {
                Function::Reader => "GET",
                Function::Writer => "PUT",
                Function::Syncer => "event of 4 records",
            };
            m.add(
                BILL,
                &format!("bill.{name}.billed_ms"),
                &format!(
                    "{name} ({what}): mean billed duration (each invocation rounded up to 1 ms)"
                ),
                "ms",
                billed,
            );
            m.add(
                BILL,
                &format!("bill.{name}.gbs"),
                &format!("{name} at 128 MB: GB-s per million invocations"),
                "GB-s",
                billed * 0.125 * 1000.0,
            );
        }
    }
}

const BILL: &str = "What it means for a Lambda bill (derived from the durations above)";

/// Lambda bills each invocation's duration rounded up to the next millisecond.
fn mean_billed_ms(durations_ns: &[u64]) -> f64 {
    let total: u64 = durations_ns.iter().map(|ns| ns.div_ceil(1_000_000)).sum();
    total as f64 / durations_ns.len() as f64
}

// ---------------------------------------------------------------------------------------------------------------
// Binaries

fn elf_arch(path: &Path) -> String {
    use std::io::Read;
    let mut bytes = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        return "?".into();
    }
    if &bytes[..4] != b"\x7fELF" {
        return "not ELF".into();
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        0x3e => "x86_64".into(),
        0xb7 => "aarch64 (arm64)".into(),
        other => format!("e_machine {other:#x}"),
    }
}

fn binaries() -> Vec<FileFact> {
    let target = target_dir();
    let mut paths: Vec<PathBuf> = ["reader", "writer", "syncer", "reconcile", "s3kv-local"]
        .iter()
        .map(|b| target.join("release").join(b))
        .collect();
    paths.extend(
        ["reader", "writer", "syncer", "reconcile"]
            .iter()
            .map(|b| target.join("lambda").join(b).join("bootstrap")),
    );
    paths
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            Some(FileFact {
                path: p
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap_or(&p)
                    .display()
                    .to_string(),
                arch: elf_arch(&p),
                bytes: meta.len(),
                modified_unix: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------

async fn run() -> RunRecord {
    let settings = Settings::from_env();
    let started = Instant::now();
    let (started_unix, load_start) = (unix_now(), load_average());
    let tmp = std::env::temp_dir().join(format!("s3kv-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temp dir");
    for name in ["reader", "writer", "syncer", "s3kv-local"] {
        release_binary(name);
    }

    let valkey = start_valkey();
    let mut s3_server = start_s3(&tmp.join("s3"));
    let s3 = s3_client(&s3_server.endpoint);
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    let env: HashMap<&str, String> = HashMap::from([
        ("S3KV_BUCKET", BUCKET.to_owned()),
        ("S3KV_PREFIX", PREFIX.to_owned()),
        ("VALKEY_URL", valkey.url.clone()),
        ("AWS_ENDPOINT_URL_S3", s3_server.endpoint.clone()),
        ("S3KV_CACHE_TIMEOUT_MS", READER_CACHE_TIMEOUT_MS.to_owned()),
    ]);
    // Every other setting is the functions' default (S3KV_SYNC_CONCURRENCY 16, ...).
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("config");
    let quiet = Config::from_lookup(|k| match k {
        "S3KV_METRICS" => Some("off".to_owned()),
        _ => env.get(k).cloned(),
    })
    .expect("config");
    let store = || S3Store::new(s3.clone(), BUCKET);
    let reader_cache = ValkeyCache::new(&valkey.url, config.cache_timeout).expect("url");
    let syncer_cache = ValkeyCache::new(&valkey.url, config.sync_cache_timeout).expect("url");
    reader_cache.connect(Duration::from_secs(5)).await;
    syncer_cache.connect(Duration::from_secs(5)).await;
    let syncer = Syncer::new(store(), syncer_cache.clone(), &config);

    eprintln!(
        "seeding {} items of {READ_BODY_BYTES} B through the syncer",
        settings.items
    );
    let read_items = upload_items(&s3, &config, "read", settings.items, READ_BODY_BYTES).await;
    sync_all(&syncer, created_records(&read_items)).await;

    let bench = Bench {
        reader: Arc::new(Reader::new(store(), reader_cache.clone(), &config)),
        reader_quiet: Arc::new(Reader::new(store(), reader_cache.clone(), &quiet)),
        settings,
        valkey_pid: valkey.proc.pid(),
        s3_pid: s3_server.proc.pid(),
        s3_endpoint: s3_server.endpoint.clone(),
        valkey_url: valkey.url.clone(),
        config,
        s3,
        reader_cache,
        syncer_cache,
        syncer,
        read_items: Arc::new(read_items),
    };
    let mut m = Metrics::default();
    if bench.settings.runs("read") {
        bench.read_path(&mut m).await;
    }
    if bench.settings.runs("functions") {
        bench.functions(&tmp, &mut m).await;
    }
    if bench.settings.runs("sync") {
        bench.sync_path(&mut m).await;
    }
    if let Some(e) = s3_server.proc.exited() {
        panic!("{e}");
    }
    if bench.settings.runs("propagation") {
        propagation(&bench.settings, &tmp, &mut m).await;
    }
    let value = |id: &str| m.0.iter().find(|x| x.id == id).map(|x| x.value);
    if let (Some(seed), Some(reader)) = (value("bill.seed.gbs"), value("bill.reader.gbs")) {
        m.add(
            BILL,
            "bill.ratio",
            "compute per read: seed design / s3kv reader",
            "x",
            seed / reader,
        );
    }
    drop(bench);
    drop(s3_server);
    drop(valkey);
    let _ = std::fs::remove_dir_all(&tmp);
    RunRecord {
        started_unix,
        seconds: started.elapsed().as_secs_f64(),
        load_start,
        load_end: load_average(),
        metrics: m.0,
        files: binaries(),
    }
}

fn main() {
    match std::env::var("S3KV_BENCH_ROLE").as_deref() {
        Ok("s3") => {
            let dir = PathBuf::from(std::env::var("S3KV_BENCH_S3_DIR").expect("S3KV_BENCH_S3_DIR"));
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(serve_s3(dir));
            return;
        }
        Ok("run") => {
            // The handlers print their EMF metric lines to stdout, as in Lambda; here stdout is /dev/null.
            let record = tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(run());
            let path = std::env::var("S3KV_BENCH_RECORD").expect("S3KV_BENCH_RECORD");
            std::fs::write(&path, serde_json::to_string(&record).expect("JSON"))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            return;
        }
        Ok(other) => panic!("unknown S3KV_BENCH_ROLE {other:?}"),
        Err(_) => {}
    }
    if let Ok(path) = std::env::var("S3KV_BENCH_REPORT") {
        let runs: Vec<RunRecord> = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a run record"))
            .collect();
        assert!(!runs.is_empty(), "{path} holds no runs");
        print!("{}", report(&runs));
        return;
    }
    // One run, in a child process whose stdout (the handlers' EMF lines) goes to /dev/null, so that this
    // process's stdout is the report alone.
    let record_path =
        std::env::temp_dir().join(format!("s3kv-bench-record-{}.json", std::process::id()));
    let status = Command::new(std::env::current_exe().expect("own path"))
        .env("S3KV_BENCH_ROLE", "run")
        .env("S3KV_BENCH_RECORD", &record_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("run the benchmark");
    assert!(status.success(), "the benchmark run failed: {status}");
    let text = std::fs::read_to_string(&record_path).expect("the run's results");
    let _ = std::fs::remove_file(&record_path);
    let record: RunRecord = serde_json::from_str(&text).expect("a run record");
    match std::env::var("S3KV_BENCH_OUT") {
        Ok(path) => {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            writeln!(file, "{}", serde_json::to_string(&record).expect("JSON")).expect("write");
            eprintln!("results appended to {path}");
        }
        Err(_) => print!("{}", report(&[record])),
    }
}
