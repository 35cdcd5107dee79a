//! Making the cache match the bucket: fills a fresh or flushed cache, and repairs anything the notification path
//! missed (an event that ended in the failure queue, a cache restored from an old snapshot).
//!
//! Safe while writes and syncs go on, because it never writes an item under a sequencer. It only does two
//! things, and both are safe against any concurrent change:
//! * **fill** what is missing, with the reader's only-if-absent fill, so a synced entry always wins;
//! * **remove** an entry that is stale (wrong version, or its object is gone), and only if the entry is still
//!   exactly what reconcile looked at. The worst a race can do is remove a live entry, and the next read refills
//!   it from S3.
//!
//! A repair that changes what reads answer (a stale entry replaced or removed) is announced on the change feed,
//! as a sync would be.
//!
//! Tombstones are respected: a tombstone for an object that is gone is left alone; a tombstone for an object that
//! exists (its create was missed) is replaced by the object.
//!
//! It streams, so memory stays bounded however large the bucket: the bucket is compared page by page (1,000 keys),
//! and only an 8-byte hash of each listed key is kept, to tell the orphans apart in the cache scan afterwards. A
//! bucket too large for one invocation is done in several: when the deadline nears, the run stops after a page,
//! notes the last key it compared in the cache, and the next run resumes after it (S3's `StartAfter`). The orphan
//! scan runs once the walk reaches the end; entries listed in an earlier invocation are not in this one's hashes,
//! and for those the orphan check asks S3 (HEAD) instead: more requests, never a wrong removal.
//!
//! A document it loads that breaks its prefix's schema is loaded all the same (S3 is the truth) and counted and
//! logged, as the syncer does. Documents the cache already holds are not read, so not checked: `s3kv validate`
//! checks everything stored.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use thiserror::Error;

use crate::config::Config;
use crate::document;
use crate::key::{ItemKey, KeyMap, ObjectKind};
use crate::ports::{Cache, CacheError, Etag, ExpiryIndex, Feed, ObjectStore, StoreError};
use crate::retry;
use crate::schema::{SchemaSet, Schemas};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Items in the bucket that were compared with the cache.
    pub checked: usize,
    /// Items the cache lacked or held in an older version, now loaded.
    pub loaded: usize,
    /// Cache entries whose object is gone, now removed.
    pub removed: usize,
    /// Objects that are not servable documents (not JSON, too large): not loaded.
    pub skipped_invalid: usize,
    /// Entries that changed while reconcile looked at them (a sync got there first): left alone.
    pub raced: usize,
    /// Items the full cache refused to take (it answers OOM at its storage cap): left to S3, which reads answer
    /// from, until the cache has room. Counted, not failed: retrying cannot free memory.
    pub cache_full: usize,
    /// Loaded documents that break their prefix's schema (also in `loaded`).
    pub schema_violations: usize,
    pub failed: usize,
    /// Whether this run reached the end of the bucket and scanned the cache for orphans; `false` when it stopped
    /// at its deadline and left a note for the next run.
    pub complete: bool,
    /// The item object key this run resumed after, when an earlier run stopped there.
    pub resumed_after: Option<String>,
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("listing the bucket failed: {0}")]
    List(#[source] StoreError),
    #[error("scanning the cache failed: {0}")]
    Scan(#[source] CacheError),
    #[error("{} keys could not be reconciled (first error: {first}); the rest were", report.failed)]
    Partial {
        first: String,
        report: ReconcileReport,
    },
}

/// Keys per listing page (S3's maximum).
const PAGE: usize = 1000;
/// How long before its deadline a run stops listing (or a quarter of its time, when it has less).
const STOP_BEFORE_DEADLINE: Duration = Duration::from_secs(60);
/// How long one key's requests are retried before the key is counted failed and named, and the run goes on: one
/// object that keeps failing (a corrupt file behind s3kv-local, a key S3 keeps answering 503 for) must not hold
/// the whole run, or s3kv-local's start, until the run's deadline.
const KEY_RETRY_BOUND: Duration = Duration::from_secs(20);
/// A resume note older than this is forgotten, and the walk starts again from the beginning.
const RESUME_NOTE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Listed keys are remembered by a 64-bit hash: 1,000,000 keys take about 16 MB. A collision can only make the
/// orphan scan skip one stale entry (left for the next run), never remove a live one.
fn hash(cache_key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    cache_key.hash(&mut hasher);
    hasher.finish()
}

fn tally(
    report: &mut ReconcileReport,
    errors: &mut Vec<String>,
    outcomes: Vec<Result<Outcome, String>>,
) {
    for outcome in outcomes {
        match outcome {
            Ok(Outcome::Unchanged) => {}
            Ok(Outcome::Loaded) => report.loaded += 1,
            Ok(Outcome::LoadedInvalid) => {
                report.loaded += 1;
                report.schema_violations += 1;
            }
            Ok(Outcome::Removed) => report.removed += 1,
            Ok(Outcome::Invalid) => report.skipped_invalid += 1,
            Ok(Outcome::Raced) => report.raced += 1,
            Ok(Outcome::NotCached) => report.cache_full += 1,
            Err(error) => {
                report.failed += 1;
                errors.push(error);
            }
        }
    }
}

fn finish(report: ReconcileReport, errors: Vec<String>) -> Result<ReconcileReport, ReconcileError> {
    match errors.into_iter().next() {
        None => Ok(report),
        Some(first) => Err(ReconcileError::Partial { first, report }),
    }
}

/// One listed item, as [`Reconciler::check_present`] compares it.
struct Listed<'a> {
    object_key: &'a str,
    key: &'a ItemKey,
    cache_key: &'a str,
    etag: &'a Etag,
}

enum Outcome {
    Unchanged,
    Loaded,
    /// Loaded, and it breaks its schema (logged where it was found).
    LoadedInvalid,
    Removed,
    Invalid,
    Raced,
    NotCached,
}

pub struct Reconciler<S, C> {
    store: S,
    cache: C,
    keys: KeyMap,
    schemas: Schemas,
    cache_prefix: String,
    max_object_bytes: u64,
    concurrency: usize,
    page_size: usize,
}

impl<S: ObjectStore, C: Cache + Feed + ExpiryIndex> Reconciler<S, C> {
    pub fn new(store: S, cache: C, config: &Config) -> Self {
        Self {
            store,
            cache,
            keys: config.key_map(),
            schemas: Schemas::new(config.key_map()),
            cache_prefix: config.cache_prefix.clone(),
            max_object_bytes: config.max_object_bytes,
            concurrency: config.sync_concurrency,
            page_size: PAGE,
        }
    }

    /// Listing pages of `keys` keys instead of S3's 1,000: more, smaller steps (tests of the resume path).
    pub fn with_page_size(mut self, keys: usize) -> Self {
        self.page_size = keys.clamp(1, PAGE);
        self
    }

    /// The note that says where an interrupted walk resumes; a NUL-free control character keeps it outside every
    /// item's cache key (keys have no control characters) while the cache user's ACL (`~<prefix>*`) still allows it.
    fn resume_key(&self) -> String {
        format!("{}\u{1}reconcile-resume-after", self.cache_prefix)
    }

    pub async fn run(&self, deadline: Instant) -> Result<ReconcileReport, ReconcileError> {
        // Stop listing new pages with this much time left: one page's checks and the note must still fit.
        let stop_at = deadline
            .checked_sub(
                STOP_BEFORE_DEADLINE.min(deadline.saturating_duration_since(Instant::now()) / 4),
            )
            .unwrap_or(deadline);
        self.run_until(stop_at, deadline).await
    }

    /// [`Reconciler::run`], listing no new page after `stop_listing_at`.
    pub async fn run_until(
        &self,
        stop_listing_at: Instant,
        deadline: Instant,
    ) -> Result<ReconcileReport, ReconcileError> {
        let resume_key = self.resume_key();
        let resumed_after = match self.cache.note(&resume_key).await {
            Ok(after) => after,
            Err(error) => {
                tracing::warn!(%error, "no resume note readable; reconciling from the start");
                None
            }
        };
        let mut report = ReconcileReport {
            resumed_after: resumed_after.clone(),
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut listed: HashSet<u64> = HashSet::new();
        let schemas = &match self.schemas.current(&self.store, deadline).await {
            Ok(set) => set,
            Err(error) => {
                tracing::warn!(%error, "schemas unavailable: loaded documents are not checked");
                SchemaSet::default()
            }
        };

        // 1. Every item in the bucket, compared with its cache entry, a page at a time.
        let prefix = self.keys.object_prefix();
        let mut next: Option<String> = None;
        let mut first = true;
        loop {
            let page = retry::with_deadline(deadline, "s3 list", || {
                let next = next.clone();
                let after = resumed_after.clone().filter(|_| first);
                async move {
                    match after {
                        Some(after) => self.store.list_after(prefix, &after, self.page_size).await,
                        None => self.store.list(prefix, next, self.page_size).await,
                    }
                }
            })
            .await
            .map_err(ReconcileError::List)?;
            first = false;
            let last_key = page.objects.last().map(|o| o.key.clone());
            let items: Vec<(String, ItemKey, String, Etag)> = page
                .objects
                .into_iter()
                .filter_map(|o| match self.keys.classify(&o.key) {
                    ObjectKind::Item(key) => {
                        let cache_key = self.keys.cache_key(&key);
                        Some((o.key, key, cache_key, o.etag))
                    }
                    _ => None,
                })
                .collect();
            report.checked += items.len();
            listed.extend(items.iter().map(|(_, _, cache_key, _)| hash(cache_key)));
            let outcomes: Vec<_> = stream::iter(&items)
                .map(|(object_key, key, cache_key, etag)| {
                    let item = Listed {
                        object_key,
                        key,
                        cache_key,
                        etag,
                    };
                    self.check_present(item, schemas, deadline)
                })
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
            tally(&mut report, &mut errors, outcomes);
            match (page.next, last_key) {
                (Some(token), Some(last)) => {
                    if Instant::now() >= stop_listing_at {
                        self.note_resume(&resume_key, Some(&last)).await;
                        tracing::info!(?report, resume_after = %last, "reconcile stopped at its deadline; the next run resumes");
                        return finish(report, errors);
                    }
                    next = Some(token);
                }
                _ => break,
            }
        }

        // 2. Every cache entry whose object was not listed.
        let unlisted = |cache_key: &str| !listed.contains(&hash(cache_key));
        let orphans = retry::with_deadline(deadline, "cache scan", || {
            self.cache.keys(&self.cache_prefix, &unlisted)
        })
        .await
        .map_err(ReconcileError::Scan)?;
        let orphan_outcomes: Vec<_> = stream::iter(&orphans)
            .map(|cache_key| self.check_absent(cache_key, resumed_after.as_deref(), deadline))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        tally(&mut report, &mut errors, orphan_outcomes);
        if report.resumed_after.is_some() {
            self.note_resume(&resume_key, None).await;
        }
        report.complete = true;
        tracing::info!(?report, "reconcile done");
        finish(report, errors)
    }

    /// Best effort: without the note the next run starts from the beginning, which is only slower.
    async fn note_resume(&self, key: &str, after: Option<&str>) {
        if let Err(error) = self.cache.set_note(key, after, RESUME_NOTE_TTL).await {
            tracing::warn!(%error, "resume note not written; the next run starts from the beginning");
        }
    }

    /// An item the bucket holds: load it unless the cache already has this version.
    async fn check_present(
        &self,
        item: Listed<'_>,
        schemas: &SchemaSet,
        deadline: Instant,
    ) -> Result<Outcome, String> {
        let deadline = deadline.min(Instant::now() + KEY_RETRY_BOUND);
        let Listed {
            object_key,
            key,
            cache_key,
            etag,
        } = item;
        // Some S3-compatible servers list no ETags; then only a read can tell which version is current.
        let mut etag = Some(etag.clone()).filter(|e| !e.as_str().is_empty());
        let snapshot = self.snapshot(cache_key, deadline).await?;
        if let Some(snapshot) = &snapshot {
            if snapshot.tombstone.is_none()
                && snapshot.etag.is_some()
                && snapshot.etag == etag.as_ref().map(|e| e.as_str().to_owned())
            {
                return Ok(Outcome::Unchanged);
            }
            // The listing may be older than the cache (a sync landed since): ask S3 for its current version, and
            // keep an entry that already holds it, sequencer and all.
            match retry::with_deadline(deadline, "s3 head", || self.store.head(object_key)).await {
                Ok(current)
                    if snapshot.tombstone.is_none()
                        && snapshot.etag.as_deref() == Some(current.as_str()) =>
                {
                    return Ok(Outcome::Unchanged);
                }
                Ok(current) => etag = Some(current),
                Err(StoreError::NotFound) => return Ok(Outcome::Raced), // deleted since: its event does the work
                Err(e) => return Err(format!("{object_key}: {e}")),
            }
            if !self.remove(cache_key, snapshot, deadline).await? {
                return Ok(Outcome::Raced);
            }
            // Readers saw the stale version until now: a change their watchers missed.
            self.announce(cache_key).await;
        }
        let read = retry::with_deadline(deadline, "s3 get", || {
            self.store
                .get(object_key, etag.as_ref(), self.max_object_bytes)
        })
        .await;
        let object = match read {
            Ok(object) => object,
            // Changed since the listing: its notification brings the new state.
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => {
                return Ok(Outcome::Raced)
            }
            Err(StoreError::TooLarge { .. }) => return Ok(Outcome::Invalid),
            Err(e) => return Err(format!("{object_key}: {e}")),
        };
        if document::validate(&object.body).is_err() {
            return Ok(Outcome::Invalid);
        }
        let filled = match retry::with_deadline(deadline, "cache fill", || {
            self.cache.fill(cache_key, &object)
        })
        .await
        {
            Ok(filled) => filled,
            Err(CacheError::Full(_)) => return Ok(Outcome::NotCached),
            Err(e) => return Err(format!("{cache_key}: {e}")),
        };
        if !filled {
            return Ok(Outcome::Raced);
        }
        // A write whose notification was lost was never scheduled either; the reaper checks the object itself.
        if let Some(at) = object.provenance.expires {
            let member = crate::expiry::member(key, at);
            retry::with_deadline(deadline, "expiry schedule", || {
                self.cache.schedule(&member, at)
            })
            .await
            .map_err(|e| format!("{cache_key}: {e}"))?;
        }
        Ok(match schemas.violations(key.as_str(), &object.body) {
            Some(v) => {
                tracing::warn!(%object_key, schema = %v.schema, violations = v.count, "loaded a document that breaks its schema (uploaded around the API); fix it or its schema");
                Outcome::LoadedInvalid
            }
            None => Outcome::Loaded,
        })
    }

    /// A cache entry whose object was not listed: remove it if the object is really gone. An object up to
    /// `listed_before` was listed by an earlier run of an interrupted walk.
    async fn check_absent(
        &self,
        cache_key: &str,
        listed_before: Option<&str>,
        deadline: Instant,
    ) -> Result<Outcome, String> {
        let deadline = deadline.min(Instant::now() + KEY_RETRY_BOUND);
        let Some(key) = self.keys.item_from_cache_key(cache_key) else {
            return Ok(Outcome::Unchanged);
        };
        let Some(snapshot) = self.snapshot(cache_key, deadline).await? else {
            return Ok(Outcome::Unchanged);
        };
        if snapshot.tombstone.is_some() {
            return Ok(Outcome::Unchanged);
        }
        let object_key = self.keys.object_key(&key);
        match retry::with_deadline(deadline, "s3 head", || self.store.head(&object_key)).await {
            Err(StoreError::NotFound) => {}
            Ok(_) if listed_before.is_some_and(|last| object_key.as_str() <= last) => {
                return Ok(Outcome::Unchanged)
            }
            Ok(_) => return Ok(Outcome::Raced), // created after the listing
            Err(e) => return Err(format!("{object_key}: {e}")),
        }
        Ok(if self.remove(cache_key, &snapshot, deadline).await? {
            self.announce(cache_key).await;
            Outcome::Removed
        } else {
            Outcome::Raced
        })
    }

    /// Tells watchers of a repair that changed what reads answer. Filling an entry that was missing changes
    /// nothing a reader sees (a miss reads the same object from S3), so a fresh cache's fill announces nothing and
    /// cannot flood the feed. Best effort: a watcher that misses it sees the repair at its wait's end.
    async fn announce(&self, cache_key: &str) {
        let Some(key) = self.keys.item_from_cache_key(cache_key) else {
            return;
        };
        if let Err(error) = self.cache.announce(key.as_str()).await {
            tracing::warn!(key = %key, %error, "repair not announced to watchers");
        }
    }

    async fn snapshot(
        &self,
        cache_key: &str,
        deadline: Instant,
    ) -> Result<Option<crate::ports::Snapshot>, String> {
        retry::with_deadline(deadline, "cache snapshot", || {
            self.cache.snapshot(cache_key)
        })
        .await
        .map_err(|e| format!("{cache_key}: {e}"))
    }

    async fn remove(
        &self,
        cache_key: &str,
        snapshot: &crate::ports::Snapshot,
        deadline: Instant,
    ) -> Result<bool, String> {
        retry::with_deadline(deadline, "cache remove", || {
            self.cache.remove_if_unchanged(cache_key, snapshot)
        })
        .await
        .map_err(|e| format!("{cache_key}: {e}"))
    }
}
