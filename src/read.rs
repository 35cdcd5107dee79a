//! Reading items: Valkey first, S3 when the cache misses or cannot answer in time.
//!
//! The cache is a fast path, never a gate: any cache error or a lookup slower than the configured timeout turns
//! into a read from S3 (`Bypass`), so a frozen, restarting or unreachable Valkey costs latency, not availability.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::document;
use crate::expiry::{self, Expiry};
use crate::key::{ItemKey, KeyMap, ObjectKind};
use crate::ports::{
    Cache, CacheError, CacheLookup, Etag, Object, ObjectStore, ObjectVersion, StoreError,
    Unservable,
};
use crate::retry;

/// Where an answer came from; sent to clients as `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// `None` when there is no item under the key.
    pub object: Option<Object>,
    pub cache: CacheStatus,
    /// With no object: there is one in the bucket, and this is why it is not served.
    pub unservable: Option<Unservable>,
    /// With no object: there is one, and it expired then (the reaper has not deleted it yet).
    pub expired: Option<Expiry>,
}

impl ReadResult {
    pub fn found(object: Object, cache: CacheStatus) -> Self {
        Self {
            object: Some(object),
            cache,
            unservable: None,
            expired: None,
        }
    }

    pub fn absent(cache: CacheStatus) -> Self {
        Self {
            object: None,
            cache,
            unservable: None,
            expired: None,
        }
    }

    /// The answer at `now` (seconds since the epoch): an object whose expiry has come is not served, wherever it
    /// was read from. Every read of a current item passes here, so expiry is exact whatever the cache holds.
    pub fn at(self, now: i64) -> Self {
        match &self.object {
            Some(object) if object.provenance.expired(now) => Self {
                expired: object.provenance.expires,
                ..Self::absent(self.cache)
            },
            _ => self,
        }
    }

    fn unservable(why: Unservable, cache: CacheStatus) -> Self {
        Self {
            unservable: Some(why),
            ..Self::absent(cache)
        }
    }
}

/// One page of items, straight from S3 (the source of truth), never from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub items: Vec<ListedItem>,
    /// S3's continuation token, when there is more.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedItem {
    pub key: ItemKey,
    pub etag: Etag,
    pub size: u64,
    pub last_modified: Option<String>,
    /// Why a read of it would not serve it, when known: too large by its size, or not a valid document by the
    /// cache's record of it (the listing reads no bodies, so an upload the syncer has not seen yet is not flagged).
    pub unservable: Option<Unservable>,
    /// When it expires, by the cache's record of it: best effort, like `unservable` (S3's listing carries no
    /// metadata; an item the cache holds no entry for is listed without one).
    pub expires: Option<Expiry>,
}

/// One page of an item's history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub versions: Vec<ItemVersion>,
    /// The version id to continue after, when older versions follow.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemVersion {
    pub version: ObjectVersion,
    /// `X-S3kv-Writer`'s form; `None` for a delete marker (S3 keeps no metadata for one) or a version that
    /// expired while the page was read.
    pub writer: Option<String>,
    /// When this version was to expire, if its write said so: a delete marker right after it, once that time had
    /// come, is the reaper's.
    pub expires: Option<Expiry>,
}

pub struct Reader<S, C> {
    pub(crate) store: S,
    pub(crate) cache: C,
    pub(crate) keys: KeyMap,
    pub(crate) cache_timeout: Duration,
    max_object_bytes: u64,
    max_wait: Duration,
    ofrep_prefix: String,
}

impl<S: ObjectStore, C: Cache> Reader<S, C> {
    pub fn new(store: S, cache: C, config: &Config) -> Self {
        Self {
            store,
            cache,
            keys: config.key_map(),
            cache_timeout: config.cache_timeout,
            max_object_bytes: config.max_object_bytes,
            max_wait: config.max_wait,
            ofrep_prefix: config.ofrep_prefix.clone(),
        }
    }

    /// The longest wait this reader grants (`S3KV_MAX_WAIT_SECS`); longer ones are cut to it.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// `S3KV_OFREP_PREFIX`: the items OpenFeature flags are.
    pub fn ofrep_prefix(&self) -> &str {
        &self.ofrep_prefix
    }

    pub async fn get(&self, key: &ItemKey, deadline: Instant) -> Result<ReadResult, StoreError> {
        Ok(self.get_current(key, deadline).await?.at(expiry::now()))
    }

    /// [`Reader::get`] before the expiry check.
    async fn get_current(
        &self,
        key: &ItemKey,
        deadline: Instant,
    ) -> Result<ReadResult, StoreError> {
        let cache_key = self.keys.cache_key(key);
        let status = match tokio::time::timeout(self.cache_timeout, self.cache.lookup(&cache_key))
            .await
        {
            Ok(Ok(CacheLookup::Hit(object))) => {
                return Ok(ReadResult::found(object, CacheStatus::Hit))
            }
            Ok(Ok(CacheLookup::Tombstone)) => return Ok(ReadResult::absent(CacheStatus::Hit)),
            Ok(Ok(CacheLookup::Unservable(why))) => {
                return Ok(ReadResult::unservable(why, CacheStatus::Hit))
            }
            Ok(Ok(CacheLookup::Miss)) => CacheStatus::Miss,
            Ok(Err(error)) => {
                tracing::warn!(key = %key, %error, "cache lookup failed; reading from S3");
                CacheStatus::Bypass
            }
            Err(_) => {
                tracing::warn!(key = %key, timeout_ms = self.cache_timeout.as_millis() as u64, "cache lookup timed out; reading from S3");
                CacheStatus::Bypass
            }
        };
        // Boxed like the SDK calls in the S3 adapter (see there): inlined, the nesting overflows rustc's layout
        // recursion limit in the binaries. Only the S3 path pays the allocation, never a cache hit.
        Box::pin(self.read_s3(key, status, deadline)).await
    }

    /// Read-after-write: straight from S3, which is strongly consistent, without consulting or filling the cache.
    pub async fn get_consistent(
        &self,
        key: &ItemKey,
        deadline: Instant,
    ) -> Result<ReadResult, StoreError> {
        let result = Box::pin(self.read_s3(key, CacheStatus::Bypass, deadline)).await?;
        Ok(result.at(expiry::now()))
    }

    /// Many items at once: one pipelined cache lookup for all of them, then S3 for the misses (concurrently, each
    /// filling the cache like a single read). Answers are in the order of `keys`.
    pub async fn get_many(
        &self,
        keys: &[ItemKey],
        deadline: Instant,
    ) -> Result<Vec<ReadResult>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let cache_keys: Vec<String> = keys.iter().map(|k| self.keys.cache_key(k)).collect();
        let lookups: Vec<Option<CacheLookup>> =
            match tokio::time::timeout(self.cache_timeout, self.cache.lookup_many(&cache_keys))
                .await
            {
                Ok(Ok(found)) if found.len() == keys.len() => found.into_iter().map(Some).collect(),
                Ok(Ok(_)) => {
                    tracing::warn!("cache answered a batch with the wrong count; reading from S3");
                    vec![None; keys.len()]
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "batch cache lookup failed; reading from S3");
                    vec![None; keys.len()]
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = self.cache_timeout.as_millis() as u64,
                        "batch cache lookup timed out; reading from S3"
                    );
                    vec![None; keys.len()]
                }
            };
        // Indexed rather than zipped with `keys.iter()`: a closure taking `&ItemKey` makes the future's `Send` bound
        // higher-ranked, which rustc cannot prove.
        futures::stream::iter(lookups.into_iter().enumerate())
            .map(|(i, lookup)| async move {
                let key = &keys[i];
                match lookup {
                    Some(CacheLookup::Hit(object)) => {
                        Ok(ReadResult::found(object, CacheStatus::Hit))
                    }
                    Some(CacheLookup::Tombstone) => Ok(ReadResult::absent(CacheStatus::Hit)),
                    Some(CacheLookup::Unservable(why)) => {
                        Ok(ReadResult::unservable(why, CacheStatus::Hit))
                    }
                    Some(CacheLookup::Miss) => {
                        Box::pin(self.read_s3(key, CacheStatus::Miss, deadline)).await
                    }
                    None => Box::pin(self.read_s3(key, CacheStatus::Bypass, deadline)).await,
                }
            })
            .buffered(16)
            .map_ok(|result: ReadResult| result.at(expiry::now()))
            .try_collect()
            .await
    }

    /// Items whose key starts with `prefix`, in key order, at most `limit` S3 objects per page. Objects in the
    /// bucket that are not items (no `.json`, keys breaking the rules) are left out, so a page may hold fewer.
    pub async fn list(
        &self,
        prefix: &str,
        limit: usize,
        next: Option<String>,
        deadline: Instant,
    ) -> Result<Listing, StoreError> {
        let object_prefix = format!("{}{prefix}", self.keys.object_prefix());
        let page = retry::with_deadline(deadline, "s3 list", || {
            self.store.list(&object_prefix, next.clone(), limit)
        })
        .await?;
        let mut items: Vec<ListedItem> = page
            .objects
            .into_iter()
            .filter_map(|o| match self.keys.classify(&o.key) {
                ObjectKind::Item(key) => Some(ListedItem {
                    key,
                    etag: o.etag,
                    unservable: (o.size > self.max_object_bytes).then_some(Unservable::TooLarge),
                    size: o.size,
                    last_modified: o.last_modified,
                    expires: None,
                }),
                _ => None,
            })
            .collect();
        self.mark(&mut items).await;
        let now = expiry::now();
        items.retain(|item| !item.expires.is_some_and(|at| at.has_passed(now)));
        Ok(Listing {
            items,
            next: page.next,
        })
    }

    /// Flags the listed items the cache remembers as not served, and gives each the expiry of its cached version.
    /// Best effort within the cache timeout: the listing is S3's, and a slow or unreachable cache only costs the
    /// flags and expiries (an expired item then stays listed until the reaper deletes it, within minutes).
    async fn mark(&self, items: &mut [ListedItem]) {
        if items.is_empty() {
            return;
        }
        let cache_keys: Vec<String> = items.iter().map(|i| self.keys.cache_key(&i.key)).collect();
        match tokio::time::timeout(self.cache_timeout, self.cache.marks_many(&cache_keys)).await {
            Ok(Ok(marks)) => {
                for (item, marks) in items.iter_mut().zip(marks) {
                    item.unservable = item.unservable.take().or(marks.unservable);
                    item.expires = marks
                        .expires
                        .filter(|_| marks.etag.as_ref() == Some(&item.etag));
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "cache lookup for the listing's flags failed"),
            Err(_) => tracing::warn!("cache lookup for the listing's flags timed out"),
        }
    }

    /// One page of the item's versions from S3 (the bucket is versioned), with who wrote each: S3's listing
    /// carries no metadata, so each version's is read (HEAD by version id, concurrently).
    pub async fn versions(
        &self,
        key: &ItemKey,
        after: Option<&str>,
        limit: usize,
        deadline: Instant,
    ) -> Result<History, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let object_key = self.keys.object_key(key);
        let page = retry::with_deadline(deadline, "s3 list versions", || {
            self.store.versions(&object_key, after, limit)
        })
        .await?;
        let object_key = &object_key;
        let versions = futures::stream::iter(page.versions)
            .map(|version| async move {
                if version.deleted {
                    return Ok(ItemVersion {
                        version,
                        writer: None,
                        expires: None,
                    });
                }
                let head = retry::with_deadline(deadline, "s3 head version", || {
                    self.store.version_provenance(object_key, &version.version)
                })
                .await;
                let (writer, expires) = match head {
                    Ok(provenance) => (provenance.writer, provenance.expires),
                    // Expired by the lifecycle rule since the listing.
                    Err(StoreError::NotFound) => (None, None),
                    Err(e) => return Err(e),
                };
                Ok(ItemVersion {
                    version,
                    writer,
                    expires,
                })
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(History {
            versions,
            next: page.next,
        })
    }

    /// One version's bytes, from S3; `None` for an unknown version, a delete marker, or a version that is not
    /// a servable JSON document.
    pub async fn get_version(
        &self,
        key: &ItemKey,
        version: &str,
        deadline: Instant,
    ) -> Result<Option<Object>, StoreError> {
        let object_key = self.keys.object_key(key);
        let fetched = retry::with_deadline(deadline, "s3 get version", || {
            self.store
                .get_version(&object_key, version, self.max_object_bytes)
        })
        .await;
        match fetched {
            Ok(object) if document::validate(&object.body).is_ok() => Ok(Some(object)),
            Ok(_) | Err(StoreError::NotFound | StoreError::TooLarge { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The S3 half of a read; after a miss (`status` is `Miss`) the answer is also offered to the cache.
    async fn read_s3(
        &self,
        key: &ItemKey,
        status: CacheStatus,
        deadline: Instant,
    ) -> Result<ReadResult, StoreError> {
        let object_key = self.keys.object_key(key);
        let fetched = retry::with_deadline(deadline, "s3 get", || {
            self.store.get(&object_key, None, self.max_object_bytes)
        })
        .await;
        let object = match fetched {
            Ok(object) => object,
            Err(StoreError::NotFound) => return Ok(ReadResult::absent(status)),
            Err(StoreError::TooLarge { size, limit }) => {
                tracing::warn!(key = %key, size, limit, "object is over S3KV_MAX_OBJECT_BYTES; not served");
                return Ok(ReadResult::unservable(Unservable::TooLarge, status));
            }
            Err(e) => return Err(e),
        };
        if let Err(error) = document::validate(&object.body) {
            // A manual upload that is not JSON is not an item; the syncer tombstones it the same way.
            tracing::warn!(key = %key, %error, "stored object is not a valid document; not served");
            let why = Unservable::InvalidDocument(Some(error.to_string()));
            return Ok(ReadResult::unservable(why, status));
        }
        if status == CacheStatus::Miss {
            let cache_key = self.keys.cache_key(key);
            match tokio::time::timeout(self.cache_timeout, self.cache.fill(&cache_key, &object))
                .await
            {
                Ok(Ok(_)) => {}
                // A full cache refuses every fill: the syncer already counts and logs that once per change,
                // and a line per read here would flood the log exactly when reads are slowest.
                Ok(Err(CacheError::Full(_))) => {}
                Ok(Err(error)) => tracing::warn!(key = %key, %error, "cache fill failed"),
                Err(_) => tracing::warn!(key = %key, "cache fill timed out"),
            }
        }
        Ok(ReadResult::found(object, status))
    }
}
