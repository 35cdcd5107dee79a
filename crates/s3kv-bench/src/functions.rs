//! The Lambda functions: the release reader, writer and syncer binaries behind the local [`RuntimeApi`], for cold
//! starts, invocation durations, CPU and peak RSS, and what those mean for a Lambda bill.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use http::Method;
use testkit::ChildServer;

use s3kv::adapters::valkey::ValkeyCache;
use s3kv::s3_event;
use s3kv_local::{ACCESS_KEY, SECRET_KEY};

use crate::data::{created, json_body, request};
use crate::load::percentile;
use crate::procs::status_field;
use crate::read_path::Bench;
use crate::report::{at_most, mean_billed_ms, Metrics, BILL};
use crate::settings::{baseline_binary, cpu_ns, release_binary};
use crate::{BUCKET, PREFIX, READER_CACHE_TIMEOUT_MS, READ_BODY_BYTES};
use testkit::runtime_api::{Answer, AnswerKind, RuntimeApi};

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Function {
    Reader,
    Writer,
    Syncer,
}

impl Function {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Function::Reader => "reader",
            Function::Writer => "writer",
            Function::Syncer => "syncer",
        }
    }
}

pub(crate) const SYNC_RECORDS_PER_EVENT: usize = 4;

impl Bench {
    pub(crate) fn event(&self, f: Function, i: usize) -> Vec<u8> {
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
    pub(crate) fn check(&self, f: Function, i: usize, answer: &Answer) -> Result<(), String> {
        self.check_answer(f, i, answer, false)
    }

    /// [`Bench::check`]; for a `baseline` build, a reader's body only has to end with the item's: an older reader
    /// does not know the entry fields added since (the provenance line) and serves them as part of the body. It
    /// must still be a 200 cache hit.
    fn check_answer(
        &self,
        f: Function,
        i: usize,
        answer: &Answer,
        baseline: bool,
    ) -> Result<(), String> {
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
                let body = v["body"].as_str().map(str::as_bytes).unwrap_or_default();
                v["statusCode"] == 200
                    && cache == Some("HIT")
                    && (body == &want[..] || (baseline && body.ends_with(want)))
            }
            Function::Writer => v["statusCode"] == 200 || v["statusCode"] == 201,
            Function::Syncer => v["applied"] == SYNC_RECORDS_PER_EVENT && v["failed"] == 0,
        };
        ok.then_some(())
            .ok_or_else(|| format!("{} answered wrongly: {text}", f.name()))
    }

    /// The release binary `name`, configured as the functions are in AWS (and nothing else from this
    /// environment), pointed at the run's S3 endpoint and Valkey.
    pub(crate) fn function_command(&self, name: &str) -> Command {
        self.binary_command(&release_binary(name))
    }

    fn binary_command(&self, binary: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_ENDPOINT_URL_S3", &self.s3_endpoint)
            .env("S3KV_BUCKET", BUCKET)
            .env("S3KV_PREFIX", PREFIX)
            .env("VALKEY_URL", &self.valkey_url);
        command
    }

    /// The function `f` behind `api`, the run's Lambda Runtime API.
    pub(crate) fn spawn_function(&self, f: Function, api: &RuntimeApi) -> ChildServer {
        self.spawn_binary(&release_binary(f.name()), f, api)
    }

    /// `binary` (this checkout's build of `f`, or the baseline's) as the function `f` behind `api`.
    fn spawn_binary(&self, binary: &Path, f: Function, api: &RuntimeApi) -> ChildServer {
        let mut command = self.binary_command(binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("s3kv-{}", f.name()))
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("S3KV_CACHE_TIMEOUT_MS", READER_CACHE_TIMEOUT_MS);
        ChildServer::spawn(f.name(), command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One cold start of `binary` as `f` with the `k`th event: nanoseconds from process start to its first
    /// `/next`, and to its first answer, which must be right.
    async fn cold_start(&self, f: Function, k: usize, binary: &Path, baseline: bool) -> (u64, u64) {
        let mut api = RuntimeApi::start().await;
        api.queue(self.event(f, k));
        let t0 = Instant::now();
        let mut proc = self.spawn_binary(binary, f, &api);
        let answer = api.answer(&mut proc).await;
        if let Err(e) = self.check_answer(f, k, &answer, baseline) {
            panic!("first answer of a cold start of {}: {e}", binary.display());
        }
        let first_poll = api.state.first_poll.lock().unwrap().expect("polled");
        (
            (first_poll - t0).as_nanos() as u64,
            (answer.at - t0).as_nanos() as u64,
        )
    }

    pub(crate) async fn functions(&self, m: &mut Metrics) {
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
            let name = f.name();
            let current = release_binary(name);
            let baseline = self
                .settings
                .baseline_bin_dir
                .as_deref()
                .map(|dir| baseline_binary(dir, name));
            let (mut init, mut total) = (Vec::new(), Vec::new());
            let (mut base_init, mut base_total) = (Vec::new(), Vec::new());
            for k in 0..self.settings.cold_starts {
                // With a baseline, the two builds take turns going first, so that neither always starts right
                // after the other (in its page cache, or while the machine is busier).
                let baseline_first = k % 2 == 1;
                if let Some(binary) = baseline.as_deref().filter(|_| baseline_first) {
                    let (i, t) = self.cold_start(f, k, binary, true).await;
                    base_init.push(i);
                    base_total.push(t);
                }
                let (i, t) = self.cold_start(f, k, &current, false).await;
                init.push(i);
                total.push(t);
                if let Some(binary) = baseline.as_deref().filter(|_| !baseline_first) {
                    let (i, t) = self.cold_start(f, k, binary, true).await;
                    base_init.push(i);
                    base_total.push(t);
                }
            }
            for v in [&mut total, &mut init, &mut base_total, &mut base_init] {
                v.sort_unstable();
            }
            let cold_target = match f {
                Function::Syncer => 10.0,
                Function::Reader | Function::Writer => 8.0,
            };
            let init_ms = percentile(&init, 50.0) as f64 / 1e6;
            let cold_ms = percentile(&total, 50.0) as f64 / 1e6;
            m.add_target(
                sec,
                &format!("fn.{name}.init.p50"),
                &format!(
                    "{name}: process start → first /next (median of {})",
                    init.len()
                ),
                "ms",
                init_ms,
                at_most(6.0),
            );
            m.add_target(
                sec,
                &format!("fn.{name}.cold.p50"),
                &format!(
                    "{name}: cold start proxy, process start → first answer (median of {})",
                    total.len()
                ),
                "ms",
                cold_ms,
                at_most(cold_target),
            );
            m.add(
                sec,
                &format!("fn.{name}.cold.max"),
                &format!("{name}: cold start proxy, slowest of {}", total.len()),
                "ms",
                total[total.len() - 1] as f64 / 1e6,
            );
            if !base_init.is_empty() {
                let n = base_init.len();
                let base_init_ms = percentile(&base_init, 50.0) as f64 / 1e6;
                let base_cold_ms = percentile(&base_total, 50.0) as f64 / 1e6;
                m.add(
                    sec,
                    &format!("fn.{name}.baseline.init.p50"),
                    &format!("{name} baseline (S3KV_BENCH_BASELINE_BIN_DIR): process start → first /next (median of {n}, same run)"),
                    "ms",
                    base_init_ms,
                );
                m.add(
                    sec,
                    &format!("fn.{name}.baseline.cold.p50"),
                    &format!("{name} baseline: cold start proxy (median of {n}, same run)"),
                    "ms",
                    base_cold_ms,
                );
                m.add(
                    sec,
                    &format!("fn.{name}.init.vs_baseline"),
                    &format!("{name}: process start → first /next, current / baseline"),
                    "x",
                    init_ms / base_init_ms,
                );
                m.add(
                    sec,
                    &format!("fn.{name}.cold.vs_baseline"),
                    &format!("{name}: cold start proxy, current / baseline"),
                    "x",
                    cold_ms / base_cold_ms,
                );
            }

            // Under load: one warm environment, sequential invocations as Lambda sends them.
            let mut api = RuntimeApi::start().await;
            let mut proc = self.spawn_function(f, &api);
            let first = api.invoke(self.event(f, 0), &mut proc).await;
            self.check(f, 0, &first).unwrap_or_else(|e| panic!("{e}"));
            let rss_first = status_field(proc.pid(), "VmHWM:").unwrap_or_default();
            let mut durations = Vec::with_capacity(self.settings.invocations);
            let cpu_before = cpu_ns(proc.pid());
            for i in 1..=self.settings.invocations {
                let answer = api.invoke(self.event(f, i), &mut proc).await;
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
