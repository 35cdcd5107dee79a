//! `watch KEY`: the item's state, then each change, one JSON line each.

use crate::harness::Local;

/// A stack holding `flags/maintenance`, `{"on": false}`.
async fn watched(name: &str) -> Local {
    let local = Local::start(name).await;
    local
        .s3kv_with(&["put", "flags/maintenance"], Some(r#"{"on": false}"#), &[])
        .await
        .ok();
    local.settle().await;
    local
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_once_prints_the_state_then_the_first_change_on_one_line_and_exits_0() {
    let local = watched("watch-once").await;
    // --once: the state it starts from, then blocks until a write changes it, prints that and exits 0.
    let mut once = local.watch(&["flags/maintenance", "--once"]);
    let first = once.line().await;
    assert_eq!(first["key"], "flags/maintenance");
    assert_eq!(first["value"], serde_json::json!({"on": false}));
    let first_etag = first["etag"].as_str().unwrap().to_owned();
    // Pretty-printed on the way in, one line on the way out: every change is one line of stdout.
    local
        .s3kv_with(
            &["put", "flags/maintenance"],
            Some("{\n  \"on\": true,\n  \"why\": \"a b\"\n}\n"),
            &[],
        )
        .await
        .ok();
    let (code, rest) = once.ends().await;
    assert_eq!(code, 0);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["key"], "flags/maintenance");
    assert_eq!(
        rest[0]["value"],
        serde_json::json!({"on": true, "why": "a b"})
    );
    assert_ne!(rest[0]["etag"], first_etag.as_str());
    assert!(
        rest[0]["writer"]
            .as_str()
            .unwrap()
            .starts_with("key=local0"),
        "{}",
        rest[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_follows_an_item_through_its_delete_and_back() {
    let local = watched("watch-back").await;
    local
        .s3kv_with(&["put", "flags/maintenance"], Some(r#"{"on": true}"#), &[])
        .await
        .ok();
    local.settle().await;
    // Without --once it goes on: a delete, then the item back again.
    let mut watch = local.watch(&["flags/maintenance"]);
    assert_eq!(watch.line().await["value"]["on"], true);
    local.s3kv(&["rm", "flags/maintenance"]).await.ok();
    assert_eq!(
        watch.line().await,
        serde_json::json!({"key": "flags/maintenance", "deleted": true})
    );
    // Keys the prefix KEY also covers are not this item.
    local
        .s3kv_with(&["put", "flags/maintenance-window"], Some("1"), &[])
        .await
        .ok();
    local
        .s3kv_with(
            &["put", "flags/maintenance"],
            Some(r#"{"on": "again"}"#),
            &[],
        )
        .await
        .ok();
    let back = watch.line().await;
    assert_eq!(back["key"], "flags/maintenance");
    assert_eq!(back["value"], serde_json::json!({"on": "again"}));
    watch.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_waits_for_an_item_that_does_not_exist_yet() {
    let local = Local::start("watch-absent").await;
    // An item that does not exist yet: watched until it does.
    let mut absent = local.watch(&["flags/new", "--once"]);
    assert_eq!(
        absent.line().await,
        serde_json::json!({"key": "flags/new", "deleted": true})
    );
    local
        .s3kv_with(&["put", "flags/new"], Some("[1]"), &[])
        .await
        .ok();
    let (code, rest) = absent.ends().await;
    assert_eq!(code, 0);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["value"], serde_json::json!([1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_refuses_an_invalid_key_and_the_feeds_options_on_one_item() {
    let local = Local::start("watch-refused").await;
    // Refused before anything is sent: an invalid key, and the feed's options on one item.
    local.s3kv(&["watch", "a//b"]).await.fails(2, "invalid key");
    local
        .s3kv(&["watch", "flags/new", "--after", "x"])
        .await
        .fails(2, "cannot be used with");
}
