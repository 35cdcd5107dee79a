//! `watch` over push (the default): s3kv-local serves AppSync Events' protocol on the API's address, which the
//! watch finds by itself from the endpoint. What it prints for an API write, an upload and a delete (the same lines
//! as a long-poll), catching up after the connection is lost, a prefix that does not end in '/', 100 writes in
//! quick succession, and falling back to long-poll when push cannot be reached.

use std::time::Duration;

use serde_json::json;

use crate::harness::{upload, Local, Watch};

/// Waits until `n` push connections are open (a watch subscribes before it prints its first line, so this only
/// waits after a reconnection).
async fn connections(local: &Local, n: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while local.push_connections() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{} push connections, not {n}",
        local.push_connections()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_key_over_push_prints_an_api_write_an_upload_and_a_delete() {
    let local = Local::start("push-key").await;
    local.put("flags/x", r#"{"on": false}"#).await;
    local.settle().await;
    let mut watch = local.watch(&["flags/x"]);
    assert_eq!(watch.line().await["value"], json!({"on": false}));
    // Subscribed before the state line: the watch is on push, not long-polling.
    assert_eq!(local.push_connections(), 1);

    // An API write: the value byte for byte (a number JSON cannot hold in a double, members in their order),
    // with the ETag and the writer a long-poll prints.
    local
        .s3kv_with(
            &["put", "flags/x"],
            Some(r#"{"z": 1e400, "a": "b c"}"#),
            &[],
        )
        .await
        .ok();
    let line = watch.raw_line().await;
    let (head, value) = line.split_once(r#","value":"#).unwrap();
    assert_eq!(value, r#"{"z":1e400,"a":"b c"}}"#);
    let head: serde_json::Value = serde_json::from_str(&format!("{head}}}")).unwrap();
    assert_eq!(head["key"], "flags/x");
    assert!(head["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(
        head["writer"]
            .as_str()
            .is_some_and(|w| w.starts_with("key=local0")),
        "{line}"
    );
    assert!(line.starts_with(r#"{"key":"flags/x","etag":"#), "{line}");
    // An upload around the API: written by S3, not by a key.
    upload(&local, "flags/x.json", "[1, 2]").await;
    let uploaded = watch.line().await;
    assert_eq!(
        (&uploaded["value"], &uploaded["writer"]),
        (&json!([1, 2]), &json!("s3"))
    );
    local.s3kv(&["rm", "flags/x"]).await.ok();
    assert_eq!(
        watch.line().await,
        json!({"key": "flags/x", "deleted": true})
    );
    // Another key under the same prefix is not this item's change.
    local.put("flags/xy", "1").await;
    local.put("flags/x", "2").await;
    assert_eq!(watch.line().await["value"], 2);
    watch.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_over_push_prints_an_api_write_an_upload_and_a_delete() {
    let local = Local::start("push-prefix").await;
    let mut watch = local.watch(&["--prefix", "flags/"]);
    let start = watch.cursor().await;
    assert_eq!(local.push_connections(), 1);
    local.put("config/ui", "{}").await;
    local.put("flags/a", "true").await;
    let written = watch.line().await;
    assert_eq!(
        (&written["key"], &written["deleted"]),
        (&json!("flags/a"), &json!(false))
    );
    assert!(written["etag"].as_str().is_some_and(|e| !e.is_empty()));
    let after_write = watch.cursor().await;
    assert_ne!(after_write, start);
    upload(&local, "flags/b.json", "[1]").await;
    assert_eq!(watch.line().await["key"], "flags/b");
    watch.cursor().await;
    local.s3kv(&["rm", "flags/a"]).await.ok();
    assert_eq!(
        watch.line().await,
        json!({"key": "flags/a", "etag": null, "deleted": true})
    );
    // The cursor told is the feed's: resuming from the one after the write prints only what followed it.
    let last = watch.cursor().await;
    watch.child.kill().await.unwrap();
    let resumed = local.watch(&["--prefix", "flags/", "--after", &after_write, "--once"]);
    let (code, lines) = resumed.ends().await;
    assert_eq!(code, 0);
    let mut keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["flags/a", "flags/b"], "{lines:?}");
    assert!(watch.said.is_empty(), "{:?}", watch.said);
    assert!(!last.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_not_ending_in_a_slash_follows_its_slash_prefix_and_filters() {
    let local = Local::start("push-partial-prefix").await;
    let mut watch = local.watch(&["--prefix", "flags/be"]);
    watch.cursor().await;
    local.put("flags/alpha", "1").await;
    local.put("flags/beta", "2").await;
    assert_eq!(watch.line().await["key"], "flags/beta");
    local.put("flags/alpha", "3").await;
    local.put("flags/better", "4").await;
    watch.cursor().await;
    assert_eq!(watch.line().await["key"], "flags/better");
    watch.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_that_lost_its_push_connection_prints_what_changed_meanwhile() {
    let local = Local::start("push-catch-up").await;
    local.put("flags/x", "0").await;
    local.settle().await;
    let mut item = local.watch(&["flags/x"]);
    assert_eq!(item.line().await["value"], 0);
    let mut prefix = local.watch(&["--prefix", "flags/"]);
    prefix.cursor().await;
    connections(&local, 2).await;
    // Written while no watch is connected (a watch waits at least half a second before reconnecting): proven by
    // no connection being open once the write is published, else tried again.
    let mut proven = false;
    for round in 1..=5 {
        local.drop_push_connections();
        upload(&local, "flags/x.json", &round.to_string()).await;
        local.settle().await;
        proven |= local.push_connections() == 0;
        assert_eq!(item.line().await["value"], round);
        let line = prefix.line().await;
        assert_eq!(line["key"], "flags/x");
        prefix.cursor().await;
        connections(&local, 2).await;
        if proven {
            break;
        }
    }
    assert!(proven, "the watches reconnected before every write");
    // And they follow on over push.
    local.put("flags/x", "9").await;
    assert_eq!(item.line().await["value"], 9);
    assert_eq!(prefix.line().await["key"], "flags/x");
    let said = item.said_line().await;
    assert!(said.contains("reconnecting"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_quick_writes_end_on_the_last_and_never_step_back() {
    let local = Local::start("push-quick").await;
    local.put("n", "0").await;
    local.settle().await;
    let mut watch = local.watch(&["n"]);
    assert_eq!(watch.line().await["value"], 0);
    for n in 1..=100 {
        local.put("n", &n.to_string()).await;
    }
    let mut last = 0;
    while last != 100 {
        let line = watch.line().await;
        let n = line["value"].as_i64().unwrap_or_else(|| panic!("{line}"));
        assert!(n > last, "{n} printed after {last}");
        last = n;
    }
    // Nothing after the last: no change printed twice.
    let more = tokio::time::timeout(Duration::from_secs(2), watch.line()).await;
    assert!(more.is_err(), "{:?}", more.ok());
    watch.child.kill().await.unwrap();
}

/// `--transport poll`: the long-poll of before, with no push connection.
async fn polled(local: &Local, args: &[&str]) -> Watch {
    let mut all = args.to_vec();
    all.extend(["--transport", "poll"]);
    local.watch(&all)
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_poll_long_polls_without_push() {
    let local = Local::start("push-poll").await;
    local.put("flags/x", "1").await;
    local.settle().await;
    let mut item = polled(&local, &["flags/x"]).await;
    assert_eq!(item.line().await["value"], 1);
    let mut prefix = polled(&local, &["--prefix", "flags/"]).await;
    prefix.cursor().await;
    assert_eq!(local.push_connections(), 0);
    local.put("flags/x", "2").await;
    assert_eq!(item.line().await["value"], 2);
    assert_eq!(prefix.line().await["key"], "flags/x");
    local.s3kv(&["rm", "flags/x"]).await.ok();
    assert_eq!(item.line().await["deleted"], true);
    local.put("flags/x", "3").await;
    assert_eq!(item.line().await["value"], 3);
    assert_eq!(local.push_connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_that_cannot_reach_push_says_so_and_long_polls() {
    let local = Local::start("push-unreachable").await;
    // Nothing listens on port 1.
    let mut item = local.watch(&["flags/x", "--push-url", "ws://127.0.0.1:1/event/realtime"]);
    let said = item.said_line().await;
    assert!(
        said.contains("push unavailable") && said.contains("long-poll"),
        "{said}"
    );
    assert_eq!(item.line().await["deleted"], true);
    local.put("flags/x", "1").await;
    assert_eq!(item.line().await["value"], 1);
    assert_eq!(local.push_connections(), 0);
    // A push URL that is not a WebSocket one is refused before anything is sent; the flag outranks the
    // environment.
    let url = local.push_url();
    let run = local
        .s3kv_with(
            &["watch", "flags/x", "--push-url", "http://x"],
            None,
            &[("S3KV_PUSH_URL", url.as_str())],
        )
        .await;
    run.fails(2, "push URL");
}
