//! Per-item expiry through s3kv-local (its S3 endpoint, real Valkey, its reaper): exact for readers from the
//! expiry second on, a real delete in the bucket within the bound, in history and `/changes`, undone by a restore;
//! a rewrite without a TTL is never deleted; bad values are refused.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;

use crate::common::{self, Reply, TestStack, ValkeyClient};

const KEY: &str = "expiry-full-access";
/// How long the reaper may take after an expiry (the template runs it every minute; s3kv-local every second).
const REAP_BOUND: Duration = Duration::from_secs(30);

async fn local() -> TestStack {
    TestStack::start("expiry", |o| o.api_key = Some(KEY.into())).await
}

/// A stack whose reaper runs only when the test says ([`s3kv_local::LocalStack::reap_now`]): what readers see
/// between an expiry and the object's delete is checked without racing the schedule on a loaded machine.
async fn local_reaping_on_demand() -> TestStack {
    let tuning = s3kv_local::Tuning {
        reap_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    TestStack::start_tuned("expiry", |o| o.api_key = Some(KEY.into()), tuning).await
}

async fn call(api: &TestStack, method: Method, path: &str, body: Option<&str>) -> Reply {
    api.send(method, path, Some(KEY), &[], body).await
}

/// Polls `check` until it holds, at most `bound`; the answer that held.
async fn until<T>(bound: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(start.elapsed() < bound, "not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seconds(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"))
        .timestamp()
}

/// Waits until the wall clock is at `at` (seconds since the epoch) or later.
async fn wait_for_second(at: i64) {
    until(Duration::from_secs(10), async || {
        (s3kv::expiry::now() >= at).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_item_with_a_ttl_is_served_until_its_second_then_gone_deleted_and_restorable() {
    let api = local_reaping_on_demand().await;
    let cursor = call(&api, Method::GET, "/changes?wait=0", None)
        .await
        .json()["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();

    let written = call(
        &api,
        Method::PUT,
        "/items/temp/banner?ttl=2",
        Some("{\"on\":true}"),
    )
    .await;
    assert_eq!(written.status, 201, "{}", written.body);
    let expires_at = written.json()["expiresAt"]
        .as_str()
        .expect("expiresAt")
        .to_owned();
    assert_eq!(
        written.header("x-s3kv-expires-at"),
        Some(expires_at.as_str())
    );
    let at = seconds(&expires_at);
    api.settle().await;

    // Before the expiry: served, from the cache and from S3, with the expiry; listed with it; in a batch.
    let read = call(&api, Method::GET, "/items/temp/banner", None).await;
    if s3kv::expiry::now() < at {
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.header("x-s3kv-expires-at"), Some(expires_at.as_str()));
        assert_eq!(read.body, "{\"on\":true}");
        let listed = call(&api, Method::GET, "/items?prefix=temp/", None)
            .await
            .json();
        assert_eq!(
            listed["items"][0]["expiresAt"],
            Value::from(expires_at.clone())
        );
        let consistent = call(
            &api,
            Method::GET,
            "/items/temp/banner?consistent=true",
            None,
        )
        .await;
        assert_eq!(
            consistent.header("x-s3kv-expires-at"),
            Some(expires_at.as_str())
        );
    }

    // From the expiry second on: 404 expired everywhere, before the reaper has run.
    wait_for_second(at).await;
    let gone = call(&api, Method::GET, "/items/temp/banner", None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(gone.json()["error"], "expired");
    let batch = call(
        &api,
        Method::POST,
        "/batch-get",
        Some("{\"keys\":[\"temp/banner\"]}"),
    )
    .await
    .json();
    assert_eq!(batch["items"][0]["found"], false, "{batch}");

    // The reaper deletes the object: gone from the bucket and the listing, a delete in history (after the
    // version that carried the expiry) and in the change feed.
    let report = api.stack.reap_now().await.expect("reaper run");
    assert_eq!(report.deleted, 1, "{report:?}");
    assert_eq!(api.current("temp/banner").await, None);
    api.settle().await;
    let listed = call(&api, Method::GET, "/items?prefix=temp/", None)
        .await
        .json();
    assert_eq!(listed["items"], Value::Array(vec![]), "{listed}");
    let history = call(&api, Method::GET, "/versions/temp/banner", None)
        .await
        .json();
    let versions = history["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0]["deleted"], true);
    assert_eq!(versions[1]["expiresAt"], Value::from(expires_at.clone()));
    let changes = call(&api, Method::GET, &format!("/changes?after={cursor}"), None)
        .await
        .json();
    let change = changes["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["key"] == "temp/banner")
        .unwrap_or_else(|| panic!("no change for the item: {changes}"))
        .clone();
    assert_eq!(change["deleted"], true, "{change}");

    // A restore brings it back, without the expiry.
    let version = versions[1]["version"].as_str().unwrap();
    let restored = call(
        &api,
        Method::POST,
        "/restore/temp/banner",
        Some(&format!("{{\"version\":\"{version}\"}}")),
    )
    .await;
    assert_eq!(restored.status, 201, "{}", restored.body);
    api.settle().await;
    let back = call(&api, Method::GET, "/items/temp/banner", None).await;
    assert_eq!((back.status, back.body.as_str()), (200, "{\"on\":true}"));
    assert_eq!(back.header("x-s3kv-expires-at"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewrite_without_a_ttl_before_the_expiry_is_never_deleted() {
    let api = local().await;
    let first = call(&api, Method::PUT, "/items/kept?ttl=3", Some("1")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let at = seconds(first.json()["expiresAt"].as_str().unwrap());
    api.settle().await;
    // Scheduled for deletion; rewritten with the same bytes (the same ETag) and no TTL before the reaper looks.
    let second = call(&api, Method::PUT, "/items/kept", Some("1")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.header("x-s3kv-expires-at"), None);
    api.settle().await;
    // Another item due at the same time shows when the reaper has run past the first one's expiry.
    let marker = call(&api, Method::PUT, "/items/marker?ttl=1", Some("2")).await;
    let marker_at = seconds(marker.json()["expiresAt"].as_str().unwrap());
    api.settle().await;
    wait_for_second(at.max(marker_at)).await;
    until(REAP_BOUND, async || {
        api.current("marker").await.is_none().then_some(())
    })
    .await;
    assert_eq!(api.current("kept").await.as_deref(), Some("1"));
    let read = call(&api, Method::GET, "/items/kept", None).await;
    assert_eq!((read.status, read.body.as_str()), (200, "1"));
    assert_eq!(read.header("x-s3kv-expires-at"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_expiries_are_refused_with_the_reason() {
    let api = local().await;
    let future = (s3kv::expiry::now() + 3600).to_string();
    for (query, parameter) in [
        ("ttl=0", "ttl"),
        ("ttl=-5", "ttl"),
        ("ttl=1.5", "ttl"),
        ("ttl=abc", "ttl"),
        ("ttl=999999999999", "ttl"),
        ("expiresAt=2001-01-01T00:00:00Z", "expiresAt"),
        ("expiresAt=2200-01-01T00:00:00Z", "expiresAt"),
        ("expiresAt=tomorrow", "expiresAt"),
        ("expiresAt=1", "expiresAt"),
    ] {
        let reply = call(
            &api,
            Method::PUT,
            &format!("/items/bad?{query}"),
            Some("{}"),
        )
        .await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["error"], "invalid_query", "{query}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(parameter), "{query}: {message}");
    }
    let both = format!("/items/bad?ttl=5&expiresAt={future}");
    let reply = call(&api, Method::PUT, &both, Some("{}")).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("not both"), "{}", reply.body);
    assert_eq!(api.current("bad").await, None);

    // A good expiresAt, as RFC 3339 or Unix seconds, is stored and read back as RFC 3339.
    let path = format!("/items/good?expiresAt={future}");
    let reply = call(&api, Method::PUT, &path, Some("{}")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let at: i64 = future.parse().unwrap();
    let expected = s3kv::expiry::Expiry::at(at).rfc3339();
    assert_eq!(reply.header("x-s3kv-expires-at"), Some(expected.as_str()));
}

/// The entry of an expiring item lives until its expiry plus the tombstone TTL (docs/src/cache.md says why: an
/// older event delayed past the expiry must still find it and lose), a fill's too; a rewrite without an expiry
/// keeps its entry for good; and the syncer's index, not the entry, is what the reaper reads.
#[tokio::test]
async fn an_expiring_entry_outlives_its_expiry_by_the_tombstone_ttl_and_blocks_late_events() {
    use fred::prelude::*;
    use s3kv::ports::{Applied, Cache, CacheChange, Etag, ExpiryIndex, Object};
    use s3kv::sequencer::Sequencer;

    let valkey = common::Valkey::start();
    let cache =
        s3kv::adapters::valkey::ValkeyCache::new(&valkey.url(), Duration::from_secs(2)).unwrap();
    cache.connect(Duration::from_secs(5)).await;
    let client = valkey.client().await;
    let grace = s3kv::config::DEFAULT_TOMBSTONE_TTL.as_secs() as i64;
    let at = s3kv::expiry::Expiry::at(s3kv::expiry::now() + 2);
    let object = |body: &'static str, expires| Object {
        body: bytes::Bytes::from_static(body.as_bytes()),
        etag: Etag::new(body),
        provenance: s3kv::audit::Provenance {
            expires,
            ..Default::default()
        },
    };
    let seq = |s: &str| Sequencer::parse(s).unwrap();

    let put = CacheChange::Put(object("2", Some(at)));
    assert_eq!(
        cache.apply("k", &seq("20"), &put).await.unwrap(),
        Applied::Applied
    );
    let when: i64 = client
        .custom(fred::cmd!("PEXPIRETIME"), vec!["k"])
        .await
        .unwrap();
    assert_eq!(when, (at.unix_seconds() + grace) * 1000);
    assert!(cache.fill("f", &object("1", Some(at))).await.unwrap());
    let when: i64 = client
        .custom(fred::cmd!("PEXPIRETIME"), vec!["f"])
        .await
        .unwrap();
    assert_eq!(when, (at.unix_seconds() + grace) * 1000);

    // Past the expiry the entry is still there, so a delayed older event changes nothing.
    wait_for_second(at.unix_seconds()).await;
    let late = CacheChange::Put(object("1", None));
    assert_eq!(
        cache.apply("k", &seq("10"), &late).await.unwrap(),
        Applied::Stale
    );
    // A newer write without an expiry keeps its entry for good.
    let newer = CacheChange::Put(object("3", None));
    assert_eq!(
        cache.apply("k", &seq("30"), &newer).await.unwrap(),
        Applied::Applied
    );
    let ttl: i64 = client.pttl("k").await.unwrap();
    assert_eq!(ttl, -1);

    // The index: due members in order of their time, removed one by one.
    let key = s3kv::key::ItemKey::parse("a").unwrap();
    let soon = s3kv::expiry::member(&key, at);
    let later = s3kv::expiry::Expiry::at(at.unix_seconds() + 3600);
    cache.schedule(&soon, at).await.unwrap();
    cache.schedule(&soon, at).await.unwrap();
    cache
        .schedule(&s3kv::expiry::member(&key, later), later)
        .await
        .unwrap();
    assert_eq!(
        cache.due(s3kv::expiry::now(), 10).await.unwrap(),
        vec![soon.clone()]
    );
    cache.unschedule(&soon).await.unwrap();
    assert!(cache.due(s3kv::expiry::now(), 10).await.unwrap().is_empty());
}

/// OFREP: a single evaluation says the flag is not found from its expiry second on; a bulk answer's ETag carries the
/// soonest expiry, so a poll holding it gets the full answer (without the flag) from then on, not a 304.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openfeature_flags_expire_exactly_and_bulk_polls_are_not_held_past_an_expiry() {
    let api = local_reaping_on_demand().await;
    const FLAGS: &str = "/ofrep/v1/evaluate/flags";
    let written = call(&api, Method::PUT, "/items/flags/sale?ttl=2", Some("true")).await;
    assert_eq!(written.status, 201, "{}", written.body);
    let at = seconds(written.json()["expiresAt"].as_str().unwrap());
    assert_eq!(
        call(&api, Method::PUT, "/items/flags/theme", Some("\"dark\""))
            .await
            .status,
        201
    );
    api.settle().await;

    let bulk = call(&api, Method::POST, FLAGS, Some("{}")).await;
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    let etag = bulk.header("etag").expect("ETag").to_owned();
    // The web provider's poll: the bulk evaluation, revalidated with the ETag it holds.
    let poll = async || {
        let held = [("if-none-match", etag.as_str())];
        api.send(Method::POST, FLAGS, Some(KEY), &held, Some("{}"))
            .await
    };
    if s3kv::expiry::now() < at {
        assert!(etag.ends_with(&format!("-x{at}\"")), "{etag}");
        let held = poll().await;
        assert_eq!(held.status, 304, "{}", held.body);
    }

    wait_for_second(at).await;
    let one = call(&api, Method::POST, &format!("{FLAGS}/sale"), Some("{}")).await;
    assert_eq!(one.status, 404, "{}", one.body);
    assert_eq!(one.json()["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(one.json()["error"], "expired");
    let after = poll().await;
    assert_eq!(after.status, 200, "{}", after.body);
    let body = after.json();
    let keys: Vec<&str> = body["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| f["key"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(keys, ["theme"], "{body}");
}
