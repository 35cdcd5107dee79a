//! The read path: the reader handler against a raw Valkey GET on the same connection and a plain S3 GET, at
//! several concurrencies, interleaved so that outside load hits every variant alike.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use fred::prelude::*;
use http::Method;

use s3kv::adapters::valkey::ValkeyCache;
use s3kv::api;
use s3kv::config::Config;

use crate::data::{request, BenchReader, BenchSyncer, Item};
use crate::load::{run_phase, Sample};
use crate::report::{at_least, at_most, mean_billed_ms, Metrics, Target, BILL};
use crate::settings::{cpu_ns, Settings};
use crate::{BUCKET, CONCURRENCY};

/// What a run measures with: its settings, the servers' processes, and the clients and handlers under test (the
/// read and sync paths and the functions are its methods).
pub(crate) struct Bench {
    pub(crate) settings: Settings,
    pub(crate) valkey_pid: u32,
    pub(crate) s3_pid: u32,
    pub(crate) config: Config,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) s3_endpoint: String,
    pub(crate) valkey_url: String,
    pub(crate) reader_cache: ValkeyCache,
    pub(crate) reader: Arc<BenchReader>,
    /// The reader entrypoint's metrics (EMF on), which the `reader` variant writes as the Lambda does.
    pub(crate) metrics: Arc<s3kv::metrics::Metrics>,
    pub(crate) syncer_cache: ValkeyCache,
    pub(crate) syncer: BenchSyncer,
    pub(crate) read_items: Arc<Vec<Item>>,
}

pub(crate) fn check_read(response: &ApiGatewayProxyResponse, want: &[u8]) -> Result<(), String> {
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

/// The key id the read path's requests carry, as API Gateway would set it.
const BENCH_KEY_ID: &str = "benchread";

impl Bench {
    pub(crate) async fn read_path(&self, m: &mut Metrics) {
        let items = self.read_items.clone();
        let n = items.len();
        // Every request carries a read key's id, so the handler does the authorization a deployment does.
        let requests: Arc<Vec<ApiGatewayProxyRequest>> = Arc::new(
            items
                .iter()
                .map(|it| {
                    let mut request = request(Method::GET, &it.key, None);
                    request.request_context.identity.api_key_id = Some(BENCH_KEY_ID.to_owned());
                    request
                })
                .collect(),
        );
        let access = Arc::new(s3kv::access::Access::new(
            [(
                BENCH_KEY_ID.to_owned(),
                s3kv::access::Grant {
                    role: s3kv::access::Role::Read,
                    prefixes: Vec::new(),
                    name: Some("bench-read".to_owned()),
                },
            )],
            None,
        ));
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
        // `reader` does what the reader entrypoint does per request (handler, then its EMF line);
        // `reader_quiet` leaves the line out, to show what metrics cost.
        let reader_variant = |metrics: Option<Arc<s3kv::metrics::Metrics>>| -> Op {
            let (reader, requests, items, access) = (
                self.reader.clone(),
                requests.clone(),
                items.clone(),
                access.clone(),
            );
            Arc::new(move |i| {
                let (reader, requests, items, metrics, access) = (
                    reader.clone(),
                    requests.clone(),
                    items.clone(),
                    metrics.clone(),
                    access.clone(),
                );
                Box::pin(async move {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let served = api::serve_read(&*reader, &access, &requests[i], deadline).await;
                    if let Some(metrics) = &metrics {
                        metrics.emit_reads(&served.cache);
                    }
                    check_read(&served.response, &items[i].body)
                })
            })
        };
        let reader = reader_variant(Some(self.metrics.clone()));
        let reader_quiet = reader_variant(None);
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
                "reader handler without its EMF line (diagnostic)",
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
}
