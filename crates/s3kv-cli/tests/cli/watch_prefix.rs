//! `watch --prefix`: what changes under a prefix, and resuming from a cursor (`--after`, `--cursor-file`).

use crate::harness::Local;

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_prints_only_what_changes_under_it() {
    let local = Local::start("watch-prefix").await;

    // From now: a write outside the prefix first, then one under it; only that one is printed.
    let mut once = local.watch(&["--prefix", "flags/", "--once"]);
    let start = once.cursor().await;
    local
        .s3kv_with(&["put", "config/ui"], Some("{}"), &[])
        .await
        .ok();
    local
        .s3kv_with(&["put", "flags/beta"], Some("true"), &[])
        .await
        .ok();
    let printed = once.cursor().await;
    let (code, lines) = once.ends().await;
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["key"], "flags/beta");
    assert_eq!(lines[0]["deleted"], false);
    assert!(lines[0]["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert_ne!(printed, start);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_after_a_cursor_prints_what_changed_since() {
    let local = Local::start("watch-after").await;
    let mut from = local.watch(&["--prefix", "", "--once"]);
    let start = from.cursor().await;
    from.child.kill().await.unwrap();
    local
        .s3kv_with(&["put", "config/ui"], Some("{}"), &[])
        .await
        .ok();
    local
        .s3kv_with(&["put", "flags/beta"], Some("true"), &[])
        .await
        .ok();
    local.settle().await;

    // --after the first cursor, over every prefix: both writes, at once.
    let resumed = local.watch(&["--prefix", "", "--after", &start, "--once"]);
    let (code, lines) = resumed.ends().await;
    assert_eq!(code, 0);
    let mut keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["config/ui", "flags/beta"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_keeps_its_cursor_in_a_file_and_goes_on_from_it() {
    let local = Local::start("watch-cursor-file").await;
    local
        .s3kv_with(&["put", "flags/beta"], Some("true"), &[])
        .await
        .ok();
    local.settle().await;

    // --cursor-file: kept after each batch, and where the next run goes on from; a delete is a change too.
    let file = local.dir.join("flags.cursor");
    let file_arg = file.display().to_string();
    let mut first = local.watch(&["--prefix", "flags/", "--cursor-file", &file_arg, "--once"]);
    first.cursor().await;
    local
        .s3kv_with(&["put", "flags/gamma"], Some("1"), &[])
        .await
        .ok();
    let last = first.cursor().await;
    let (code, lines) = first.ends().await;
    assert_eq!((code, lines.len()), (0, 1), "{lines:?}");
    assert_eq!(lines[0]["key"], "flags/gamma");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), last);
    local.s3kv(&["rm", "flags/beta"]).await.ok();
    local.settle().await;
    let next = local.watch(&["--prefix", "flags/", "--cursor-file", &file_arg, "--once"]);
    let (code, lines) = next.ends().await;
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        [serde_json::json!({"key": "flags/beta", "etag": null, "deleted": true})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_warns_that_changes_were_missed_when_its_cursor_expired_and_goes_on() {
    let local = Local::start("watch-expired").await;
    // A cursor the feed no longer holds (here: one beyond its end): a warning that changes were missed, then on
    // from the cursor the API gives back.
    let mut expired = local.watch(&[
        "--prefix",
        "flags/",
        "--after",
        "99999999999999-0",
        "--once",
    ]);
    assert_eq!(expired.cursor().await, "99999999999999-0");
    let restart = expired.cursor().await;
    assert_ne!(restart, "99999999999999-0");
    assert!(
        expired.said.iter().any(|l| l.contains("were missed")),
        "{:?}",
        expired.said
    );
    local
        .s3kv_with(&["put", "flags/delta"], Some("2"), &[])
        .await
        .ok();
    let (code, lines) = expired.ends().await;
    assert_eq!((code, lines.len()), (0, 1), "{lines:?}");
    assert_eq!(lines[0]["key"], "flags/delta");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_refuses_a_cursor_the_api_never_gave_with_exit_1() {
    let local = Local::start("watch-nonsense").await;
    // A cursor the API never gave: its 400, exit 1, not retried forever.
    local
        .s3kv(&["watch", "--prefix", "flags/", "--after", "nonsense"])
        .await
        .fails(1, "not a cursor");
}
