//! Model-based convergence: random schedules of writes, overwrites and deletes on a few keys, with their S3
//! notifications delivered late, reordered, duplicated, and redelivered after failed invocations, interleaved
//! with reads that fill the cache on a miss. At the end every key reads exactly what S3 holds.
//!
//! The cache is a real valkey-server (its Lua script is what orders changes). S3 is an in-memory model with S3's
//! documented semantics (strongly consistent reads, content ETags, 412 on If-Match, 404): hundreds of schedules per
//! run would take minutes against moto, and the S3 adapter has its own tests against moto. Failing schedules are
//! shrunk by proptest and kept in `tests/it/convergence.proptest-regressions`.
//!
//! CI runs 256 schedules. The extended run, recorded in CONVERGENCE.md:
//! `PROPTEST_CASES=10000 scripts/test --release --test convergence`

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use s3kv::adapters::valkey::ValkeyCache;
use s3kv::config::Config;
use s3kv::key::ItemKey;
use s3kv::memory::MemoryStore;
use s3kv::ports::*;
use s3kv::read::Reader;
use s3kv::sequencer::Sequencer;
use s3kv::sync::{Change, SyncRecord, Syncer};

const KEYS: usize = 3;

/// S3 as the model: [`MemoryStore`] (S3's read semantics, in memory), plus a gate that makes the next read take its
/// snapshot now and return only when released: a syncer that read S3 and then stalled before writing the cache.
#[derive(Clone, Default)]
struct ModelS3 {
    store: MemoryStore,
    gate: Arc<Mutex<Option<Gate>>>,
}

#[derive(Clone)]
struct Gate {
    read_done: Arc<tokio::sync::Semaphore>,
    release: Arc<tokio::sync::Semaphore>,
}

impl ObjectStore for ModelS3 {
    async fn get(
        &self,
        key: &str,
        if_match: Option<&Etag>,
        max: u64,
    ) -> Result<Object, StoreError> {
        let result = self.store.get(key, if_match, max).await;
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.read_done.add_permits(1);
            let _ = gate.release.acquire().await;
        }
        result
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        mode: PutMode,
        author: &s3kv::audit::Author,
    ) -> Result<Etag, StoreError> {
        self.store.put(key, body, mode, author).await
    }
    async fn head(&self, key: &str) -> Result<Etag, StoreError> {
        self.store.head(key).await
    }
    async fn delete(&self, key: &str, if_match: Option<&Etag>) -> Result<(), StoreError> {
        self.store.delete(key, if_match).await
    }
    async fn list(
        &self,
        prefix: &str,
        next: Option<String>,
        max: usize,
    ) -> Result<ListPage, StoreError> {
        self.store.list(prefix, next, max).await
    }
    async fn list_after(
        &self,
        prefix: &str,
        after: &str,
        max: usize,
    ) -> Result<ListPage, StoreError> {
        self.store.list_after(prefix, after, max).await
    }
    async fn versions(
        &self,
        key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<s3kv::ports::VersionPage, StoreError> {
        self.store.versions(key, after, limit).await
    }
    async fn get_version(&self, key: &str, version: &str, max: u64) -> Result<Object, StoreError> {
        self.store.get_version(key, version, max).await
    }
    async fn version_provenance(
        &self,
        key: &str,
        version: &str,
    ) -> Result<s3kv::audit::Provenance, StoreError> {
        self.store.version_provenance(key, version).await
    }
}

/// The real cache, with a switch that makes every call fail as if Valkey were unreachable.
#[derive(Clone)]
struct Flaky {
    inner: ValkeyCache,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), CacheError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(CacheError::Unavailable("injected outage".into()));
        }
        Ok(())
    }
}

impl Cache for Flaky {
    async fn lookup(&self, k: &str) -> Result<CacheLookup, CacheError> {
        self.check()?;
        self.inner.lookup(k).await
    }
    async fn lookup_many(&self, k: &[String]) -> Result<Vec<CacheLookup>, CacheError> {
        self.check()?;
        self.inner.lookup_many(k).await
    }
    async fn marks_many(&self, k: &[String]) -> Result<Vec<Marks>, CacheError> {
        self.check()?;
        self.inner.marks_many(k).await
    }
    async fn apply(&self, k: &str, s: &Sequencer, c: &CacheChange) -> Result<Applied, CacheError> {
        self.check()?;
        self.inner.apply(k, s, c).await
    }
    async fn fill(&self, k: &str, o: &Object) -> Result<bool, CacheError> {
        self.check()?;
        self.inner.fill(k, o).await
    }
    async fn keys(
        &self,
        p: &str,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<String>, CacheError> {
        self.check()?;
        self.inner.keys(p, keep).await
    }
    async fn snapshot(&self, k: &str) -> Result<Option<Snapshot>, CacheError> {
        self.check()?;
        self.inner.snapshot(k).await
    }
    async fn remove_if_unchanged(&self, k: &str, e: &Snapshot) -> Result<bool, CacheError> {
        self.check()?;
        self.inner.remove_if_unchanged(k, e).await
    }
    async fn evict(&self, k: &str) -> Result<(), CacheError> {
        self.check()?;
        self.inner.evict(k).await
    }
    async fn note(&self, k: &str) -> Result<Option<String>, CacheError> {
        self.check()?;
        self.inner.note(k).await
    }
    async fn set_note(
        &self,
        k: &str,
        v: Option<&str>,
        ttl: std::time::Duration,
    ) -> Result<(), CacheError> {
        self.check()?;
        self.inner.set_note(k, v, ttl).await
    }
}

impl ExpiryIndex for Flaky {
    async fn schedule(&self, m: &str, at: s3kv::expiry::Expiry) -> Result<(), CacheError> {
        self.check()?;
        self.inner.schedule(m, at).await
    }
    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>, CacheError> {
        self.check()?;
        self.inner.due(now, limit).await
    }
    async fn unschedule(&self, m: &str) -> Result<(), CacheError> {
        self.check()?;
        self.inner.unschedule(m).await
    }
}

impl Feed for Flaky {
    async fn announce(&self, k: &str) -> Result<(), CacheError> {
        self.check()?;
        self.inner.announce(k).await
    }
    async fn tail(&self) -> Result<Cursor, CacheError> {
        self.check()?;
        self.inner.tail().await
    }
    async fn read(&self, after: Cursor, count: usize) -> Result<FeedPage, FeedError> {
        self.check()?;
        self.inner.read(after, count).await
    }
    async fn wait(&self, after: Cursor, timeout: std::time::Duration) -> Result<bool, CacheError> {
        self.check()?;
        self.inner.wait(after, timeout).await
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Write value `v` (a small set, so identical bodies and ETags recur) to key `k`, with an expiry: none, an
    /// hour ahead, or one already past (as an upload may carry; the API refuses past ones).
    Write {
        k: usize,
        v: u8,
        expiry: Expiring,
    },
    Delete {
        k: usize,
    },
    /// Deliver the pending notification at `pick` (modulo the queue); `keep` leaves a copy queued (a duplicate).
    Deliver {
        pick: usize,
        keep: bool,
    },
    /// Deliver while Valkey is unreachable: the invocation fails and the notification is queued again.
    DeliverDuringOutage {
        pick: usize,
    },
    /// Start a delivery that reads S3 now but writes the cache only at the next `Release` (or at the end).
    DeliverStalled {
        pick: usize,
    },
    /// Start a read that misses and reads S3 now, but fills the cache only at the next `Release`.
    ReadStalled {
        k: usize,
    },
    /// Let every stalled delivery and read finish.
    Release,
    /// A read, which fills the cache on a miss.
    Read {
        k: usize,
    },
}

#[derive(Debug, Clone, Copy)]
enum Expiring {
    Never,
    Later,
    Past,
}

impl Expiring {
    fn at(self) -> Option<s3kv::expiry::Expiry> {
        let now = s3kv::expiry::now();
        match self {
            Expiring::Never => None,
            Expiring::Later => Some(s3kv::expiry::Expiry::at(now + 3600)),
            Expiring::Past => Some(s3kv::expiry::Expiry::at(now - 10)),
        }
    }
}

fn expiring() -> impl Strategy<Value = Expiring> {
    prop_oneof![4 => Just(Expiring::Never), 1 => Just(Expiring::Later), 1 => Just(Expiring::Past)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..KEYS, 0..3u8, expiring()).prop_map(|(k, v, expiry)| Op::Write { k, v, expiry }),
        1 => (0..KEYS).prop_map(|k| Op::Delete { k }),
        4 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(pick, keep)| Op::Deliver { pick, keep }),
        1 => any::<usize>().prop_map(|pick| Op::DeliverDuringOutage { pick }),
        2 => (0..KEYS).prop_map(|k| Op::Read { k }),
        2 => any::<usize>().prop_map(|pick| Op::DeliverStalled { pick }),
        1 => (0..KEYS).prop_map(|k| Op::ReadStalled { k }),
        1 => Just(Op::Release),
    ]
}

struct World {
    s3: ModelS3,
    down: Arc<AtomicBool>,
    syncer: Arc<Syncer<ModelS3, Flaky>>,
    reader: Arc<Reader<ModelS3, Flaky>>,
    sequence: u64,
    pending: Vec<SyncRecord>,
    stalled: Vec<(
        Arc<tokio::sync::Semaphore>,
        tokio::task::JoinHandle<Option<SyncRecord>>,
    )>,
}

fn item(k: usize) -> ItemKey {
    ItemKey::parse(&format!("key-{k}")).unwrap()
}

impl World {
    /// `cache` is shared by every schedule (one connection); each schedule has its own key prefix.
    fn new(cache: &ValkeyCache, run: u64) -> Self {
        let cache_prefix = format!("run{run}:");
        let env: HashMap<&str, String> = HashMap::from([
            ("S3KV_BUCKET", "model".to_owned()),
            ("S3KV_CACHE_PREFIX", cache_prefix),
            ("S3KV_CACHE_TIMEOUT_MS", "2000".to_owned()),
        ]);
        let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let flaky = Flaky {
            inner: cache.clone(),
            down: down.clone(),
        };
        let s3 = ModelS3::default();
        Self {
            syncer: Arc::new(Syncer::new(s3.clone(), flaky.clone(), &config)),
            reader: Arc::new(Reader::new(s3.clone(), flaky, &config)),
            s3,
            down,
            sequence: 0,
            pending: Vec::new(),
            stalled: Vec::new(),
        }
    }

    fn notify(&mut self, k: usize, change: Change) {
        self.sequence += 1;
        let sequencer = Sequencer::from_counter(self.sequence);
        self.pending.push(SyncRecord {
            event_time: None,
            object_key: format!("key-{k}.json"),
            sequencer,
            change,
            principal: None,
        });
    }

    /// One invocation with `budget` to run (an outage burns it in retries, then the invocation fails).
    async fn deliver(&mut self, pick: usize, keep: bool, budget: Duration) {
        if self.pending.is_empty() {
            return;
        }
        let index = pick % self.pending.len();
        let record = if keep {
            self.pending[index].clone()
        } else {
            self.pending.remove(index)
        };
        let deadline = std::time::Instant::now() + budget;
        if self
            .syncer
            .run(vec![Ok(record.clone())], deadline)
            .await
            .is_err()
        {
            self.pending.push(record); // Lambda redelivers a failed invocation
        }
    }

    async fn step(&mut self, op: &Op) {
        match *op {
            Op::Write { k, v, expiry } => {
                let body = Bytes::from(format!("{{\"v\":{v}}}"));
                let author = s3kv::audit::Author {
                    expires: expiry.at(),
                    ..Default::default()
                };
                let etag = self
                    .s3
                    .put(&format!("key-{k}.json"), body, PutMode::Overwrite, &author)
                    .await
                    .unwrap();
                self.notify(k, Change::Created { etag: Some(etag) });
            }
            Op::Delete { k } => {
                self.s3
                    .delete(&format!("key-{k}.json"), None)
                    .await
                    .unwrap();
                self.notify(k, Change::Removed);
            }
            Op::Deliver { pick, keep } => self.deliver(pick, keep, Duration::from_secs(10)).await,
            Op::DeliverDuringOutage { pick } => {
                self.down.store(true, Ordering::SeqCst);
                self.deliver(pick, false, Duration::from_millis(100)).await;
                self.down.store(false, Ordering::SeqCst);
            }
            Op::Read { k } => {
                self.reader
                    .get(&item(k), common::deadline(10))
                    .await
                    .unwrap();
            }
            Op::DeliverStalled { pick } => {
                if self.pending.is_empty() {
                    return;
                }
                let record = self.pending.remove(pick % self.pending.len());
                let gate = Gate {
                    read_done: Arc::new(tokio::sync::Semaphore::new(0)),
                    release: Arc::new(tokio::sync::Semaphore::new(0)),
                };
                *self.s3.gate.lock().unwrap() = Some(gate.clone());
                let syncer = self.syncer.clone();
                // (the gate holds the syncer's S3 read)
                let task = tokio::spawn(async move {
                    let failed = syncer
                        .run(vec![Ok(record.clone())], common::deadline(10))
                        .await
                        .is_err();
                    failed.then_some(record)
                });
                let _ = gate.read_done.acquire().await; // the delivery has read S3 and now waits
                self.stalled.push((gate.release, task));
            }
            Op::ReadStalled { k } => {
                let gate = Gate {
                    read_done: Arc::new(tokio::sync::Semaphore::new(0)),
                    release: Arc::new(tokio::sync::Semaphore::new(0)),
                };
                *self.s3.gate.lock().unwrap() = Some(gate.clone());
                let reader = self.reader.clone();
                let task = tokio::spawn(async move {
                    reader.get(&item(k), common::deadline(10)).await.unwrap();
                    None
                });
                // A cache hit never reads S3, so the gate may stay unused: wait for whichever comes first.
                tokio::select! {
                    _ = gate.read_done.acquire() => self.stalled.push((gate.release, task)),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        self.s3.gate.lock().unwrap().take();
                        task.await.unwrap();
                    }
                }
            }
            Op::Release => self.release().await,
        }
    }

    async fn release(&mut self) {
        for (release, task) in self.stalled.drain(..) {
            release.add_permits(1);
            if let Some(failed) = task.await.unwrap() {
                self.pending.push(failed);
            }
        }
    }
}

static RUN: AtomicU64 = AtomicU64::new(0);

fn check(
    cache: &ValkeyCache,
    runtime: &tokio::runtime::Runtime,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    runtime.block_on(async {
        let mut world = World::new(cache, RUN.fetch_add(1, Ordering::SeqCst));
        for op in &ops {
            world.step(op).await;
        }
        // At-least-once: everything still pending is delivered eventually, in whatever order is left.
        world.release().await;
        while !world.pending.is_empty() {
            world.deliver(0, false, Duration::from_secs(10)).await;
        }
        for k in 0..KEYS {
            // The truth: S3's object and its expiry; an expired one is served as absent.
            let truth = world
                .s3
                .store
                .get(&format!("key-{k}.json"), None, u64::MAX)
                .await
                .ok()
                .map(|o| (o.body, o.provenance.expires));
            let now = s3kv::expiry::now();
            let served = truth
                .clone()
                .filter(|(_, expires)| !expires.is_some_and(|at| at.has_passed(now)));
            let read = world
                .reader
                .get(&item(k), common::deadline(10))
                .await
                .unwrap();
            prop_assert_eq!(
                read.object.map(|o| (o.body, o.provenance.expires)),
                served.clone(),
                "key-{} after {:?}",
                k,
                ops
            );
            prop_assert_eq!(
                read.expired,
                truth
                    .as_ref()
                    .and_then(|(_, e)| *e)
                    .filter(|_| served.is_none()),
                "key-{} after {:?}",
                k,
                ops
            );
            // And the cache itself never holds anything but the truth (a miss is allowed).
            if let CacheLookup::Hit(cached) = world.syncer_cache_lookup(k).await {
                prop_assert_eq!(
                    Some((cached.body, cached.provenance.expires)),
                    served,
                    "cached key-{} after {:?}",
                    k,
                    ops
                );
            }
        }
        Ok(())
    })
}

impl World {
    async fn syncer_cache_lookup(&self, k: usize) -> CacheLookup {
        // The reader above may have just filled it; look again without going through S3.
        let read = self
            .reader
            .get(&item(k), common::deadline(10))
            .await
            .unwrap();
        match (read.cache, read.object) {
            (s3kv::read::CacheStatus::Hit, Some(object)) => CacheLookup::Hit(object),
            (s3kv::read::CacheStatus::Hit, None) => CacheLookup::Tombstone,
            _ => CacheLookup::Miss,
        }
    }
}

#[test]
fn the_cache_converges_to_s3_under_any_delivery_schedule() {
    let valkey = common::Valkey::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One client for all schedules: a client per schedule, never quit, made long runs slow down steadily.
    let cache = ValkeyCache::new(&valkey.url(), Duration::from_secs(2)).unwrap();
    runtime.block_on(cache.connect(Duration::from_secs(5)));
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let config = ProptestConfig {
        cases,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..40))| {
        check(&cache, &runtime, ops)?;
    });
}
