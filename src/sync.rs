//! Applying S3 changes to the cache, in sequencer order, idempotently.
//!
//! Records of one event are applied concurrently: the order between records for one key is enforced by the cache
//! (each change carries its sequencer and the Lua script keeps the newest), not by the order we process them in.
//! A record that cannot be applied because S3 or Valkey is down fails the whole invocation after the others are
//! done, so Lambda redelivers the event; re-applying the records that did succeed changes nothing.
//!
//! A document that breaks its prefix's schema ([`crate::schema`]) reached S3 around the writer (an upload): S3 is
//! the truth, so it is cached and served all the same, and counted (`SchemaViolations`) and logged so someone
//! fixes it.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use thiserror::Error;

use crate::audit;
use crate::config::Config;
use crate::document;
use crate::expiry;
use crate::key::{ItemKey, KeyMap, ObjectKind};
use crate::ports::{
    Applied, Cache, CacheChange, CacheError, Etag, ExpiryIndex, Feed, ObjectStore, StoreError,
    Unservable,
};
use crate::retry;
use crate::schema::{SchemaSet, Schemas, Violations};
use crate::sequencer::Sequencer;

/// One S3 change, already decoded from its notification record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecord {
    /// The object key, URL-decoded.
    pub object_key: String,
    pub sequencer: Sequencer,
    pub change: Change,
    /// S3's `eventTime`, for the propagation lag metric.
    pub event_time: Option<std::time::SystemTime>,
    /// Who made the change (`userIdentity.principalId`): the writer of an upload, which has no s3kv metadata.
    pub principal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `ObjectCreated:*`, with the event's ETag when it has one.
    Created { etag: Option<Etag> },
    /// `ObjectRemoved:*`.
    Removed,
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The cache now reflects this record.
    Applied,
    /// The cache now reflects this record, a document that breaks the schema of its prefix.
    AppliedInvalid(Violations),
    /// The cache already held this record or a newer one (duplicate or late delivery).
    Stale,
    /// S3 holds a newer version (or none) than the record describes; the record for that change does the work.
    Superseded,
    /// Not an s3kv item (outside the prefix, no `.json`, or an event type we do not handle).
    Ignored,
    /// The cache is full and refused the change: the item's entry was removed, so its reads go to S3 (which
    /// holds the change) until the cache has room again and the next change or reconcile stores it. Counted
    /// (`CacheFull`) and logged, not retried: a retry cannot free memory.
    NotCached,
    /// A bad record or a bad object: logged and counted, never retried. Bad objects leave a tombstone so an older
    /// good value is not served in their place.
    Skipped(String),
}

#[derive(Debug, Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Counts for one invocation; logged, and returned as the invocation's result.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub records: usize,
    pub applied: usize,
    pub stale: usize,
    pub superseded: usize,
    pub ignored: usize,
    pub skipped: usize,
    /// Changes the full cache refused ([`Outcome::NotCached`]).
    pub cache_full: usize,
    /// Applied documents that break their prefix's schema ([`Outcome::AppliedInvalid`]); also in `applied`.
    pub schema_violations: usize,
    pub failed: usize,
    /// For each applied record with an `eventTime`: milliseconds from that time to the cache write.
    #[serde(skip)]
    pub lag_ms: Vec<u64>,
}

impl SyncReport {
    pub fn count(&mut self, outcome: &Result<Outcome, RecordError>) {
        self.records += 1;
        match outcome {
            Ok(Outcome::Applied) => self.applied += 1,
            Ok(Outcome::AppliedInvalid(_)) => {
                self.applied += 1;
                self.schema_violations += 1;
            }
            Ok(Outcome::Stale) => self.stale += 1,
            Ok(Outcome::Superseded) => self.superseded += 1,
            Ok(Outcome::Ignored) => self.ignored += 1,
            Ok(Outcome::Skipped(_)) => self.skipped += 1,
            Ok(Outcome::NotCached) => self.cache_full += 1,
            Err(_) => self.failed += 1,
        }
    }
}

#[derive(Debug, Error)]
#[error("{failed} of {records} records could not be synced (first error: {first}); failing so the event is redelivered")]
pub struct SyncError {
    pub failed: usize,
    pub records: usize,
    pub first: RecordError,
    pub report: SyncReport,
}

pub struct Syncer<S, C> {
    store: S,
    cache: C,
    keys: KeyMap,
    schemas: Schemas,
    max_object_bytes: u64,
    tombstone_ttl: Duration,
    concurrency: usize,
}

impl<S: ObjectStore, C: Cache + Feed + ExpiryIndex> Syncer<S, C> {
    pub fn new(store: S, cache: C, config: &Config) -> Self {
        Self {
            store,
            cache,
            keys: config.key_map(),
            schemas: Schemas::new(config.key_map()),
            max_object_bytes: config.max_object_bytes,
            tombstone_ttl: config.tombstone_ttl,
            concurrency: config.sync_concurrency,
        }
    }

    /// Applies every record; records that failed to decode arrive as `Err(reason)` and are counted as skipped.
    pub async fn run(
        &self,
        records: Vec<Result<SyncRecord, String>>,
        deadline: Instant,
    ) -> Result<SyncReport, SyncError> {
        let mut lags = Vec::new();
        let schemas = &self.schemas_for(&records, deadline).await;
        let outcomes: Vec<Result<Outcome, RecordError>> = stream::iter(records)
            .map(|record| async move {
                let record = match record {
                    Ok(record) => record,
                    Err(reason) => return (Ok(Outcome::Skipped(reason)), None),
                };
                let outcome = self.apply(&record, schemas, deadline).await;
                let lag = record
                    .event_time
                    .filter(|_| {
                        matches!(outcome, Ok(Outcome::Applied | Outcome::AppliedInvalid(_)))
                    })
                    .and_then(|t| t.elapsed().ok());
                match &outcome {
                    Ok(Outcome::AppliedInvalid(violations)) => {
                        let first = violations.listed.first().map(|v| format!("{}: {}", v.path, v.message));
                        tracing::warn!(object_key = %record.object_key, schema = %violations.schema, violations = violations.count, first = first.as_deref().unwrap_or(""), "cached a document that breaks its schema (uploaded around the API); fix it or its schema")
                    }
                    Ok(Outcome::Skipped(reason)) => {
                        tracing::warn!(object_key = %record.object_key, sequencer = %record.sequencer, %reason, "record skipped")
                    }
                    Ok(Outcome::NotCached) => {
                        tracing::warn!(object_key = %record.object_key, sequencer = %record.sequencer, "cache full: change not cached, reads of this item go to S3")
                    }
                    Err(error) => {
                        tracing::error!(object_key = %record.object_key, sequencer = %record.sequencer, %error, "record failed")
                    }
                    Ok(_) => {}
                }
                (outcome, lag)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|(outcome, lag)| {
                lags.extend(lag.map(|l| l.as_millis() as u64));
                outcome
            })
            .collect();
        let mut report = SyncReport {
            lag_ms: lags,
            ..SyncReport::default()
        };
        outcomes.iter().for_each(|o| report.count(o));
        match outcomes.into_iter().find_map(Result::err) {
            None => Ok(report),
            Some(first) => Err(SyncError {
                failed: report.failed,
                records: report.records,
                first,
                report,
            }),
        }
    }

    /// The schemas to check this event's documents against, if any record stores one. Without them (S3 failed
    /// to list them) the documents are still cached, unchecked: the count is a warning, the cache is the job.
    async fn schemas_for(
        &self,
        records: &[Result<SyncRecord, String>],
        deadline: Instant,
    ) -> SchemaSet {
        let stores_an_item = records.iter().flatten().any(|r| {
            r.change != Change::Removed
                && matches!(self.keys.classify(&r.object_key), ObjectKind::Item(_))
        });
        if !stores_an_item {
            return SchemaSet::default();
        }
        match self.schemas.current(&self.store, deadline).await {
            Ok(set) => set,
            Err(error) => {
                tracing::warn!(%error, "schemas unavailable: this event's documents are cached unchecked");
                SchemaSet::default()
            }
        }
    }

    async fn apply(
        &self,
        record: &SyncRecord,
        schemas: &SchemaSet,
        deadline: Instant,
    ) -> Result<Outcome, RecordError> {
        let key = match self.keys.classify(&record.object_key) {
            ObjectKind::Item(key) => key,
            ObjectKind::Foreign => return Ok(Outcome::Ignored),
            ObjectKind::Invalid(error) => {
                return Ok(Outcome::Skipped(format!("invalid item key: {error}")))
            }
        };
        let cache_key = self.keys.cache_key(&key);
        let outcome = match self
            .apply_item(record, &key, &cache_key, schemas, deadline)
            .await
        {
            Err(RecordError::Cache(CacheError::Full(_))) => {
                retry::with_deadline(deadline, "cache evict", || self.cache.evict(&cache_key))
                    .await?;
                Outcome::NotCached
            }
            other => other?,
        };
        // Announced once the cache holds the change, so a watcher that wakes reads it. A stale record is announced
        // too: it may be the redelivery of one whose announcement failed, and watchers read the current state,
        // so a repeat costs them nothing. A superseded record's successor announces.
        if !matches!(outcome, Outcome::Superseded | Outcome::Ignored) {
            match retry::with_deadline(deadline, "feed announce", || {
                self.cache.announce(key.as_str())
            })
            .await
            {
                Ok(()) => {}
                // The cache holds the change; only the announcement is lost, and a waiter on the item still sees
                // it when its wait ends. Failing the record would not help: a full cache refuses the entry again,
                // and a refused command (no permission, the feed's key taken by another type) is refused again.
                // Only an unreachable Valkey is worth the redelivery, which then announces the stale record.
                Err(error @ (CacheError::Full(_) | CacheError::Unexpected(_))) => {
                    tracing::warn!(key = %key, %error, "change not announced to watchers")
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(outcome)
    }

    async fn apply_item(
        &self,
        record: &SyncRecord,
        key: &ItemKey,
        cache_key: &str,
        schemas: &SchemaSet,
        deadline: Instant,
    ) -> Result<Outcome, RecordError> {
        // Both kinds read S3's current state. A create reads its own version (If-Match: a 412 or 404 means a newer
        // change exists, and its record does the work). A delete confirms the object is gone: in a versioned
        // bucket, deleting a delete marker restores an object and sends only an ObjectRemoved event, so a
        // delete whose object exists stores that object (the newest state) under the delete's sequencer.
        let if_match = match &record.change {
            Change::Created { etag } => etag.as_ref(),
            Change::Removed => None,
        };
        let read = retry::with_deadline(deadline, "s3 get", || {
            self.store
                .get(&record.object_key, if_match, self.max_object_bytes)
        })
        .await;
        let mut broken = None;
        let change = match read {
            Ok(mut object) => match document::validate(&object.body) {
                Ok(()) => {
                    if object.provenance.writer.as_deref() == Some(audit::UPLOAD) {
                        object.provenance.writer = Some(audit::upload(record.principal.as_deref()));
                    }
                    broken = schemas.violations(key.as_str(), &object.body);
                    CacheChange::Put(object)
                }
                Err(error) => {
                    let invalid = self.tombstone(Unservable::INVALID_DOCUMENT);
                    self.apply_change(cache_key, record, &invalid, deadline)
                        .await?;
                    return Ok(Outcome::Skipped(format!(
                        "object is not valid JSON: {error}"
                    )));
                }
            },
            Err(StoreError::NotFound) if record.change == Change::Removed => {
                self.tombstone("deleted")
            }
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => {
                return Ok(Outcome::Superseded)
            }
            Err(error @ StoreError::TooLarge { .. }) => {
                self.apply_change(
                    cache_key,
                    record,
                    &self.tombstone(Unservable::TOO_LARGE),
                    deadline,
                )
                .await?;
                return Ok(Outcome::Skipped(error.to_string()));
            }
            Err(error) => return Err(error.into()),
        };
        let applied = self
            .apply_change(cache_key, record, &change, deadline)
            .await?;
        // Scheduled whether the change was applied or stale: the object read is S3's current one either way, and
        // a redelivery (stale by then) must still schedule what a failed first attempt did not. A member is only
        // a time to look (see crate::expiry), so scheduling twice, or for a version since replaced, is harmless.
        if let CacheChange::Put(object) = &change {
            if let Some(at) = object.provenance.expires {
                let member = expiry::member(key, at);
                retry::with_deadline(deadline, "expiry schedule", || {
                    self.cache.schedule(&member, at)
                })
                .await?;
            }
        }
        Ok(match applied {
            Applied::Applied => match broken {
                Some(violations) => Outcome::AppliedInvalid(violations),
                None => Outcome::Applied,
            },
            Applied::Stale => Outcome::Stale,
        })
    }

    fn tombstone(&self, reason: &'static str) -> CacheChange {
        CacheChange::Tombstone {
            reason,
            ttl: self.tombstone_ttl,
        }
    }

    async fn apply_change(
        &self,
        cache_key: &str,
        record: &SyncRecord,
        change: &CacheChange,
        deadline: Instant,
    ) -> Result<Applied, CacheError> {
        retry::with_deadline(deadline, "cache apply", || {
            self.cache.apply(cache_key, &record.sequencer, change)
        })
        .await
    }
}
