//! writer → S3 → (notification) → syncer → Valkey → reader, against real servers.

use crate::common;

use std::time::Duration;

use common::Stack;
use http::Method;
use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::key::ItemKey;
use s3kv::ports::Etag;
use s3kv::read::{CacheStatus, Reader};
use s3kv::s3_event::EventName;

fn etag_of(response: &common::Response) -> Etag {
    Etag::new(response.header("etag").expect("ETag header"))
}

#[tokio::test]
async fn a_write_reaches_the_cache_and_is_read_back_exactly() {
    let stack = Stack::start().await;
    let body =
        "{\"maintenance\": true,  \"note\": \"spaces and key order are kept\", \"n\": 1e400}";

    let created = stack.put("flags/site", body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["key"], "flags/site");
    let etag = etag_of(&created);
    assert_eq!(created.json()["etag"], etag.as_str());
    assert_eq!(
        stack.s3.body("items/flags/site.json").await.unwrap(),
        body.as_bytes(),
        "stored byte-for-byte"
    );

    let report = stack
        .sync(vec![stack.created("items/flags/site.json", &etag)])
        .await
        .unwrap();
    assert_eq!((report.records, report.applied), (1, 1));

    let read = stack.get("flags/site").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, body);
    assert_eq!(read.header("x-cache"), Some("HIT"));
    assert_eq!(read.header("content-type"), Some("application/json"));
    assert_eq!(read.header("etag"), Some(etag.quoted().as_str()));

    let replaced = stack.put("flags/site", "{\"maintenance\":false}").await;
    assert_eq!(
        replaced.status, 200,
        "a second write replaces: {}",
        replaced.body
    );
    stack
        .sync(vec![
            stack.created("items/flags/site.json", &etag_of(&replaced))
        ])
        .await
        .unwrap();
    let read = stack.get("flags/site").await;
    assert_eq!(
        (read.body.as_str(), read.header("x-cache")),
        ("{\"maintenance\":false}", Some("HIT"))
    );
}

#[tokio::test]
async fn post_writes_like_put_and_base64_bodies_are_decoded() {
    let stack = Stack::start().await;
    let mut request = common::request(Method::POST, "b64", Some("eyJ4IjogWzEsIDJdfQ=="));
    request.is_base64_encoded = true;
    let response = common::Response::from(
        s3kv::api::handle_write(&stack.writer, &stack.access, &request, common::deadline(10)).await,
    );
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(
        stack.s3.body("items/b64.json").await.unwrap(),
        b"{\"x\": [1, 2]}"
    );
}

#[tokio::test]
async fn a_manual_upload_with_an_awkward_key_propagates() {
    let stack = Stack::start().await;
    let key = "docs/a b+c%d/café ✓";
    let object_key = format!("items/{key}.json");
    let etag = stack.s3.upload(&object_key, b"[1,2,3]").await;

    let record = stack.created(&object_key, &etag);
    assert_eq!(
        record.s3.object.key.as_deref(),
        Some("items/docs/a+b%2Bc%25d/caf%C3%A9+%E2%9C%93.json")
    );
    let report = stack.sync(vec![record]).await.unwrap();
    assert_eq!(report.applied, 1, "{report:?}");

    let read = stack.get(key).await;
    assert_eq!(
        (read.status, read.body.as_str(), read.header("x-cache")),
        (200, "[1,2,3]", Some("HIT"))
    );
}

#[tokio::test]
async fn deletes_through_the_writer_and_by_hand_propagate_and_stay_deleted() {
    let stack = Stack::start().await;
    let etag = etag_of(&stack.put("gone", "1").await);
    stack
        .sync(vec![stack.created("items/gone.json", &etag)])
        .await
        .unwrap();
    let late_create = stack.created("items/gone.json", &etag); // redelivered later, after the delete

    assert_eq!(stack.delete("gone").await.status, 204);
    let removed = stack.removed("items/gone.json");
    stack.sync(vec![removed]).await.unwrap();
    let read = stack.get("gone").await;
    assert_eq!(
        (read.status, read.header("x-cache")),
        (404, Some("HIT")),
        "the tombstone answers"
    );
    assert_eq!(read.json()["error"], "not_found");
    assert_eq!(stack.delete("gone").await.status, 404);

    let report = stack.sync(vec![late_create]).await.unwrap();
    assert_eq!(
        report.applied, 0,
        "a late create must not resurrect a deleted key: {report:?}"
    );
    assert_eq!(stack.get("gone").await.status, 404);

    // By hand: the object disappears from the bucket without the writer.
    let etag = stack.s3.upload("items/by-hand.json", b"{}").await;
    stack
        .sync(vec![stack.created("items/by-hand.json", &etag)])
        .await
        .unwrap();
    assert_eq!(stack.get("by-hand").await.status, 200);
    stack.s3.remove("items/by-hand.json").await;
    stack
        .sync(vec![stack.record(
            EventName::DeleteMarkerCreated,
            "items/by-hand.json",
            None,
        )])
        .await
        .unwrap();
    assert_eq!(stack.get("by-hand").await.status, 404);
}

#[tokio::test]
async fn reordered_and_duplicated_records_end_with_the_newest_value() {
    let stack = Stack::start().await;
    let mut records = Vec::new();
    for version in 1..=3 {
        let etag = etag_of(&stack.put("counter", &format!("{{\"v\":{version}}}")).await);
        records.push(stack.created("items/counter.json", &etag));
    }
    let [v1, v2, v3] = <[_; 3]>::try_from(records).unwrap();
    let report = stack
        .sync(vec![v3.clone(), v1.clone(), v2.clone(), v3, v1])
        .await
        .unwrap();
    assert_eq!(report.records, 5);
    assert_eq!(report.failed, 0);
    assert_eq!(stack.get("counter").await.body, "{\"v\":3}");
    // Delivered again in a later invocation, in the worst order: still v3.
    stack.sync(vec![v2]).await.unwrap();
    let read = stack.get("counter").await;
    assert_eq!(
        (read.body.as_str(), read.header("x-cache")),
        ("{\"v\":3}", Some("HIT"))
    );
}

#[tokio::test]
async fn an_older_record_with_the_same_etag_cannot_roll_back_the_sequencer() {
    // v1, v2, then v1's bytes again: the first and last records share an ETag, so If-Match cannot tell them
    // apart; only the sequencer comparison in the cache keeps the entry at the newest record.
    let stack = Stack::start().await;
    let e1 = etag_of(&stack.put("ab", "\"a\"").await);
    let r1 = stack.created("items/ab.json", &e1);
    let e2 = etag_of(&stack.put("ab", "\"b\"").await);
    let r2 = stack.created("items/ab.json", &e2);
    let e3 = etag_of(&stack.put("ab", "\"a\"").await);
    assert_eq!(e1, e3);
    let r3 = stack.created("items/ab.json", &e3);
    let newest = r3.s3.object.sequencer.clone().unwrap();

    let report = stack.sync(vec![r3]).await.unwrap();
    assert_eq!(report.applied, 1);
    let report = stack.sync(vec![r2, r1]).await.unwrap();
    assert_eq!(
        (report.superseded, report.stale, report.applied),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(stack.cache_entry("ab").await["s"], newest);
    assert_eq!(stack.get("ab").await.body, "\"a\"");
}

#[tokio::test]
async fn a_non_json_upload_is_skipped_without_blocking_its_batch() {
    let stack = Stack::start().await;
    let good = stack.s3.upload("items/good.json", b"{\"ok\":true}").await;
    let old = stack.s3.upload("items/bad.json", b"{\"old\":true}").await;
    stack
        .sync(vec![stack.created("items/bad.json", &old)])
        .await
        .unwrap();
    let bad = stack
        .s3
        .upload("items/bad.json", b"<html>not json</html>")
        .await;
    let foreign = stack.s3.upload("elsewhere/x.json", b"{}").await;

    let report = stack
        .sync(vec![
            stack.created("items/bad.json", &bad),
            stack.created("items/good.json", &good),
            stack.created("elsewhere/x.json", &foreign),
        ])
        .await
        .expect("a bad object must not fail the invocation (it would be retried forever)");
    assert_eq!(
        (report.skipped, report.applied, report.ignored),
        (1, 1, 1),
        "{report:?}"
    );

    assert_eq!(stack.get("good").await.status, 200);
    let read = stack.get("bad").await;
    assert_eq!(
        (read.status, read.json()["error"].as_str()),
        (409, Some("invalid_stored_document")),
        "neither the invalid body nor the older good one is served: {}",
        read.body
    );
    assert_eq!(
        stack.cache_entry("bad").await.get("d").map(String::as_str),
        Some("invalid_json")
    );
}

#[tokio::test]
async fn a_miss_reads_s3_and_fills_the_cache() {
    let stack = Stack::start().await;
    stack.s3.upload("items/unsynced.json", b"{\"a\":1}").await;
    let first = stack.get("unsynced").await;
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    let second = stack.get("unsynced").await;
    assert_eq!(
        (
            second.status,
            second.body.as_str(),
            second.header("x-cache")
        ),
        (200, "{\"a\":1}", Some("HIT"))
    );
    assert_eq!(stack.get("never-written").await.status, 404);
}

#[tokio::test]
async fn with_valkey_stopped_the_reader_still_answers_from_s3() {
    let stack = Stack::start().await;
    let etag = etag_of(&stack.put("k", "{\"v\":1}").await);
    stack
        .sync(vec![stack.created("items/k.json", &etag)])
        .await
        .unwrap();
    stack.valkey.stop();

    let read = stack.get("k").await;
    assert_eq!(
        (read.status, read.body.as_str(), read.header("x-cache")),
        (200, "{\"v\":1}", Some("BYPASS"))
    );
    assert_eq!(stack.get("missing").await.status, 404);

    // And the client recovers by itself once Valkey is back (an empty node: the next read misses and fills).
    stack.valkey.restart();
    let mut last = None;
    for _ in 0..50 {
        let read = stack.get("k").await;
        if read.header("x-cache") != Some("BYPASS") {
            last = Some(read);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read = last.expect("reader reconnected to Valkey within 5 s");
    assert_eq!((read.status, read.header("x-cache")), (200, Some("MISS")));
}

#[tokio::test]
async fn a_reader_that_starts_while_valkey_is_down_recovers_when_it_comes_up() {
    let stack = Stack::start().await;
    let etag = etag_of(&stack.put("k", "{\"v\":1}").await);
    stack
        .sync(vec![stack.created("items/k.json", &etag)])
        .await
        .unwrap();
    stack.valkey.stop();

    // A cold start with Valkey unreachable: the client must keep trying in the background.
    let cache = ValkeyCache::new(&stack.valkey.url(), stack.config.cache_timeout).unwrap();
    cache.connect(Duration::from_millis(200)).await;
    let store = S3Store::new(stack.s3.client.clone(), common::BUCKET);
    let reader = Reader::new(store, cache, &stack.config);
    let key = ItemKey::parse("k").unwrap();
    let first = reader.get(&key, common::deadline(5)).await.unwrap();
    assert_eq!(first.cache, CacheStatus::Bypass);

    stack.valkey.restart();
    let mut status = first.cache;
    for _ in 0..50 {
        status = reader.get(&key, common::deadline(5)).await.unwrap().cache;
        if status != CacheStatus::Bypass {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        status,
        CacheStatus::Bypass,
        "still bypassing 5 s after Valkey came up"
    );
}

#[tokio::test]
async fn the_syncer_fails_the_invocation_when_valkey_or_s3_is_down() {
    let mut stack = Stack::start().await;
    let etag = etag_of(&stack.put("k", "{\"v\":1}").await);
    let record = stack.created("items/k.json", &etag);

    stack.valkey.stop();
    let error = stack
        .sync_within(vec![record.clone()], Duration::from_millis(800))
        .await
        .unwrap_err();
    assert_eq!((error.failed, error.records), (1, 1));

    stack.valkey.restart();
    let report = stack
        .sync(vec![record.clone()])
        .await
        .expect("redelivery succeeds once Valkey is back");
    assert_eq!(report.applied, 1);
    assert_eq!(stack.get("k").await.header("x-cache"), Some("HIT"));

    stack.s3.stop();
    let error = stack
        .sync_within(vec![record], Duration::from_millis(800))
        .await
        .unwrap_err();
    assert_eq!(
        error.failed, 1,
        "an S3 outage must fail the invocation, not drop the record"
    );
    let read = stack.get("k").await;
    assert_eq!(
        (read.status, read.header("x-cache")),
        (200, Some("HIT")),
        "reads go on from Valkey while S3 is down"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let stack = Stack::start_with(&[("S3KV_MAX_BODY_BYTES", "64")]).await;
    let too_large = "[1,2,3]".repeat(20);
    let cases: Vec<(Method, &str, Option<&str>, i64, &str)> = vec![
        (Method::PUT, "k", Some("{\"a\": }"), 400, "invalid_json"),
        (Method::PUT, "k", Some(""), 400, "empty_body"),
        (Method::PUT, "k", None, 400, "empty_body"),
        (Method::PUT, "k", Some(&too_large), 413, "body_too_large"),
        (Method::PUT, "a//b", Some("1"), 400, "invalid_key"),
        (Method::PUT, "../etc", Some("1"), 400, "invalid_key"),
        (Method::PATCH, "k", Some("1"), 405, "method_not_allowed"),
        (Method::DELETE, "k", None, 404, "not_found"),
        (
            Method::POST,
            "k",
            Some("{\"a\":1} trailing"),
            400,
            "invalid_json",
        ),
    ];
    for (method, key, body, status, code) in cases {
        let response = stack.call(method.clone(), key, body).await;
        assert_eq!(
            response.status, status,
            "{method} {key:?} {body:?}: {}",
            response.body
        );
        assert_eq!(response.json()["error"], code);
        assert!(response.json()["message"]
            .as_str()
            .is_some_and(|m| m.len() > 10));
    }
    let response = stack.put("k", "{\n  \"a\": nope\n}").await;
    // Column 9 is the `o`: the first character that cannot continue `null`.
    assert_eq!(
        (
            response.json()["line"].as_u64(),
            response.json()["column"].as_u64()
        ),
        (Some(2), Some(9))
    );
    let listed = stack
        .s3
        .client
        .list_objects_v2()
        .bucket(common::BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "no bad request wrote anything");
}

#[tokio::test]
async fn the_reader_only_serves_get() {
    let stack = Stack::start().await;
    let request = common::request(Method::PUT, "k", Some("1"));
    let response = common::Response::from(
        s3kv::api::handle_read(&stack.reader, &stack.access, &request, common::deadline(5)).await,
    );
    assert_eq!(
        (response.status, response.header("allow")),
        (405, Some("GET"))
    );
}
#[tokio::test]
async fn an_undelete_in_a_versioned_bucket_brings_the_item_back() {
    // Deleting a delete marker restores the object and sends only ObjectRemoved:Delete.
    let stack = Stack::start().await;
    let s3 = &stack.s3.client;
    let versioning = aws_sdk_s3::types::VersioningConfiguration::builder()
        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning()
        .bucket(common::BUCKET)
        .versioning_configuration(versioning)
        .send()
        .await
        .unwrap();
    let etag = stack.s3.upload("items/flag.json", b"{\"on\":true}").await;
    stack
        .sync(vec![stack.created("items/flag.json", &etag)])
        .await
        .unwrap();

    let marker = s3
        .delete_object()
        .bucket(common::BUCKET)
        .key("items/flag.json")
        .send()
        .await
        .unwrap();
    stack
        .sync(vec![stack.removed("items/flag.json")])
        .await
        .unwrap();
    assert_eq!(stack.get("flag").await.status, 404);

    let marker_version = marker.version_id().expect("a delete marker version");
    let undelete = s3
        .delete_object()
        .bucket(common::BUCKET)
        .key("items/flag.json")
        .version_id(marker_version);
    undelete.send().await.unwrap();
    let report = stack
        .sync(vec![stack.removed("items/flag.json")])
        .await
        .unwrap();
    assert_eq!(report.applied, 1, "{report:?}");
    let read = stack.get("flag").await;
    assert_eq!(
        (read.status, read.header("x-cache"), read.body.as_str()),
        (200, Some("HIT"), "{\"on\":true}")
    );
}

#[tokio::test]
async fn propagation_lag_is_measured_from_event_time_for_applied_records_only() {
    let stack = Stack::start().await;
    let etag = etag_of(&stack.put("k", "{}").await);
    let record = stack.created("items/k.json", &etag);
    tokio::time::sleep(Duration::from_millis(120)).await; // the notification is "late"
    let report = stack.sync(vec![record.clone()]).await.unwrap();
    assert_eq!(report.lag_ms.len(), 1, "{report:?}");
    assert!(
        (120..60_000).contains(&report.lag_ms[0]),
        "lag {} ms",
        report.lag_ms[0]
    );
    let metrics = s3kv::metrics::for_sync(&report, false);
    assert!(metrics
        .iter()
        .any(|(name, _, values)| *name == "PropagationLag" && values.len() == 1));
    // A duplicate changes nothing, so it says nothing about propagation.
    let duplicate = stack.sync(vec![record]).await.unwrap();
    assert_eq!((duplicate.stale, duplicate.lag_ms.len()), (1, 0));
}
