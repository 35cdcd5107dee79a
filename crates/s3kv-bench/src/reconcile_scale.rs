//! Reconcile at scale (opt-in: `S3KV_BENCH_ONLY=reconcile`): the real `reconcile` binary, run once as from a
//! shell, against the bench's S3 endpoint holding N items and a flushed Valkey (every item loaded), then again
//! (nothing to do). Wall time and peak RSS (VmHWM, sampled every 20 ms) at each size in
//! `S3KV_BENCH_RECONCILE_ITEMS` (default `20000,100000`); two sizes give the per-item slope for extrapolating.

use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use fred::prelude::*;
use futures::stream::{self, StreamExt};

use crate::procs::status_field;
use crate::read_path::Bench;
use crate::report::Metrics;
use crate::{BUCKET, PREFIX};
use s3kv_local::{ACCESS_KEY, SECRET_KEY};

const SECTION: &str = "Reconcile at scale (S3KV_BENCH_ONLY=reconcile)";

/// What one run of the binary did, from its JSON report, and what it cost.
struct Measured {
    seconds: f64,
    peak_kib: u64,
    report: serde_json::Value,
}

impl Bench {
    pub(crate) async fn reconcile_scale(&self, m: &mut Metrics) {
        let sizes: Vec<usize> = crate::settings::list("S3KV_BENCH_RECONCILE_ITEMS")
            .unwrap_or_else(|| vec!["20000".into(), "100000".into()])
            .iter()
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("S3KV_BENCH_RECONCILE_ITEMS: {n:?}"))
            })
            .collect();
        let mut uploaded = 0;
        for &n in &sizes {
            eprintln!("reconcile at scale: uploading items {uploaded}..{n}");
            self.upload_scale_items(uploaded, n).await;
            uploaded = uploaded.max(n);
            let client = Client::new(
                fred::types::config::Config::from_url(&self.valkey_url).expect("url"),
                None,
                None,
                None,
            );
            client.init().await.expect("connect");
            let _: () = client.flushall(false).await.expect("FLUSHALL");
            // The bench's own read items are in the bucket too.
            let total = uploaded + self.read_items.len();
            let listing = self.list_everything(total).await;
            m.add(
                SECTION,
                &format!("reconcile.{n}.list.seconds"),
                &format!("{total} items: listing the bucket alone, every page (baseline)"),
                "s",
                listing,
            );
            let cold = self.run_reconcile();
            check(&cold, total, total);
            let warm = self.run_reconcile();
            check(&warm, total, 0);
            for (run, measured) in [("cold", &cold), ("warm", &warm)] {
                let what = if run == "cold" {
                    "flushed cache, every item loaded"
                } else {
                    "nothing to repair"
                };
                m.add(
                    SECTION,
                    &format!("reconcile.{n}.{run}.seconds"),
                    &format!("{total} items, {what}: wall time"),
                    "s",
                    measured.seconds,
                );
                m.add(
                    SECTION,
                    &format!("reconcile.{n}.{run}.rss"),
                    &format!("{total} items, {what}: peak RSS"),
                    "MiB",
                    measured.peak_kib as f64 / 1024.0,
                );
            }
        }
    }

    /// Items `from..to` under `items/scale/`, uploaded straight to the bucket (no notifications reach a syncer).
    async fn upload_scale_items(&self, from: usize, to: usize) {
        let started = Instant::now();
        stream::iter(from..to)
            .map(|i| {
                let s3 = self.s3.clone();
                async move {
                    let body =
                        format!("{{\"n\":{i},\"enabled\":true,\"note\":\"reconcile at scale\"}}");
                    s3.put_object()
                        .bucket(BUCKET)
                        .key(format!("{PREFIX}scale/{i:07}.json"))
                        .body(ByteStream::from(body.into_bytes()))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("upload {i}: {e:?}"));
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        eprintln!(
            "  uploaded {} items in {:.0} s",
            to.saturating_sub(from),
            started.elapsed().as_secs_f64()
        );
    }

    /// Every page of the item prefix with the SDK, as reconcile lists it: what the endpoint's listing alone costs.
    async fn list_everything(&self, expected: usize) -> f64 {
        // A long attempt timeout: the file-backed endpoint takes seconds per page of a large bucket.
        let s3 = s3kv::adapters::s3::endpoint_client(
            &self.s3_endpoint,
            ACCESS_KEY,
            SECRET_KEY,
            Duration::from_secs(120),
        );
        let started = Instant::now();
        let (mut seen, mut token) = (0, None);
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(PREFIX)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("list: {e:?}"));
            seen += page.contents().len();
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        assert_eq!(seen, expected, "listed {seen} objects, uploaded {expected}");
        started.elapsed().as_secs_f64()
    }

    /// `target/release/reconcile` outside Lambda: one run, its JSON report on stdout.
    fn run_reconcile(&self) -> Measured {
        let started = Instant::now();
        let mut child = self
            .function_command("reconcile")
            .env("RUST_LOG", "warn")
            // s3kv-local's file-backed endpoint walks its directory for every listing page, so a page of a large
            // bucket takes seconds here; S3 answers one in tens of milliseconds.
            .env("S3KV_S3_TIMEOUT_MS", "60000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start target/release/reconcile");
        let pid = child.id();
        let mut peak_kib = 0;
        while child.try_wait().expect("wait").is_none() {
            peak_kib = peak_kib.max(status_field(pid, "VmHWM:").unwrap_or(0));
            std::thread::sleep(Duration::from_millis(20));
        }
        let seconds = started.elapsed().as_secs_f64();
        let output = child.wait_with_output().expect("reconcile output");
        assert!(
            output.status.success(),
            "reconcile failed: {}",
            output.status
        );
        // Logs go to stdout too, as in Lambda; the report is the last line.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let report = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("reconcile printed no report ({e}): {stdout}"));
        Measured {
            seconds,
            peak_kib,
            report,
        }
    }
}

/// A number measured on a wrong run would mean nothing: every item checked, the expected loads, no failure.
fn check(measured: &Measured, checked: usize, loaded: usize) {
    let r = &measured.report;
    let field = |name: &str| r[name].as_u64().unwrap_or(u64::MAX) as usize;
    assert!(
        field("checked") == checked
            && field("loaded") == loaded
            && field("failed") == 0
            && r["complete"] == true,
        "reconcile report {r} (expected {checked} checked, {loaded} loaded, complete)"
    );
}
