//! Reconcile against real servers: it fills a flushed cache, repairs what the notification path missed, keeps
//! tombstones, and skips what is not an item.

use crate::common;

use std::time::{Duration, Instant};

use common::Stack;
use futures::stream::{self, StreamExt};
use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::ports::Etag;

#[tokio::test]
async fn a_flushed_cache_is_filled_across_list_pages() {
    let stack = Stack::start().await;
    // More than one ListObjectsV2 page (1,000 keys), uploaded without notifications.
    let uploads = stream::iter(0..1_050).map(|i| {
        let s3 = &stack.s3;
        async move {
            s3.upload(
                &format!("items/bulk/{i:04}.json"),
                format!("{{\"n\":{i}}}").as_bytes(),
            )
            .await
        }
    });
    uploads.buffer_unordered(16).collect::<Vec<_>>().await;
    stack.s3.upload("items/readme.txt", b"not an item").await;

    let report = stack.reconcile().await.unwrap();
    assert_eq!(
        (report.checked, report.loaded, report.failed),
        (1_050, 1_050, 0),
        "{report:?}"
    );
    for i in [0, 999, 1_000, 1_049] {
        let read = stack.get(&format!("bulk/{i:04}")).await;
        assert_eq!(
            (read.header("x-cache"), read.body.clone()),
            (Some("HIT"), format!("{{\"n\":{i}}}"))
        );
    }
    let again = stack.reconcile().await.unwrap();
    assert_eq!(
        (again.loaded, again.removed),
        (0, 0),
        "a second run finds nothing to do: {again:?}"
    );
}

#[tokio::test]
async fn missed_updates_and_deletes_are_repaired_and_tombstones_kept() {
    let stack = Stack::start().await;
    let sync_upload = |key: &'static str, body: &'static str| {
        let stack = &stack;
        async move {
            let object_key = format!("items/{key}.json");
            let etag: Etag = stack.s3.upload(&object_key, body.as_bytes()).await;
            stack
                .sync(vec![stack.created(&object_key, &etag)])
                .await
                .unwrap();
        }
    };
    sync_upload("stale", "{\"v\":1}").await;
    sync_upload("orphan", "{\"v\":1}").await;
    sync_upload("deleted", "{\"v\":1}").await;
    sync_upload("recreated", "{\"v\":1}").await;

    // Changes whose notifications were lost (they ended in the failure queue, say).
    stack.s3.upload("items/stale.json", b"{\"v\":2}").await;
    stack.s3.remove("items/orphan.json").await;
    stack
        .s3
        .upload("items/unsynced.json", b"{\"new\":true}")
        .await;
    stack.s3.upload("items/broken.json", b"not json").await;
    // A delete that did reach the cache, and a delete whose re-create did not.
    stack.s3.remove("items/deleted.json").await;
    stack
        .sync(vec![stack.removed("items/deleted.json")])
        .await
        .unwrap();
    // A delete whose object was re-created (that create's notification lost): the syncer sees the object and keeps
    // it, so there is nothing left for reconcile to repair.
    stack
        .sync(vec![stack.removed("items/recreated.json")])
        .await
        .unwrap();
    assert_eq!(stack.get("recreated").await.header("x-cache"), Some("HIT"));

    let before = stack.route(&common::changes_request(None)).await.json();
    let report = stack.reconcile().await.unwrap();
    assert_eq!(report.loaded, 2, "stale and unsynced: {report:?}");
    // Watchers hear of the repairs that changed what reads answer, and only of those: the unsynced item was a miss
    // read from S3 before, and is the same after.
    let cursor = before["cursor"].as_str().unwrap();
    let repaired = stack
        .route(&common::changes_request(Some(cursor)))
        .await
        .json();
    let stale_etag = stack
        .get("stale")
        .await
        .header("etag")
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(
        repaired["changes"],
        serde_json::json!([
            {"key": "stale", "etag": stale_etag, "deleted": false},
            {"key": "orphan", "etag": null, "deleted": true},
        ]),
        "{repaired}"
    );
    assert_eq!(
        (report.removed, report.skipped_invalid, report.failed),
        (1, 1, 0),
        "{report:?}"
    );

    let read = stack.get("stale").await;
    assert_eq!(
        (read.header("x-cache"), read.body.as_str()),
        (Some("HIT"), "{\"v\":2}")
    );
    let read = stack.get("orphan").await;
    assert_eq!(
        (read.status, read.header("x-cache")),
        (404, Some("MISS")),
        "orphan entry removed"
    );
    assert_eq!(stack.get("unsynced").await.header("x-cache"), Some("HIT"));
    let read = stack.get("recreated").await;
    assert_eq!((read.status, read.header("x-cache")), (200, Some("HIT")));
    assert_eq!(
        stack
            .cache_entry("deleted")
            .await
            .get("d")
            .map(String::as_str),
        Some("deleted"),
        "tombstone kept"
    );
    let broken = stack.get("broken").await;
    assert_eq!(
        (broken.status, broken.json()["error"].as_str()),
        (409, Some("invalid_stored_document"))
    );
}

#[tokio::test]
async fn reconcile_never_undoes_a_newer_sync() {
    let stack = Stack::start().await;
    let e1 = stack.s3.upload("items/k.json", b"{\"v\":1}").await;
    let r1 = stack.created("items/k.json", &e1);
    stack.reconcile().await.unwrap();
    assert_eq!(stack.get("k").await.body, "{\"v\":1}");
    // The notification for v1 arrives late, after the reconcile filled the entry: it applies (same bytes) and
    // nothing flips back.
    stack.sync(vec![r1]).await.unwrap();
    let e2 = stack.s3.upload("items/k.json", b"{\"v\":2}").await;
    stack
        .sync(vec![stack.created("items/k.json", &e2)])
        .await
        .unwrap();
    stack.reconcile().await.unwrap();
    let read = stack.get("k").await;
    assert_eq!(
        (read.header("x-cache"), read.body.as_str()),
        (Some("HIT"), "{\"v\":2}")
    );
}

/// A reconciler with two-key pages, as the scheduled function builds it otherwise.
async fn small_pages(stack: &Stack) -> s3kv::reconcile::Reconciler<S3Store, ValkeyCache> {
    let cache = ValkeyCache::new(
        stack.config.require_valkey_url().unwrap(),
        Duration::from_secs(2),
    )
    .expect("valkey url");
    cache.connect(Duration::from_secs(5)).await;
    let store = S3Store::new(stack.s3.client.clone(), common::BUCKET);
    s3kv::reconcile::Reconciler::new(store, cache, &stack.config).with_page_size(2)
}

#[tokio::test]
async fn a_run_stopped_at_its_deadline_is_resumed_by_the_next_where_it_stopped() {
    let stack = Stack::start().await;
    for i in 1..=5 {
        stack
            .s3
            .upload(&format!("items/k{i}.json"), format!("{i}").as_bytes())
            .await;
    }
    // An entry whose object is gone: only a run that reaches the end scans for it.
    let orphan = stack.s3.upload("items/orphan.json", b"0").await;
    stack
        .sync(vec![stack.created("items/orphan.json", &orphan)])
        .await
        .unwrap();
    stack.s3.remove("items/orphan.json").await;

    let reconciler = small_pages(&stack).await;
    let past = Instant::now();
    // Each of these runs may list no new page once started: one page of two keys, then a note.
    let first = reconciler
        .run_until(past, common::deadline(60))
        .await
        .unwrap();
    assert_eq!(
        (
            first.checked,
            first.loaded,
            first.complete,
            first.resumed_after.as_deref()
        ),
        (2, 2, false, None),
        "{first:?}"
    );
    let second = reconciler
        .run_until(past, common::deadline(60))
        .await
        .unwrap();
    assert_eq!(
        (second.checked, second.loaded, second.complete),
        (2, 2, false),
        "{second:?}"
    );
    assert_eq!(second.resumed_after.as_deref(), Some("items/k2.json"));
    assert!(stack.cache_entry("k5").await.is_empty(), "not reached yet");
    assert!(
        !stack.cache_entry("orphan").await.is_empty(),
        "not scanned yet"
    );

    let last = reconciler.run(common::deadline(60)).await.unwrap();
    assert_eq!(last.resumed_after.as_deref(), Some("items/k4.json"));
    // k5 (orphan.json is gone from the listing), then the orphan scan.
    assert_eq!(
        (
            last.checked,
            last.loaded,
            last.removed,
            last.raced,
            last.complete
        ),
        (1, 1, 1, 0, true),
        "{last:?}"
    );
    assert!(stack.cache_entry("orphan").await.is_empty());
    for i in 1..=5 {
        let read = stack.get(&format!("k{i}")).await;
        assert_eq!(
            (read.header("x-cache"), read.body.clone()),
            (Some("HIT"), i.to_string())
        );
    }
    // The walk is done: the next run starts from the beginning again.
    let fresh = reconciler.run(common::deadline(60)).await.unwrap();
    assert_eq!(
        (
            fresh.resumed_after.clone(),
            fresh.checked,
            fresh.loaded,
            fresh.complete
        ),
        (None, 5, 0, true),
        "{fresh:?}"
    );
}
