//! A run: the servers, the seeded data, every section `S3KV_BENCH_ONLY` selects, and its record; and the
//! process roles (`S3KV_BENCH_ROLE`) that `main` dispatches on.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::config::Config;
use s3kv::read::Reader;
use s3kv::sync::Syncer;

use crate::binaries::binaries;
use crate::data::{created_records, sync_all, upload_items};
use crate::procs::{s3_client, serve_s3, start_s3, start_valkey};
use crate::propagation::propagation;
use crate::read_path::Bench;
use crate::report::BILL;
use crate::report::{load_average, report, unix_now, Metrics, RunRecord};
use crate::settings::{baseline_binary, release_binary, Settings};
use crate::{BUCKET, PREFIX, READER_CACHE_TIMEOUT_MS, READ_BODY_BYTES};

/// One run against fresh servers; panics at the first wrong answer.
pub(crate) async fn run() -> RunRecord {
    let settings = Settings::from_env();
    let started = Instant::now();
    let (started_unix, load_start) = (unix_now(), load_average());
    let tmp = std::env::temp_dir().join(format!("s3kv-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temp dir");
    // Fail before any measurement if a binary a selected section runs is missing.
    let needs = [
        ("functions", &["reader", "writer", "syncer"][..]),
        ("propagation", &["s3kv-local"]),
        ("watch", &["s3kv-local"]),
        ("ofrep", &["s3kv-local"]),
        ("expiry", &["s3kv-local"]),
    ];
    for (section, names) in needs {
        if settings.runs(section) {
            names.iter().for_each(|name| drop(release_binary(name)));
        }
    }
    if let Some(dir) = settings
        .baseline_bin_dir
        .as_deref()
        .filter(|_| settings.runs("functions"))
    {
        ["reader", "writer", "syncer"]
            .iter()
            .for_each(|name| drop(baseline_binary(dir, name)));
    }
    if settings.selects("reconcile") {
        release_binary("reconcile");
    }
    if settings.selects("push") {
        release_binary("s3kv-local");
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
    let store = || S3Store::new(s3.clone(), BUCKET);
    let reader_cache = ValkeyCache::new(&valkey.url, config.cache_timeout)
        .expect("url")
        .with_feed(&config);
    let syncer_cache = ValkeyCache::new(&valkey.url, config.sync_cache_timeout)
        .expect("url")
        .with_feed(&config);
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
        metrics: Arc::new(s3kv::metrics::Metrics::from_config(&config)),
        settings,
        valkey_pid: valkey.pid,
        s3_pid: s3_server.server.pid(),
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
        bench.functions(&mut m).await;
    }
    if bench.settings.runs("sync") {
        bench.sync_path(&mut m).await;
    }
    if bench.settings.runs("schema") {
        bench.schema_cost(&mut m).await;
    }
    // Opt-in: it uploads 100,000 items.
    if bench.settings.selects("reconcile") {
        bench.reconcile_scale(&mut m).await;
    }
    if let Some(status) = s3_server.server.exited() {
        panic!(
            "S3 endpoint exited with {status}: {}",
            s3_server.server.output()
        );
    }
    let settings = &bench.settings;
    if settings.runs("propagation")
        || settings.runs("watch")
        || settings.runs("ofrep")
        || settings.runs("expiry")
        || settings.selects("push")
    {
        propagation(&bench.settings, &tmp, &mut m).await;
    }
    if bench.settings.runs("import") {
        crate::cli_import::cli_import(&bench.settings, &tmp, &mut m).await;
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

/// A run in a child process (its stdout, the handlers' EMF lines, discarded), then its report or its results
/// appended to `S3KV_BENCH_OUT`; or a child's role; or the report of earlier runs.
pub(crate) fn main() {
    match std::env::var("S3KV_BENCH_ROLE").as_deref() {
        Ok("s3") => {
            let dir = PathBuf::from(std::env::var("S3KV_BENCH_S3_DIR").expect("S3KV_BENCH_S3_DIR"));
            let port = std::env::var("S3KV_BENCH_S3_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .expect("S3KV_BENCH_S3_PORT");
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(serve_s3(dir, port));
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
