//! The cache's ordering rules, enforced by the Lua script, against a real Valkey server.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{Valkey, ValkeyClient};
use fred::prelude::*;
use s3kv::adapters::valkey::ValkeyCache;
use s3kv::ports::{Applied, Cache, CacheChange, CacheLookup, Etag, Object};
use s3kv::sequencer::Sequencer;

fn object(body: &str, etag: &str) -> Object {
    Object {
        body: Bytes::copy_from_slice(body.as_bytes()),
        etag: Etag::new(etag),
        provenance: Default::default(),
    }
}

fn seq(s: &str) -> Sequencer {
    Sequencer::parse(s).unwrap()
}

async fn cache(valkey: &Valkey) -> ValkeyCache {
    let cache = ValkeyCache::new(&valkey.url(), Duration::from_secs(2)).unwrap();
    cache.connect(Duration::from_secs(5)).await;
    cache
}

fn tomb(ttl_ms: u64) -> CacheChange {
    CacheChange::Tombstone {
        reason: "deleted",
        ttl: Duration::from_millis(ttl_ms),
    }
}

#[tokio::test]
async fn newer_sequencers_win_in_any_arrival_order() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;
    let put = |b: &str| CacheChange::Put(object(b, b));

    assert_eq!(
        cache.apply("k", &seq("0A"), &put("2")).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        cache.apply("k", &seq("09"), &put("1")).await.unwrap(),
        Applied::Stale
    );
    assert_eq!(
        cache.apply("k", &seq("0A"), &put("2")).await.unwrap(),
        Applied::Stale,
        "duplicates change nothing"
    );
    assert_eq!(
        cache.lookup("k").await.unwrap(),
        CacheLookup::Hit(object("2", "2"))
    );

    // AWS's rule: right-pad the shorter with zeros. Equal after padding is a duplicate; "0B" beats "0AFF".
    assert_eq!(
        cache.apply("k", &seq("0A00"), &put("x")).await.unwrap(),
        Applied::Stale
    );
    assert_eq!(
        cache.apply("k", &seq("0AFF"), &put("3")).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        cache.apply("k", &seq("0B"), &put("4")).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        cache
            .apply("k", &seq("0AFFFF"), &put("late"))
            .await
            .unwrap(),
        Applied::Stale
    );
    assert_eq!(
        cache.lookup("k").await.unwrap(),
        CacheLookup::Hit(object("4", "4"))
    );
}

#[tokio::test]
async fn tombstones_block_older_creates_and_expire() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;
    let put = CacheChange::Put(object("{}", "e"));

    cache.apply("k", &seq("10"), &put).await.unwrap();
    assert_eq!(
        cache.apply("k", &seq("20"), &tomb(60_000)).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(cache.lookup("k").await.unwrap(), CacheLookup::Tombstone);
    assert_eq!(
        cache.apply("k", &seq("15"), &put).await.unwrap(),
        Applied::Stale,
        "no resurrection"
    );
    assert!(
        !cache.fill("k", &object("{}", "e")).await.unwrap(),
        "a reader fill cannot replace a tombstone"
    );
    assert_eq!(cache.lookup("k").await.unwrap(), CacheLookup::Tombstone);

    let client = valkey.client().await;
    let ttl: i64 = client.pttl("k").await.unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "tombstone TTL {ttl}");
    assert_eq!(
        cache.apply("k", &seq("30"), &put).await.unwrap(),
        Applied::Applied,
        "a newer create revives it"
    );
    let ttl: i64 = client.pttl("k").await.unwrap();
    assert_eq!(ttl, -1, "a live item does not expire");

    cache.apply("short", &seq("10"), &tomb(50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        cache.lookup("short").await.unwrap(),
        CacheLookup::Miss,
        "tombstones expire"
    );
}

#[tokio::test]
async fn a_reader_fill_never_overwrites_and_is_overwritten_by_any_synced_change() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;

    cache
        .apply("synced", &seq("10"), &CacheChange::Put(object("new", "n")))
        .await
        .unwrap();
    assert!(!cache.fill("synced", &object("old", "o")).await.unwrap());
    assert_eq!(
        cache.lookup("synced").await.unwrap(),
        CacheLookup::Hit(object("new", "n"))
    );

    assert!(cache.fill("filled", &object("v1", "1")).await.unwrap());
    assert!(!cache.fill("filled", &object("v0", "0")).await.unwrap());
    assert_eq!(
        cache.lookup("filled").await.unwrap(),
        CacheLookup::Hit(object("v1", "1"))
    );
    assert_eq!(
        cache
            .apply("filled", &seq("01"), &CacheChange::Put(object("v2", "2")))
            .await
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(
        cache.lookup("filled").await.unwrap(),
        CacheLookup::Hit(object("v2", "2"))
    );
}

#[tokio::test]
async fn binary_safe_values_and_keys_in_many_slots() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;
    let body = "{\"s\":\"\\u0000 é ✓ \\\"quoted\\\"\"}";
    for key in ["s3kv:a", "s3kv:{tag}b", "s3kv:dir/sub dir/ü", "s3kv:x"] {
        cache
            .apply(key, &seq("01"), &CacheChange::Put(object(body, "e")))
            .await
            .unwrap();
        assert_eq!(
            cache.lookup(key).await.unwrap(),
            CacheLookup::Hit(object(body, "e")),
            "{key}"
        );
    }
}

#[tokio::test]
async fn the_script_survives_a_script_flush() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;
    cache
        .apply("k", &seq("01"), &CacheChange::Put(object("1", "1")))
        .await
        .unwrap();
    let client = valkey.client().await;
    let _: () = client.script_flush(false).await.unwrap();
    assert_eq!(
        cache
            .apply("k", &seq("02"), &CacheChange::Put(object("2", "2")))
            .await
            .unwrap(),
        Applied::Applied
    );
}

#[tokio::test]
async fn a_stopped_server_is_reported_as_unavailable_not_a_panic() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;
    valkey.stop();
    let error = cache.lookup("k").await.unwrap_err();
    assert!(s3kv::retry::Retryable::is_retryable(&error), "{error}");
}

#[tokio::test]
async fn remove_if_unchanged_never_loses_a_change_made_since_the_snapshot() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;
    cache
        .apply("k", &seq("10"), &CacheChange::Put(object("v1", "e1")))
        .await
        .unwrap();
    let before = cache.snapshot("k").await.unwrap().expect("an entry");
    assert_eq!(
        (before.sequencer.as_deref(), before.etag.as_deref()),
        (Some("10"), Some("e1"))
    );

    cache
        .apply("k", &seq("11"), &CacheChange::Put(object("v2", "e2")))
        .await
        .unwrap();
    assert!(
        !cache.remove_if_unchanged("k", &before).await.unwrap(),
        "the entry changed: keep it"
    );
    assert_eq!(
        cache.lookup("k").await.unwrap(),
        CacheLookup::Hit(object("v2", "e2"))
    );

    let now = cache.snapshot("k").await.unwrap().unwrap();
    assert!(cache.remove_if_unchanged("k", &now).await.unwrap());
    assert_eq!(cache.lookup("k").await.unwrap(), CacheLookup::Miss);
    assert!(
        !cache.remove_if_unchanged("k", &now).await.unwrap(),
        "nothing left to remove"
    );

    cache.apply("t", &seq("10"), &tomb(60_000)).await.unwrap();
    let tombstone = cache.snapshot("t").await.unwrap().unwrap();
    assert_eq!(tombstone.tombstone.as_deref(), Some("deleted"));
    assert!(cache.fill("f", &object("x", "ef")).await.unwrap());
    let filled = cache.snapshot("f").await.unwrap().unwrap();
    assert_eq!(
        (filled.sequencer, filled.etag.as_deref()),
        (None, Some("ef")),
        "fills carry no sequencer"
    );
    let mut keys = cache.keys("", &|_| true).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["f", "t"]);
    // Filtered while scanning: only what the caller keeps comes back.
    let kept = cache.keys("", &|k| k != "t").await.unwrap();
    assert_eq!(kept, ["f"]);
}

#[tokio::test]
async fn a_value_that_is_not_an_entry_reads_as_a_miss_and_is_replaced() {
    let valkey = Valkey::start();
    let cache = cache(&valkey).await;
    let client = valkey.client().await;
    // What another program, or an older s3kv that kept hashes, may have left under the prefix.
    let foreign = |key: &'static str| {
        let client = client.clone();
        async move {
            if key.starts_with("hash") {
                let _: () = client.hset(key, ("b", "{}")).await.unwrap();
            } else {
                let _: () = client
                    .set(key, "no header", None, None, false)
                    .await
                    .unwrap();
            }
        }
    };
    for key in ["hash-fill", "text-fill", "hash-sync", "text-sync"] {
        foreign(key).await;
        assert_eq!(
            cache.lookup(key).await.unwrap(),
            CacheLookup::Miss,
            "{key}: the reader answers from S3"
        );
        assert_eq!(cache.snapshot(key).await.unwrap(), None, "{key}");
    }
    for key in ["hash-fill", "text-fill"] {
        assert!(cache.fill(key, &object("{}", "f")).await.unwrap(), "{key}");
        assert_eq!(
            cache.lookup(key).await.unwrap(),
            CacheLookup::Hit(object("{}", "f")),
            "{key}: the reader's fill replaced it"
        );
        assert!(
            !cache.fill(key, &object("[]", "g")).await.unwrap(),
            "{key}: and is now an entry no fill overwrites"
        );
    }
    for key in ["hash-sync", "text-sync"] {
        assert_eq!(
            cache
                .apply(key, &seq("01"), &CacheChange::Put(object("[1]", "1")))
                .await
                .unwrap(),
            Applied::Applied,
            "{key}"
        );
        assert_eq!(
            cache.lookup(key).await.unwrap(),
            CacheLookup::Hit(object("[1]", "1")),
            "{key}"
        );
    }
}
