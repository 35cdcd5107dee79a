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

impl ReapError {
    /// The counts of the run so far, when it got that far.
    pub fn report(&self) -> Option<&ReapReport> {
        match self {
            ReapError::Index(_) => None,
            ReapError::Partial { report, .. } => Some(report),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::audit::Author;
    use crate::memory::MemoryStore;
    use crate::ports::PutMode;

    /// The index as a map of member to score.
    #[derive(Default)]
    struct Index(Mutex<BTreeMap<String, i64>>);

    impl ExpiryIndex for Index {
        async fn schedule(&self, member: &str, at: Expiry) -> Result<(), CacheError> {
            self.0
                .lock()
                .unwrap()
                .insert(member.to_owned(), at.unix_seconds());
            Ok(())
        }
        async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>, CacheError> {
            let index = self.0.lock().unwrap();
            let mut due: Vec<(i64, String)> = index
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(m, at)| (*at, m.clone()))
                .collect();
            due.sort();
            Ok(due.into_iter().take(limit).map(|(_, m)| m).collect())
        }
        async fn unschedule(&self, member: &str) -> Result<(), CacheError> {
            self.0.lock().unwrap().remove(member);
            Ok(())
        }
    }

    fn key(raw: &str) -> ItemKey {
        ItemKey::parse(raw).unwrap()
    }

    async fn write(store: &MemoryStore, index: &Index, item: &str, body: &str, at: Option<i64>) {
        let author = Author {
            expires: at.map(Expiry::at),
            ..Author::default()
        };
        let object_key = format!("{item}.json");
        store
            .put(
                &object_key,
                Bytes::from(body.to_owned()),
                PutMode::Overwrite,
                &author,
            )
            .await
            .unwrap();
        if let Some(at) = at {
            let at = Expiry::at(at);
            index
                .schedule(&expiry::member(&key(item), at), at)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn only_objects_that_still_carry_a_due_expiry_are_deleted() {
        let config = Config::from_lookup(|k| (k == "S3KV_BUCKET").then(|| "b".to_owned())).unwrap();
        let store = MemoryStore::default();
        let index = Index::default();
        let past = expiry::now() - 5;
        let future = expiry::now() + 3600;
        write(&store, &index, "gone", "1", Some(past)).await;
        // Scheduled, then rewritten with the same bytes (the same ETag) and no expiry: never deleted.
        write(&store, &index, "rewritten", "1", Some(past)).await;
        write(&store, &index, "rewritten", "1", None).await;
        // Scheduled, then given a later expiry: not yet.
        write(&store, &index, "later", "2", Some(past)).await;
        write(&store, &index, "later", "2", Some(future)).await;
        // Deleted by someone else already, and a member this code never wrote.
        write(&store, &index, "deleted", "3", Some(past)).await;
        store.delete("deleted.json", None).await.unwrap();
        index.schedule("garbage", Expiry::at(past)).await.unwrap();

        let reaper = Reaper::new(store.clone(), index, &config);
        let report = reaper
            .run(Instant::now() + Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            report,
            ReapReport {
                due: 5,
                deleted: 1,
                kept: 3,
                skipped: 1,
                complete: true,
            }
        );
        assert_eq!(store.body("gone.json"), None);
        assert_eq!(store.body("rewritten.json").as_deref(), Some(&b"1"[..]));
        assert_eq!(store.body("later.json").as_deref(), Some(&b"2"[..]));
        // Only the later expiry's member is left, and a second run finds nothing due.
        let left: Vec<String> = reaper.index.0.lock().unwrap().keys().cloned().collect();
        assert_eq!(left, [expiry::member(&key("later"), Expiry::at(future))]);
        let again = reaper
            .run(Instant::now() + Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(again.due, 0);
        // The delete is a delete marker: history keeps the expired version.
        let history = store.versions("gone.json", None, 10).await.unwrap();
        assert!(history.versions[0].deleted && !history.versions[1].deleted);
    }
}
