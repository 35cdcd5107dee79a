//! The reaper: deletes the objects of expired items, so the expiry becomes a real delete that history, `/changes`
//! and watchers see, through the same notification path as any delete.
//!
//! Readers do not wait for it (they compare each item's expiry with the clock), so it only has to be prompt, not
//! exact: run every minute, it deletes an item within about a minute of its expiry. It works from the index the
//! syncer keeps ([`crate::ports::ExpiryIndex`]) and trusts nothing in it: before deleting, it reads the object and
//! deletes only if the object itself still carries that expiry, and then only that version of it (`If-Match` with
//! the ETag it read), so an item rewritten without a TTL, or with a later one, after it was scheduled is never
//! deleted. Every step is idempotent: a run that fails halfway is simply run again.
//!
//! The one gap: a rewrite with byte-identical content (the same ETag) and no expiry, landing in the milliseconds
//! between the reaper's read and its delete, is deleted too; the delete is logged, and a restore undoes it.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use thiserror::Error;

use crate::config::Config;
use crate::expiry::{self, Expiry};
use crate::key::{ItemKey, KeyMap};
use crate::ports::{CacheError, ExpiryIndex, ObjectStore, StoreError};
use crate::retry;

/// The writer an expiry's delete is logged with (S3 keeps no metadata on a delete marker).
pub const EXPIRED: &str = "expired";
/// Due members read per page.
const PAGE: usize = 100;
/// Items looked at concurrently.
const CONCURRENCY: usize = 8;
/// A run stops this long before its deadline, so its report still gets out.
const MARGIN: Duration = Duration::from_secs(5);

/// Counts for one run; logged, and returned as the invocation's result.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReapReport {
    /// Due members looked at.
    pub due: usize,
    /// Objects deleted because they expired.
    pub deleted: usize,
    /// Members dropped without a delete: the item was rewritten (no expiry, another one, or another version
    /// in the meantime), or is already gone.
    pub kept: usize,
    /// Members this code never wrote, or for objects over the size limit (which are not read): dropped.
    pub skipped: usize,
    /// Whether the run ended with no due member left (`false`: the deadline came first; the next run goes on).
    pub complete: bool,
}

#[derive(Debug, Error)]
pub enum ReapError {
    /// Worth running again: every step is idempotent.
    #[error("the expiry index is unavailable: {0}")]
    Index(#[from] CacheError),
    #[error("{failed} items could not be reaped (first: {first}); the next run tries again")]
    Partial {
        failed: usize,
        first: StoreError,
        report: ReapReport,
    },
}

/// What happened to one member.
enum Fate {
    Deleted,
    Kept,
    Skipped,
}

pub struct Reaper<S, C> {
    store: S,
    index: C,
    keys: KeyMap,
    max_object_bytes: u64,
}

impl<S: ObjectStore, C: ExpiryIndex> Reaper<S, C> {
    pub fn new(store: S, index: C, config: &Config) -> Self {
        Self {
            store,
            index,
            keys: config.key_map(),
            max_object_bytes: config.max_object_bytes,
        }
    }

    /// Deletes every item due now, page after page, until none is left or the deadline nears.
    pub async fn run(&self, deadline: Instant) -> Result<ReapReport, ReapError> {
        let mut report = ReapReport::default();
        let stop = deadline.checked_sub(MARGIN).unwrap_or(deadline);
        let mut failures: Vec<StoreError> = Vec::new();
        while Instant::now() < stop {
            let now = expiry::now();
            let due =
                retry::with_deadline(stop, "expiry due", || self.index.due(now, PAGE)).await?;
            let page_len = due.len();
            let fates: Vec<Result<Fate, StoreError>> = futures::stream::iter(due)
                .map(|member| async move { self.reap(&member, now, stop).await })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await?;
            report.due += page_len;
            for fate in fates {
                match fate {
                    Ok(Fate::Deleted) => report.deleted += 1,
                    Ok(Fate::Kept) => report.kept += 1,
                    Ok(Fate::Skipped) => report.skipped += 1,
                    Err(error) => failures.push(error),
                }
            }
            // A page with failures is not read again in this run: its members would come back first.
            if page_len < PAGE || !failures.is_empty() {
                report.complete = failures.is_empty();
                break;
            }
        }
        let failed = failures.len();
        match failures.into_iter().next() {
            None => Ok(report),
            Some(first) => Err(ReapError::Partial {
                failed,
                first,
                report,
            }),
        }
    }

    /// One member: an index failure fails the run (the outer error), an S3 failure only this item (the inner).
    async fn reap(
        &self,
        member: &str,
        now: i64,
        deadline: Instant,
    ) -> Result<Result<Fate, StoreError>, CacheError> {
        let fate = match expiry::parse_member(member) {
            None => {
                tracing::warn!(member, "expiry index member this code never wrote; dropped");
                Ok(Fate::Skipped)
            }
            Some((key, at)) => self.expire(&key, at, now, deadline).await,
        };
        if fate.is_ok() {
            retry::with_deadline(deadline, "expiry unschedule", || {
                self.index.unschedule(member)
            })
            .await?;
        }
        Ok(fate)
    }

    /// Deletes the item's object if it still expires `at`, and `at` has come.
    async fn expire(
        &self,
        key: &ItemKey,
        at: Expiry,
        now: i64,
        deadline: Instant,
    ) -> Result<Fate, StoreError> {
        let object_key = self.keys.object_key(key);
        let read = retry::with_deadline(deadline, "s3 get", || {
            self.store.get(&object_key, None, self.max_object_bytes)
        })
        .await;
        let object = match read {
            Ok(object) => object,
            Err(StoreError::NotFound) => return Ok(Fate::Kept),
            Err(StoreError::TooLarge { size, .. }) => {
                tracing::warn!(key = %key, size, "not reaped: the object is over S3KV_MAX_OBJECT_BYTES, so its expiry is not read");
                return Ok(Fate::Skipped);
            }
            Err(error) => return Err(error),
        };
        if object.provenance.expires != Some(at) || !at.has_passed(now) {
            return Ok(Fate::Kept);
        }
        let deleted = retry::with_deadline(deadline, "s3 delete", || {
            self.store.delete(&object_key, Some(&object.etag))
        })
        .await;
        match deleted {
            Ok(()) => {
                // The audit record of the delete, as the writer logs a delete through the API.
                tracing::info!(key = %key, writer = EXPIRED, expired_at = %at.rfc3339(), etag = object.etag.as_str(), "item deleted");
                Ok(Fate::Deleted)
            }
            // Rewritten or deleted between the read and the delete.
            Err(StoreError::PreconditionFailed | StoreError::NotFound) => Ok(Fate::Kept),
            Err(error) => Err(error),
        }
    }
}
