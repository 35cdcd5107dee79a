//! Propagation through s3kv-local: how long a write takes to be visible on GET, through the API and as a manual
//! upload straight to its S3 endpoint, against the release `s3kv-local` binary.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use testkit::ChildServer;

use crate::data::json_body;
use crate::http::{call, http_client, until_visible};
use crate::load::percentile;
use crate::procs::{s3_answers, s3_client, start_valkey, Valkey, START_TIMEOUT};
use crate::report::{at_most, Metrics};
use crate::settings::{release_binary, Settings};
use crate::READ_BODY_BYTES;

/// Starts `target/release/s3kv-local` (it binds ports 0 and prints what it got); returns it, its API base URL and
/// its S3 endpoint once its banner is out and both answer: the API with API Gateway's 403 for a request without
/// the key, the S3 endpoint with S3's `AccessDenied` for an unsigned one.
pub(crate) async fn start_s3kv_local(tmp: &Path, valkey: &Valkey) -> (ChildServer, String, String) {
    let mut command = Command::new(release_binary("s3kv-local"));
    command
        .args([
            "--api-addr",
            "127.0.0.1:0",
            "--s3-addr",
            "127.0.0.1:0",
            "--api-key",
            "bench-key-0123456789ab",
        ])
        .arg("--data-dir")
        .arg(tmp.join("local-data"))
        .args(["--valkey-url", &valkey.url]);
    let mut local = ChildServer::spawn("s3kv-local", command).unwrap_or_else(|e| panic!("{e}"));
    // The wait polls with sleeps: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let (api, s3_endpoint) = local
            .wait_ready(START_TIMEOUT, |local| {
                let text = local.output();
                if !text.contains("s3kv is running locally") {
                    return Err("no banner yet".to_owned());
                }
                let find = |label: &str| {
                    text.lines()
                        .filter(|l| l.trim_start().starts_with(label))
                        .filter_map(|l| l.split_whitespace().nth(1))
                        .find(|url| url.starts_with("http://"))
                        .map(str::to_owned)
                        .ok_or_else(|| format!("no {label:?} line in the banner"))
                };
                let api = find("API ")?.trim_end_matches("/items/{key}").to_owned();
                let s3 = find("S3 ")?;
                let api_answer = testkit::http::get(port_of(&api)?, "/items/bench-probe")?;
                if !api_answer.starts_with("HTTP/1.1 403") {
                    return Err(format!(
                        "the API answered a request without a key with {:?}",
                        api_answer.lines().next().unwrap_or_default()
                    ));
                }
                s3_answers(port_of(&s3)?)?;
                Ok((api, s3))
            })
            .unwrap_or_else(|e| panic!("{e}"));
        (local, api, s3_endpoint)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The port of `http://127.0.0.1:PORT`.
fn port_of(url: &str) -> Result<u16, String> {
    url.rsplit_once(':')
        .and_then(|(_, port)| port.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("no port in {url:?}"))
}

/// The propagation section and, on the same s3kv-local and valkey-server, the watch section ([`crate::watch`])
/// and the push section ([`crate::push`], only when named), whichever `S3KV_BENCH_ONLY` selects: the watch's wake
/// latency is compared with this run's propagation.
pub(crate) async fn propagation(settings: &Settings, tmp: &Path, m: &mut Metrics) {
    let valkey = start_valkey();
    let (mut local, api, s3_endpoint) = start_s3kv_local(tmp, &valkey).await;
    if settings.runs("propagation") {
        eprintln!("propagation through s3kv-local");
        let sec = "Propagation through s3kv-local (sequential writes)";
        propagate(settings, &api, &s3_endpoint, sec, "prop", m).await;
    }
    if settings.runs("watch") {
        crate::watch::watch(settings, &api, &valkey, m).await;
    }
    if settings.runs("expiry") {
        crate::expiry::expiry(settings, &api, m).await;
    }
    if settings.runs("ofrep") {
        crate::ofrep::ofrep(settings, &api, m).await;
    }
    if settings.selects("push") {
        crate::push::push(settings, &api, local.pid(), m).await;
    }
    if let Some(status) = local.exited() {
        panic!("s3kv-local exited with {status}: {}", local.output());
    }
}

pub(crate) async fn propagate(
    settings: &Settings,
    api: &str,
    s3_endpoint: &str,
    sec: &str,
    id: &str,
    m: &mut Metrics,
) {
    let target = at_most;
    let client = http_client();
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
