//! The sync path: the syncer against the raw work it does (an S3 GET and a Valkey SET per record), in layers
//! that each add one part of the syncer, so that its cost over the raw work can be attributed by difference; and
//! the syncer's own steps alone.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use futures::stream::{self, StreamExt};

use s3kv::adapters::s3::S3Store;
use s3kv::ports::{Applied, Cache, CacheChange, Object, ObjectStore};
use s3kv::{retry, s3_event};

use crate::data::{created_records, next_sequencer, sync_all, upload_items, Item};
use crate::read_path::Bench;
use crate::report::{at_least, Metrics};
use crate::settings::cpu_ns;
use crate::{BUCKET, SYNC_BODY_BYTES};

impl Bench {
    pub(crate) async fn sync_path(&self, m: &mut Metrics) {
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
    pub(crate) async fn sync_steps(&self, m: &mut Metrics, items: &[Item]) {
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
                        // What a write through the API records.
                        provenance: s3kv::audit::Provenance {
                            writer: Some("key=a1b2c3d4e5; name=s3kv-write; request=c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into()),
                            modified: Some(1_796_000_000),
                            expires: None,
                        },
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
    pub(crate) async fn sync_variant(&self, variant: SyncVariant, items: &[Item]) -> Duration {
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
                        provenance: Default::default(),
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
                        provenance: Default::default(),
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
pub(crate) async fn syncer_read(
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
pub(crate) fn applied(result: Result<Applied, s3kv::ports::CacheError>) -> Result<(), String> {
    match result {
        Ok(Applied::Applied) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

pub(crate) async fn sdk_get(s3: &aws_sdk_s3::Client, object_key: &str) -> Result<Bytes, String> {
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

pub(crate) async fn raw_set(client: &Client, cache_key: &str, body: Bytes) -> Result<(), String> {
    client
        .set::<(), _, _>(cache_key, body, None, None, false)
        .await
        .map_err(|e| e.to_string())
}

/// Runs `work` for every item, `concurrency` at a time as the syncer does, and returns how long that took;
/// any failure stops the run.
pub(crate) async fn per_item<'a, F, Fut>(items: &'a [Item], concurrency: usize, work: F) -> Duration
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
pub(crate) enum SyncVariant {
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

pub(crate) struct SyncLayer {
    pub(crate) variant: SyncVariant,
    pub(crate) id: &'static str,
    pub(crate) label: &'static str,
    /// The layer this one is reported as a ratio of.
    pub(crate) against: Option<usize>,
}

pub(crate) const RAW: usize = 0;
pub(crate) const SYNCER: usize = 5;
pub(crate) const SET_ALONE: usize = 6;
// The indices above name their layers, whatever is inserted before them.
const _: () = assert!(matches!(SYNC_LAYERS[RAW].variant, SyncVariant::Raw));
const _: () = assert!(matches!(SYNC_LAYERS[SYNCER].variant, SyncVariant::Syncer));
const _: () = assert!(matches!(
    SYNC_LAYERS[SET_ALONE].variant,
    SyncVariant::SetAlone
));
/// One of the syncer's own steps, timed alone: an id, a label, and the step over item `i`.
pub(crate) type Step<'a> = (&'static str, &'static str, Box<dyn FnMut(usize) + 'a>);

/// A Lua script that only does what cache.lua must do in any case: one SET of the value, from inside a script.
pub(crate) const SCRIPT_SET: &str = "redis.call('SET', KEYS[1], ARGV[1]) return 1";

pub(crate) const SYNC_LAYERS: [SyncLayer; 9] = [
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
