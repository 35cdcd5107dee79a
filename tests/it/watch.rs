//! Watching, as a client sees it through s3kv-local over HTTP (its S3 endpoint sends the notifications, its
//! syncer appends to the change feed in a real valkey-server): a waiter wakes on a write through the API, on a
//! manual upload and on a delete; a hundred waiters wake on one change; a wait with no change ends in 304; a
//! consumer that follows the feed across a thousand changes ends with exactly what the bucket holds; a cursor
//! older than the feed keeps answers 410 with a cursor to restart from.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use s3kv::percent;
use serde_json::Value;

use common::{Reply, TestStack};

const WRITE_KEY: &str = "watch-write-key";
const FLAGS_READ_KEY: &str = "watch-flags-read-key";

async fn local(name: &str) -> Arc<TestStack> {
    Arc::new(
        TestStack::start(name, |o| {
            o.api_key = Some(WRITE_KEY.into());
            o.read_keys = vec![s3kv_local::KeySpec {
                value: FLAGS_READ_KEY.into(),
                prefixes: vec!["flags/".into()],
            }];
            o.public_prefix = Some("public/".into());
        })
        .await,
    )
}

fn item(key: &str) -> String {
    format!("/items/{}", percent::encode_path(key))
}

async fn put(api: &TestStack, key: &str, body: &str) -> String {
    let reply = api
        .send(Method::PUT, &item(key), Some(WRITE_KEY), &[], Some(body))
        .await;
    assert!(reply.status < 300, "{} {}", reply.status, reply.body);
    reply.header("etag").expect("etag").to_owned()
}

/// A wait on `path` (an item path, with `wait` in it) from the version `etag`, started in the background.
fn waiter(
    api: &Arc<TestStack>,
    path: String,
    key: Option<&'static str>,
    etag: String,
) -> tokio::task::JoinHandle<Reply> {
    let api = api.clone();
    tokio::spawn(async move {
        api.send(Method::GET, &path, key, &[("if-none-match", &etag)], None)
            .await
    })
}

/// Lets the waiters start waiting, and checks that they are: nothing has changed, so none may have answered.
async fn assert_waiting(waiters: &[tokio::task::JoinHandle<Reply>]) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answered = waiters.iter().filter(|w| w.is_finished()).count();
    assert_eq!(answered, 0, "waiters answered before anything changed");
}

async fn assert_waiting_all<const N: usize>(
    waiters: [tokio::task::JoinHandle<Reply>; N],
) -> [tokio::task::JoinHandle<Reply>; N] {
    assert_waiting(&waiters).await;
    waiters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_wakes_on_a_write_an_upload_and_a_delete() {
    let api = local("watch-wake").await;
    let key = "flags/maintenance";
    let first = put(&api, key, r#"{"on":false}"#).await;
    api.settle().await;

    let path = format!("{}?wait=20", item(key));
    let w = waiter(&api, path.clone(), Some(WRITE_KEY), first.clone());
    assert_waiting(std::slice::from_ref(&w)).await;
    let second = put(&api, key, r#"{"on":true}"#).await;
    let reply = w.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), serde_json::json!({"on": true}));
    assert_eq!(reply.header("etag"), Some(second.as_str()));

    // A manual upload bypasses the API; the syncer still announces it. Public readers may wait too.
    let public_key = "public/banner";
    let banner = put(&api, public_key, r#""hello""#).await;
    api.settle().await;
    let public = waiter(
        &api,
        format!("/public/{}?wait=20", percent::encode_path(public_key)),
        None,
        banner,
    );
    let w = waiter(&api, path.clone(), Some(WRITE_KEY), second.clone());
    let [public, w] = assert_waiting_all([public, w]).await;
    api.upload(key, r#"{"on":"uploaded"}"#).await;
    api.upload(public_key, r#""bye""#).await;
    let reply = w.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), serde_json::json!({"on": "uploaded"}));
    let uploaded = reply.header("etag").expect("etag").to_owned();
    assert_ne!(uploaded, second);
    let reply = public.await.unwrap();
    assert_eq!(
        (reply.status, reply.json()),
        (200, serde_json::json!("bye"))
    );

    let w = waiter(&api, path, Some(WRITE_KEY), uploaded);
    assert_waiting(std::slice::from_ref(&w)).await;
    let deleted = api
        .send(Method::DELETE, &item(key), Some(WRITE_KEY), &[], None)
        .await;
    assert_eq!(deleted.status, 204);
    let reply = w.await.unwrap();
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.json()["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_waiters_all_wake_on_one_change() {
    let api = local("watch-hundred").await;
    let key = "flags/fleet";
    let first = put(&api, key, "1").await;
    api.settle().await;
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            waiter(
                &api,
                format!("{}?wait=20", item(key)),
                Some(WRITE_KEY),
                first.clone(),
            )
        })
        .collect();
    assert_waiting(&waiters).await;
    let second = put(&api, key, "2").await;
    for w in waiters {
        let reply = w.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "2");
        assert_eq!(reply.header("etag"), Some(second.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_without_a_change_ends_in_304_and_bad_waits_are_refused() {
    let api = local("watch-expiry").await;
    let key = "flags/quiet";
    let etag = put(&api, key, "true").await;
    api.settle().await;
    let path = format!("{}?wait=1", item(key));
    let reply = api
        .send(
            Method::GET,
            &path,
            Some(WRITE_KEY),
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(reply.status, 304, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some(etag.as_str()));
    // Without If-None-Match there is nothing to wait for: the item, at once.
    let reply = api
        .send(Method::GET, &path, Some(WRITE_KEY), &[], None)
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "true"));
    // A client that is behind learns so at once.
    let reply = api
        .send(
            Method::GET,
            &path,
            Some(WRITE_KEY),
            &[("if-none-match", "\"old\"")],
            None,
        )
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "true"));
    for bad in ["0", "26", "soon", "-1"] {
        let path = format!("{}?wait={bad}", item(key));
        let reply = api
            .send(Method::GET, &path, Some(WRITE_KEY), &[], None)
            .await;
        assert_eq!(reply.status, 400, "wait={bad}: {}", reply.body);
        assert_eq!(reply.json()["error"], "invalid_query");
    }
    let reply = api
        .send(
            Method::GET,
            &format!("{path}&consistent=true"),
            Some(WRITE_KEY),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
}

/// The feed from `cursor`, as a consumer follows it: every answer's changes applied to `state` (key → ETag, or
/// gone), until an answer with no changes.
async fn follow(
    api: &TestStack,
    key: &str,
    cursor: &mut String,
    state: &mut HashMap<String, Option<String>>,
    wait: u32,
) -> usize {
    let mut seen = 0;
    loop {
        let path = format!("/changes?after={cursor}&wait={wait}&limit=50");
        let reply = api.send(Method::GET, &path, Some(key), &[], None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        *cursor = body["cursor"].as_str().expect("cursor").to_owned();
        let changes = body["changes"].as_array().expect("changes");
        if changes.is_empty() {
            return seen;
        }
        for change in changes {
            let etag = change["etag"].as_str().map(str::to_owned);
            assert_eq!(change["deleted"], Value::Bool(etag.is_none()), "{change}");
            state.insert(change["key"].as_str().unwrap().to_owned(), etag);
            seen += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_feed_consumer_misses_none_of_a_thousand_changes() {
    let api = local("watch-feed").await;
    // The consumer starts from now, before any write.
    let start = api
        .send(Method::GET, "/changes", Some(WRITE_KEY), &[], None)
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    assert_eq!(start.json()["changes"], serde_json::json!([]));
    let mut cursor = start.json()["cursor"].as_str().unwrap().to_owned();

    let keys: Vec<String> = (0..20)
        .map(|i| format!("{}/k{i}", if i % 2 == 0 { "flags" } else { "config" }))
        .collect();
    let writer = {
        let api = api.clone();
        let keys = keys.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            futures::stream::iter(0..1000)
                .for_each_concurrent(8, |n| {
                    let api = api.clone();
                    let key = keys[n % keys.len()].clone();
                    async move {
                        if n % 7 == 3 {
                            let reply = api
                                .send(Method::DELETE, &item(&key), Some(WRITE_KEY), &[], None)
                                .await;
                            assert!(matches!(reply.status, 204 | 404), "{}", reply.body);
                        } else {
                            put(&api, &key, &format!("{{\"n\":{n}}}")).await;
                        }
                    }
                })
                .await;
        })
    };
    // Follow while the writes go on, then until the feed is quiet after the last sync.
    let mut state = HashMap::new();
    let mut seen = 0;
    while !writer.is_finished() {
        seen += follow(&api, WRITE_KEY, &mut cursor, &mut state, 1).await;
    }
    writer.await.unwrap();
    api.settle().await;
    seen += follow(&api, WRITE_KEY, &mut cursor, &mut state, 1).await;
    assert!(seen >= keys.len(), "only {seen} changes reported");

    for key in &keys {
        let truth = api
            .send(
                Method::GET,
                &format!("{}?consistent=true", item(key)),
                Some(WRITE_KEY),
                &[],
                None,
            )
            .await;
        let expected = (truth.status == 200)
            .then(|| truth.header("etag").unwrap().trim_matches('"').to_owned());
        assert_eq!(state.get(key), Some(&expected), "{key}");
    }

    // A key limited to flags/ follows only flags/, from the same start.
    let mut flags_cursor = start.json()["cursor"].as_str().unwrap().to_owned();
    let mut flags_state = HashMap::new();
    follow(&api, FLAGS_READ_KEY, &mut flags_cursor, &mut flags_state, 0).await;
    assert_eq!(flags_state.len(), 10);
    assert!(flags_state.keys().all(|k| k.starts_with("flags/")));
    for (key, etag) in &flags_state {
        assert_eq!(state.get(key), Some(etag), "{key}");
    }
    let reply = api
        .send(
            Method::GET,
            "/changes?prefix=config/",
            Some(FLAGS_READ_KEY),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_feed_answers_410_with_a_restart_cursor() {
    let stack = common::Stack::start_with(&[("S3KV_FEED_RETENTION", "10")]).await;
    let changes = |after: &str| common::changes_request(Some(after));
    let first = stack.route(&changes("0-0")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let start = first.json()["cursor"].as_str().unwrap().to_owned();
    // Many changes to one item: the feed keeps about the newest ten.
    for n in 0..300 {
        let reply = stack.put("busy", &n.to_string()).await;
        assert!(reply.status < 300);
        let object_key = stack.object_key("busy");
        let etag = s3kv::ports::Etag::new(reply.header("etag").unwrap());
        stack
            .sync(vec![stack.created(&object_key, &etag)])
            .await
            .expect("sync");
    }
    let gone = stack.route(&changes(&start)).await;
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert_eq!(gone.json()["error"], "cursor_expired");
    let restart = gone.json()["cursor"]
        .as_str()
        .expect("restart cursor")
        .to_owned();
    let resumed = stack.route(&changes(&restart)).await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.json()["changes"], serde_json::json!([]));
    // A cursor from beyond the feed's end was never this feed's.
    for future in [
        "99999999999999-0",
        "18446744073709551615-18446744073709551615",
    ] {
        let reply = stack.route(&changes(future)).await;
        assert_eq!(reply.status, 410, "{future}: {}", reply.body);
    }
    // The cache lost the feed (flushed, replaced) and a new change created it again: a cursor from before cannot
    // know what it missed.
    let held = resumed.json()["cursor"].as_str().unwrap().to_owned();
    stack.flush_cache().await;
    let reply = stack.put("busy", "\"after the flush\"").await;
    let etag = s3kv::ports::Etag::new(reply.header("etag").unwrap());
    let object_key = stack.object_key("busy");
    stack
        .sync(vec![stack.created(&object_key, &etag)])
        .await
        .expect("sync");
    let lost = stack.route(&changes(&held)).await;
    assert_eq!(lost.status, 410, "{}", lost.body);
    let bad = stack.route(&changes("yesterday")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_valkey_is_down_a_waiter_still_wakes_and_the_feed_says_it_is_unavailable() {
    let stack = Arc::new(common::Stack::start_with(&[("S3KV_CACHE_TIMEOUT_MS", "100")]).await);
    let first = stack.put("flags/outage", "1").await;
    assert!(first.status < 300, "{}", first.body);
    let etag = first.header("etag").unwrap().to_owned();
    stack.valkey.stop();

    let unavailable = stack.route(&common::changes_request(None)).await;
    assert_eq!(unavailable.status, 503, "{}", unavailable.body);
    assert_eq!(unavailable.json()["error"], "unavailable");

    let waiter = {
        let stack = stack.clone();
        tokio::spawn(async move {
            let mut request = common::request(Method::GET, "flags/outage", None);
            request.query_string_parameters =
                HashMap::from([("wait".to_owned(), vec!["20".to_owned()])]).into();
            request
                .headers
                .insert("if-none-match", etag.parse().unwrap());
            stack.route(&request).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter answered before the change"
    );
    // The writer needs no cache; the waiter, without its feed, looks at S3.
    let second = stack.put("flags/outage", "2").await;
    assert!(second.status < 300, "{}", second.body);
    let reply = waiter.await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "2"));
    assert_eq!(reply.header("x-cache"), Some("BYPASS"));
}

/// A blocking read that ends with nothing new (Valkey answers nil) is "nothing yet", not a failure: a wait on a
/// quiet feed outlasts several blocks and ends in `false`, and a change after that still wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_quiet_feed_outlasts_the_blocking_reads_and_still_wakes() {
    use s3kv::ports::Feed;
    let valkey = tokio::task::spawn_blocking(common::Valkey::start)
        .await
        .unwrap();
    let cache = s3kv::adapters::valkey::ValkeyCache::new(&valkey.url(), Duration::from_millis(200))
        .unwrap();
    cache.connect(Duration::from_secs(5)).await;
    cache.announce("flags/a").await.expect("announce");
    let end = cache.tail().await.expect("tail");
    // Longer than one blocking read (5 s): the hub's nil answer must not turn into an error.
    let quiet = cache.wait(end, Duration::from_secs(7)).await;
    assert!(matches!(quiet, Ok(false)), "{quiet:?}");
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.wait(end, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    assert!(!waiter.is_finished(), "woke with nothing new");
    cache.announce("flags/a").await.expect("announce");
    assert!(matches!(waiter.await.unwrap(), Ok(true)));
}
