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
//! Tombstones are respected: a tombstone for an object that is gone is left alone; a tombstone for an object that
//! exists (its create was missed) is replaced by the object.

use std::collections::HashSet;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use thiserror::Error;

use crate::config::Config;
use crate::document;
use crate::key::{KeyMap, ObjectKind};
use crate::ports::{Cache, CacheError, Etag, ObjectStore, StoreError};
use crate::retry;

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
    pub failed: usize,
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

enum Outcome {
    Unchanged,
    Loaded,
    Removed,
    Invalid,
    Raced,
}

pub struct Reconciler<S, C> {
    store: S,
    cache: C,
    keys: KeyMap,
    cache_prefix: String,
    max_object_bytes: u64,
    concurrency: usize,
}

impl<S: ObjectStore, C: Cache> Reconciler<S, C> {
    pub fn new(store: S, cache: C, config: &Config) -> Self {
        Self {
            store,
            cache,
            keys: config.key_map(),
            cache_prefix: config.cache_prefix.clone(),
            max_object_bytes: config.max_object_bytes,
            concurrency: config.sync_concurrency,
        }
    }

    pub async fn run(&self, deadline: Instant) -> Result<ReconcileReport, ReconcileError> {
        // 1. Every item in the bucket, compared with its cache entry.
        let mut items = Vec::new();
        let mut next = None;
        loop {
            let prefix = self.keys.object_prefix();
            let page = retry::with_deadline(deadline, "s3 list", || {
                self.store.list(prefix, next.clone(), 1000)
            })
            .await
            .map_err(ReconcileError::List)?;
            items.extend(page.objects.into_iter().filter_map(
                |o| match self.keys.classify(&o.key) {
                    ObjectKind::Item(key) => Some((o.key, self.keys.cache_key(&key), o.etag)),
                    _ => None,
                },
            ));
            match page.next {
                Some(token) => next = Some(token),
                None => break,
            }
        }
        let listed: HashSet<String> = items
            .iter()
            .map(|(_, cache_key, _)| cache_key.clone())
            .collect();
        let mut report = ReconcileReport {
            checked: items.len(),
            ..Default::default()
        };
        let mut errors = Vec::new();
        let outcomes: Vec<_> = stream::iter(&items)
            .map(|(object_key, cache_key, etag)| {
                self.check_present(object_key, cache_key, etag, deadline)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;

        // 2. Every cache entry whose object was not listed.
        let cached = retry::with_deadline(deadline, "cache scan", || {
            self.cache.keys(&self.cache_prefix)
        })
        .await
        .map_err(ReconcileError::Scan)?;
        let orphans: Vec<_> = cached.into_iter().filter(|k| !listed.contains(k)).collect();
        let orphan_outcomes: Vec<_> = stream::iter(&orphans)
            .map(|cache_key| self.check_absent(cache_key, deadline))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;

        for outcome in outcomes.into_iter().chain(orphan_outcomes) {
            match outcome {
                Ok(Outcome::Unchanged) => {}
                Ok(Outcome::Loaded) => report.loaded += 1,
                Ok(Outcome::Removed) => report.removed += 1,
                Ok(Outcome::Invalid) => report.skipped_invalid += 1,
                Ok(Outcome::Raced) => report.raced += 1,
                Err(error) => {
                    report.failed += 1;
                    errors.push(error);
                }
            }
        }
        tracing::info!(?report, "reconcile done");
        match errors.into_iter().next() {
            None => Ok(report),
            Some(first) => Err(ReconcileError::Partial { first, report }),
        }
    }

    /// An item the bucket holds: load it unless the cache already has this version.
    async fn check_present(
        &self,
        object_key: &str,
        cache_key: &str,
        etag: &Etag,
        deadline: Instant,
    ) -> Result<Outcome, String> {
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
        let filled = retry::with_deadline(deadline, "cache fill", || {
            self.cache.fill(cache_key, &object)
        })
        .await
        .map_err(|e| format!("{cache_key}: {e}"))?;
        Ok(if filled {
            Outcome::Loaded
        } else {
            Outcome::Raced
        })
    }

    /// A cache entry whose object was not listed: remove it if the object is really gone.
    async fn check_absent(&self, cache_key: &str, deadline: Instant) -> Result<Outcome, String> {
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
            Ok(_) => return Ok(Outcome::Raced), // created after the listing
            Err(e) => return Err(format!("{object_key}: {e}")),
        }
        Ok(if self.remove(cache_key, &snapshot, deadline).await? {
            Outcome::Removed
        } else {
            Outcome::Raced
        })
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
