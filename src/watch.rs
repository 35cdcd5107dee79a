//! Watching: waiting for one item to change, and following the changes under a prefix.
//!
//! Both rest on the [`Feed`]: the syncer announces a change after the cache holds it. A waiter takes the feed's
//! end *before* it looks at the item, so every change is either visible when it looks or announced after that
//! end, where the wait finds it. What an entry changed to is read when it is served (the cache's entry now, or
//! S3 when the cache has none), so two announcements that reach the feed out of order still end in the truth.
//!
//! When the feed cannot be read (Valkey down), a waiter looks at the item once a second instead (the read path
//! then answers from S3), so a wait keeps its promise at the price of some latency; the change feed itself has
//! no substitute and says it is unavailable.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use thiserror::Error;

use crate::key::ItemKey;
use crate::ports::{Cache, CacheError, Cursor, Etag, Feed, FeedError, ObjectStore, StoreError};
use crate::read::{ReadResult, Reader};
use crate::retry;

/// How much of the feed one look for a waited-on key reads.
const FEED_PAGE: usize = 1000;
/// How often a waiter looks at the item itself when the feed cannot be read.
const POLL: Duration = Duration::from_secs(1);
/// How long an answer with no wait may skip other items' entries before it answers "nothing yet".
const SCAN_BUDGET: Duration = Duration::from_secs(1);
/// A feed read that found nothing although the feed said it had news waits this long before the next.
const NO_PROGRESS_PAUSE: Duration = Duration::from_millis(50);
/// A wait ends this long before the invocation's deadline, so the answer still gets out.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);
/// How long a feed read is retried before the request gives up on the feed (it has no stand-in but polling).
const FEED_RETRIES: Duration = Duration::from_secs(2);

/// One changed item: its ETag now, `None` when it is deleted (or is no servable document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemChange {
    pub key: ItemKey,
    pub etag: Option<Etag>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Each changed item once, in the order of its latest change.
    pub changes: Vec<ItemChange>,
    /// Where the next request continues.
    pub cursor: Cursor,
}

#[derive(Debug, Error)]
pub enum ChangesError {
    #[error("the change feed is unavailable: {0}")]
    Unavailable(#[source] CacheError),
    #[error("the feed no longer holds the changes after this cursor; re-list the items, then follow from {restart}")]
    Expired { restart: Cursor },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FeedError> for ChangesError {
    fn from(error: FeedError) -> Self {
        match error {
            FeedError::Cache(error) => ChangesError::Unavailable(error),
            FeedError::Expired { restart } => ChangesError::Expired { restart },
        }
    }
}

/// Retries of a feed read end here: soon, and before the request's own deadline.
fn feed_deadline(deadline: Instant) -> Instant {
    (Instant::now() + FEED_RETRIES).min(deadline)
}

/// When a wait that started now must end: after `wait`, and in time to answer before `deadline`.
fn wait_until(wait: Duration, deadline: Instant) -> Instant {
    (Instant::now() + wait).min(deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline))
}

impl<S: ObjectStore, C: Cache + Feed> Reader<S, C> {
    /// The item once its version is not one `is_current` accepts (it changed, or was deleted), or when
    /// `wait` is over, whichever comes first. The first look is immediate, so a client that is behind learns so
    /// at once; the last look is made when the wait ends, so a change the feed never announced (a full cache, a
    /// failed append) is still answered then.
    pub async fn wait_for_change(
        &self,
        key: &ItemKey,
        is_current: impl Fn(&Etag) -> bool + Send + Sync,
        wait: Duration,
        deadline: Instant,
    ) -> Result<ReadResult, StoreError> {
        let until = wait_until(wait, deadline);
        let changed = |result: &ReadResult| {
            result
                .object
                .as_ref()
                .is_none_or(|object| !is_current(&object.etag))
        };
        let mut cursor = self.feed_end(key, until).await;
        let mut result = self.get(key, deadline).await?;
        // An expiry is a change no one announces until the reaper's delete: the wait ends at it, and the last
        // look then finds the item gone.
        let expires = result.object.as_ref().and_then(|o| o.provenance.expires);
        let until = match expires {
            Some(at) => until.min(Instant::now() + crate::expiry::remaining(at)),
            None => until,
        };
        loop {
            if changed(&result) {
                return Ok(result);
            }
            let Some(left) = until
                .checked_duration_since(Instant::now())
                .filter(|l| !l.is_zero())
            else {
                return Ok(result);
            };
            match cursor {
                Some(after) => match self.cache.wait(after, left).await {
                    // The wait is over: one last look.
                    Ok(false) => {}
                    Ok(true) => match self.read_feed(after, FEED_PAGE, deadline).await {
                        Ok(page) => {
                            cursor = Some(page.cursor);
                            if !page.entries.iter().any(|e| e.key == key.as_str()) {
                                continue;
                            }
                        }
                        Err(FeedError::Expired { restart }) => cursor = Some(restart),
                        Err(FeedError::Cache(error)) => {
                            tracing::warn!(key = %key, %error, "change feed unreadable; polling the item");
                            cursor = None;
                        }
                    },
                    Err(error) => {
                        tracing::warn!(key = %key, %error, "cannot wait on the change feed; polling the item");
                        cursor = None;
                    }
                },
                None => {
                    tokio::time::sleep(left.min(POLL)).await;
                    cursor = self.feed_end(key, until).await;
                }
            }
            result = self.get(key, deadline).await?;
        }
    }

    /// The changes after `after` (from now when `None`) among the items `covers` accepts: at most `limit` items,
    /// in the order of their first change after the cursor. Waits up to `wait` when there are none yet. Feed
    /// entries of other items are skipped a page at a time, for at most the wait (or a second): an answer with
    /// no changes and a later cursor means "nothing for you up to here", and the client asks again.
    pub async fn changes(
        &self,
        after: Option<Cursor>,
        limit: usize,
        wait: Duration,
        covers: impl Fn(&ItemKey) -> bool + Send + Sync,
        deadline: Instant,
    ) -> Result<Changes, ChangesError> {
        let until = wait_until(wait, deadline);
        let scan_until = wait_until(wait.max(SCAN_BUDGET), deadline);
        let mut after = match after {
            Some(cursor) => cursor,
            None => {
                retry::with_deadline(feed_deadline(deadline), "feed tail", || self.cache.tail())
                    .await
                    .map_err(ChangesError::Unavailable)?
            }
        };
        loop {
            let page = self.read_feed(after, FEED_PAGE, deadline).await?;
            let more = page.scanned >= FEED_PAGE;
            let mut keys: Vec<ItemKey> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut cursor = page.cursor;
            for entry in &page.entries {
                let Ok(key) = ItemKey::parse(&entry.key) else {
                    continue;
                };
                if !covers(&key) || seen.contains(&key) {
                    continue;
                }
                if keys.len() == limit {
                    // The rest of the page is the next answer's: continue just before this entry.
                    cursor = keys_end(&page.entries, entry.cursor, after);
                    break;
                }
                seen.insert(key.clone());
                keys.push(key);
            }
            after = cursor;
            if !keys.is_empty() {
                let changes = futures::stream::iter(keys)
                    .map(|key| async move {
                        let etag = self.current_etag(&key, deadline).await?;
                        Ok::<_, StoreError>(ItemChange { key, etag })
                    })
                    .buffered(16)
                    .try_collect()
                    .await?;
                return Ok(Changes {
                    changes,
                    cursor: after,
                });
            }
            let now = Instant::now();
            if more && now < scan_until {
                continue;
            }
            let left = until.saturating_duration_since(now);
            let empty = Changes {
                changes: Vec::new(),
                cursor: after,
            };
            if more || left.is_zero() {
                return Ok(empty);
            }
            match self.cache.wait(after, left).await {
                Ok(true) => {}
                Ok(false) => return Ok(empty),
                // The hub's blocking read failed; the feed itself may be readable. The client asks again.
                Err(error) => {
                    tracing::warn!(%error, "cannot wait on the change feed; answering what there is");
                    return Ok(empty);
                }
            }
        }
    }

    /// One feed read, retried briefly. A read that made no progress although the feed said it had news (its
    /// stream was lost and created again) pauses a moment, so a waiter never spins on it.
    async fn read_feed(
        &self,
        after: Cursor,
        count: usize,
        deadline: Instant,
    ) -> Result<crate::ports::FeedPage, FeedError> {
        let page = retry::with_deadline(feed_deadline(deadline), "feed read", || {
            self.cache.read(after, count)
        })
        .await?;
        if page.scanned == 0 {
            tokio::time::sleep(NO_PROGRESS_PAUSE).await;
        }
        Ok(page)
    }

    /// The feed's end for a waiter, or `None` (poll instead) when the cache cannot say: one attempt, never past
    /// the wait's end, so a waiter with Valkey down looks at the item about once a [`POLL`].
    async fn feed_end(&self, key: &ItemKey, until: Instant) -> Option<Cursor> {
        let tail = self
            .tail_within(until.saturating_duration_since(Instant::now()))
            .await;
        if tail.is_none() {
            tracing::debug!(key = %key, "no feed end; polling the item");
        }
        tail
    }

    /// The change feed's newest cursor within the cache timeout, `None` when the cache does not answer: whether
    /// anything changed since a cursor, for one cheap command (OFREP's bulk revalidation).
    pub async fn feed_tail(&self) -> Option<Cursor> {
        self.tail_within(self.cache_timeout).await
    }

    /// One attempt at the feed's tail within `timeout`; a failure is logged, a timeout is not (it is a slow
    /// cache, which the callers treat as an absent one).
    async fn tail_within(&self, timeout: Duration) -> Option<Cursor> {
        match tokio::time::timeout(timeout, self.cache.tail()).await {
            Ok(Ok(cursor)) => Some(cursor),
            Ok(Err(error)) => {
                tracing::warn!(%error, "change feed unreadable");
                None
            }
            Err(_) => None,
        }
    }

    /// The item's ETag as a read answers it: the cache entry's header, else a read (which also fills the cache),
    /// so an object that is not a servable document is reported gone, as GET reports it.
    async fn current_etag(
        &self,
        key: &ItemKey,
        deadline: Instant,
    ) -> Result<Option<Etag>, StoreError> {
        let cache_key = self.keys.cache_key(key);
        match tokio::time::timeout(self.cache_timeout, self.cache.snapshot(&cache_key)).await {
            Ok(Ok(Some(snapshot))) if snapshot.tombstone.is_some() => return Ok(None),
            Ok(Ok(Some(snapshot))) if snapshot.etag.is_some() => {
                return Ok(snapshot.etag.as_deref().map(Etag::new))
            }
            _ => {}
        }
        Ok(self.get(key, deadline).await?.object.map(|o| o.etag))
    }
}

/// The cursor just before the entry at `next`: the entries of a page have increasing cursors, so the one before
/// it (or `start`, where the page began) is where the next answer begins.
fn keys_end(entries: &[crate::ports::FeedEntry], next: Cursor, start: Cursor) -> Cursor {
    entries
        .iter()
        .map(|e| e.cursor)
        .take_while(|c| *c < next)
        .last()
        .unwrap_or(start)
}
