//! The two things the use cases need from the outside world, as small traits.
//!
//! The use cases never see an SDK type: [`crate::adapters`] implements these for S3 and Valkey, and unit tests
//! implement them in memory. Errors say whether a retry can help, which is what [`crate::retry`] asks.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::audit::{Author, Provenance};
use crate::retry::Retryable;
use crate::sequencer::Sequencer;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An entity tag, kept without quotes; HTTP wants it quoted, S3 events send it bare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Etag(String);

impl Etag {
    /// Accepts `abc`, `"abc"` and `W/"abc"`.
    pub fn new(raw: &str) -> Self {
        let raw = raw.trim();
        let raw = raw.strip_prefix("W/").unwrap_or(raw);
        Self(raw.trim_matches('"').to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form for HTTP headers and S3 conditions.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// An object's bytes, the tag that identifies exactly those bytes, and who wrote them when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Bytes,
    pub etag: Etag,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// `If-None-Match: *`: fails with [`StoreError::PreconditionFailed`] when the object exists.
    CreateOnly,
    /// `If-Match: <etag>`: replaces only that version; [`StoreError::PreconditionFailed`] when the object has
    /// another tag, [`StoreError::NotFound`] (as S3 answers) when there is none.
    Replace(Etag),
    Overwrite,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("no such object")]
    NotFound,
    #[error("the object changed (precondition failed)")]
    PreconditionFailed,
    /// S3's `409 ConditionalRequestConflict`: another write to the key was in flight. Worth retrying; the
    /// condition is evaluated afresh.
    #[error("a concurrent write to the same object conflicted with this one")]
    Conflict,
    #[error("the object is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("S3 is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("S3 rejected the request (HTTP {status}): {source}")]
    Rejected {
        status: u16,
        #[source]
        source: BoxError,
    },
}

impl Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict)
    }
    fn deadline_reached() -> Self {
        StoreError::Unavailable("no answer from S3 before the invocation's deadline".into())
    }
}

pub trait ObjectStore: Send + Sync {
    /// Reads an object. With `if_match`, fails with `PreconditionFailed` unless the object still has that tag;
    /// fails with `TooLarge` before reading the body when it is over `max_bytes`.
    fn get(
        &self,
        key: &str,
        if_match: Option<&Etag>,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Object, StoreError>> + Send;

    /// Writes `body`, recording `author` with it (user metadata) for audit.
    fn put(
        &self,
        key: &str,
        body: Bytes,
        mode: PutMode,
        author: &Author,
    ) -> impl Future<Output = Result<Etag, StoreError>> + Send;

    /// The object's tag, or `NotFound`.
    fn head(&self, key: &str) -> impl Future<Output = Result<Etag, StoreError>> + Send;

    /// Deletes; succeeds whether or not the object existed (as S3 does). With `if_match`, deletes only that
    /// version and fails with `PreconditionFailed` otherwise.
    fn delete(
        &self,
        key: &str,
        if_match: Option<&Etag>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One page of at most `max_keys` (≤ 1,000) objects under `prefix`, in key order; pass the returned `next`
    /// to continue.
    fn list(
        &self,
        prefix: &str,
        next: Option<String>,
        max_keys: usize,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// The first page of objects under `prefix` whose keys sort after `after` (S3's `StartAfter`): where a long
    /// walk over the bucket resumes in a later invocation. A key stays a valid place to resume from for ever; a
    /// continuation token is opaque and is not promised to.
    fn list_after(
        &self,
        prefix: &str,
        after: &str,
        max_keys: usize,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// One page of at most `limit` (≤ 1,000) versions of exactly `key`, newest first, delete markers included;
    /// `after` is the last version id of the page before (the returned `next`). The bucket is versioned.
    fn versions(
        &self,
        key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<VersionPage, StoreError>> + Send;

    /// Reads one version. `NotFound` for an unknown version id and for a delete marker; `TooLarge` as [`get`].
    ///
    /// [`get`]: ObjectStore::get
    fn get_version(
        &self,
        key: &str,
        version: &str,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Object, StoreError>> + Send;

    /// Who wrote one version (HEAD by version id: S3's version listing carries no metadata).
    fn version_provenance(
        &self,
        key: &str,
        version: &str,
    ) -> impl Future<Output = Result<Provenance, StoreError>> + Send;
}

/// One version of an object, as S3's version listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// S3's version id (opaque).
    pub version: String,
    /// None for a delete marker.
    pub etag: Option<Etag>,
    pub size: u64,
    /// RFC 3339, as S3 reports it.
    pub last_modified: Option<String>,
    /// A delete marker: the item was deleted at this point.
    pub deleted: bool,
    /// The newest version (a delete marker when the item is deleted now).
    pub current: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    pub versions: Vec<ObjectVersion>,
    /// The version id to continue after, when more versions follow.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub etag: Etag,
    pub size: u64,
    /// RFC 3339, as S3 reports it.
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    pub next: Option<String>,
}

/// What the cache holds for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    Hit(Object),
    /// The item was deleted recently enough to remember.
    Tombstone,
    /// The item's object is in the bucket but is not a document s3kv serves.
    Unservable(Unservable),
    Miss,
}

/// Why an object under an item's key is not served: readers are told this, not "not found", so whoever uploaded
/// it learns what to fix. The cache remembers it as a tombstone whose reason is [`Unservable::reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unservable {
    /// Not a document the API would accept (not JSON, a member name twice in one object, nested too deep); the
    /// parser's words when the object itself was read, `None` when only the cache's record of it was.
    InvalidDocument(Option<String>),
    /// Larger than `S3KV_MAX_OBJECT_BYTES`.
    TooLarge,
}

impl Unservable {
    pub const INVALID_DOCUMENT: &'static str = "invalid_json";
    pub const TOO_LARGE: &'static str = "too_large";

    /// The cache tombstone's reason for it (and the `unservable` flag a listing shows).
    pub fn reason(&self) -> &'static str {
        match self {
            Unservable::InvalidDocument(_) => Self::INVALID_DOCUMENT,
            Unservable::TooLarge => Self::TOO_LARGE,
        }
    }

    /// The tombstone reason's meaning; `None` for a delete.
    pub fn from_reason(reason: &str) -> Option<Self> {
        match reason {
            Self::INVALID_DOCUMENT => Some(Unservable::InvalidDocument(None)),
            Self::TOO_LARGE => Some(Unservable::TooLarge),
            _ => None,
        }
    }
}

/// What a cache entry's header says of its item, for a listing (S3's listing carries no metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Why the object is not served, if the cache remembers it as such.
    pub unservable: Option<Unservable>,
    /// When the cached version expires, and that version's tag (a listing uses the expiry only for the version
    /// it lists).
    pub expires: Option<crate::expiry::Expiry>,
    pub etag: Option<Etag>,
}

/// An ordered change to one cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheChange {
    Put(Object),
    /// Remember that the item is gone, for `ttl`; `reason` is kept for operators who inspect the entry.
    Tombstone {
        reason: &'static str,
        ttl: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The change was newer than what the cache held, and is now there.
    Applied,
    /// The cache already held this or a newer sequencer; nothing changed.
    Stale,
}

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("Valkey is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("Valkey answered unexpectedly: {0}")]
    Unexpected(String),
    /// At its storage cap ElastiCache Serverless evicts only keys with a TTL, then refuses writes (OOM). Retrying
    /// cannot help until memory is freed, so the syncer counts it and leaves the item to S3 instead.
    #[error("the cache is full and refuses writes: {0}")]
    Full(String),
}

impl Retryable for CacheError {
    fn is_retryable(&self) -> bool {
        matches!(self, CacheError::Unavailable(_))
    }
    fn deadline_reached() -> Self {
        CacheError::Unavailable("no answer from Valkey before the invocation's deadline".into())
    }
}

pub trait Cache: Send + Sync {
    fn lookup(
        &self,
        cache_key: &str,
    ) -> impl Future<Output = Result<CacheLookup, CacheError>> + Send;

    /// Looks up many entries in as few round trips as the deployment allows (one pipeline, split by node in a
    /// cluster); one answer per key, in order.
    fn lookup_many(
        &self,
        cache_keys: &[String],
    ) -> impl Future<Output = Result<Vec<CacheLookup>, CacheError>> + Send;

    /// For each key, what its entry says a listing should know: why the cache remembers its object as not served,
    /// and when the item expires. Reads only each entry's short header, so a listing page can afford it.
    fn marks_many(
        &self,
        cache_keys: &[String],
    ) -> impl Future<Output = Result<Vec<Marks>, CacheError>> + Send;

    /// Applies `change` atomically if `sequencer` is newer than the entry's, so duplicates and late events are
    /// harmless.
    fn apply(
        &self,
        cache_key: &str,
        sequencer: &Sequencer,
        change: &CacheChange,
    ) -> impl Future<Output = Result<Applied, CacheError>> + Send;

    /// Stores `object` only if the key is absent, so a fill after a miss never overwrites what the syncer stored
    /// in the meantime. Returns whether it stored anything.
    fn fill(
        &self,
        cache_key: &str,
        object: &Object,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// Removes the entry whatever it holds. For a change the cache cannot store (it is full): without the entry,
    /// reads of the item go to S3 instead of serving the version before the change. Deleting needs no memory, so
    /// it works when writes are refused.
    fn evict(&self, cache_key: &str) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// A small note of the caller's own under `key` (outside the item keys), such as where an interrupted
    /// reconcile resumes; `None` when there is none.
    fn note(&self, key: &str) -> impl Future<Output = Result<Option<String>, CacheError>> + Send;

    /// Sets (`Some`, expiring after `ttl`) or removes (`None`) a note.
    fn set_note(
        &self,
        key: &str,
        value: Option<&str>,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// The cache keys starting with `prefix` that `keep` accepts (SCAN; never KEYS). Filtered while scanning,
    /// so a scan of a million entries for a few orphans holds the few, not the million.
    fn keys(
        &self,
        prefix: &str,
        keep: &(dyn Fn(&str) -> bool + Sync),
    ) -> impl Future<Output = Result<Vec<String>, CacheError>> + Send;

    /// The entry's metadata without its body, or `None` when there is no entry.
    fn snapshot(
        &self,
        cache_key: &str,
    ) -> impl Future<Output = Result<Option<Snapshot>, CacheError>> + Send;

    /// Deletes the entry only if it still matches `expected`, so a change applied since the snapshot is never
    /// lost. Returns whether it deleted.
    fn remove_if_unchanged(
        &self,
        cache_key: &str,
        expected: &Snapshot,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;
}

/// The reaper's schedule: members ([`crate::expiry::member`]) scored by when they are due. A member says only
/// "look at this item then"; the reaper decides from the object itself, so duplicates and stale members are
/// harmless and every operation is idempotent.
pub trait ExpiryIndex: Send + Sync {
    fn schedule(
        &self,
        member: &str,
        at: crate::expiry::Expiry,
    ) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// At most `limit` members due at `now` (seconds since the epoch), soonest first.
    fn due(
        &self,
        now: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, CacheError>> + Send;

    fn unschedule(&self, member: &str) -> impl Future<Output = Result<(), CacheError>> + Send;
}

/// A position in the change feed: the Valkey stream entry id `<ms>-<seq>` of a change, or [`Cursor::START`].
/// Clients treat it as opaque; ordering it is the only thing the use cases do with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    ms: u64,
    seq: u64,
}

impl Cursor {
    /// Before every entry.
    pub const START: Cursor = Cursor { ms: 0, seq: 0 };
    /// The largest id there is: nothing comes after it.
    pub const MAX: Cursor = Cursor {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// `<ms>-<seq>` as Valkey writes stream ids; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let (ms, seq) = raw.split_once('-')?;
        let number = |s: &str| {
            (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        Some(Self {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One entry of the change feed: the item `key` changed. What it changed to is read when the entry is served (the
/// cache's current entry), never taken from the feed, so entries appended out of order cannot report an old state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub cursor: Cursor,
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    /// Where the next read continues: the last entry's cursor, or the cursor read after when there was none.
    pub cursor: Cursor,
    /// Stream entries read, including any without an item key: as many as asked for means more may follow.
    pub scanned: usize,
}

#[derive(Debug, Error)]
pub enum FeedError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Entries after the cursor are no longer retained (or the cursor was never this feed's): the reader must
    /// re-read the truth (list the items) and follow the feed from `restart`, its end now.
    #[error("the feed no longer holds the changes after this cursor; re-list, then follow from {restart}")]
    Expired { restart: Cursor },
}

impl Retryable for FeedError {
    fn is_retryable(&self) -> bool {
        matches!(self, FeedError::Cache(error) if error.is_retryable())
    }
    fn deadline_reached() -> Self {
        FeedError::Cache(CacheError::deadline_reached())
    }
}

/// The change feed: the syncer appends every change it applied, readers follow it or wait on it. A notification
/// channel with bounded retention (a Valkey stream trimmed to its newest entries); S3 stays the truth.
pub trait Feed: Send + Sync {
    /// Appends "item `key` changed".
    fn announce(&self, key: &str) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// The newest entry's cursor ([`Cursor::START`] for an empty feed): reading after it returns what comes next.
    fn tail(&self) -> impl Future<Output = Result<Cursor, CacheError>> + Send;

    /// At most `count` entries after `after`, oldest first; [`FeedError::Expired`] when some of them are gone.
    fn read(
        &self,
        after: Cursor,
        count: usize,
    ) -> impl Future<Output = Result<FeedPage, FeedError>> + Send;

    /// Waits up to `timeout` for an entry after `after`; whether one came. Many waiters in one process share one
    /// blocking read.
    fn wait(
        &self,
        after: Cursor,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;
}

/// A cache entry's metadata: which event wrote it, which object version it holds, or that it is a tombstone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub sequencer: Option<String>,
    pub etag: Option<String>,
    pub tombstone: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_accepts_quoted_weak_and_bare_forms() {
        for raw in ["abc", "\"abc\"", "W/\"abc\"", " \"abc\" "] {
            assert_eq!(Etag::new(raw).as_str(), "abc");
        }
        assert_eq!(Etag::new("abc").quoted(), "\"abc\"");
    }

    #[test]
    fn cursors_are_stream_ids_ordered_by_number() {
        let a = Cursor::parse("1700000000000-9").unwrap();
        let b = Cursor::parse("1700000000000-10").unwrap();
        assert!(a < b && Cursor::START < a);
        assert_eq!(b.to_string(), "1700000000000-10");
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-2-3",
            "1 -2",
            "99999999999999999999999-0",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
