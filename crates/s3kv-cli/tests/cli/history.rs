//! `history` and `restore`.

use crate::harness::Local;

#[tokio::test(flavor = "multi_thread")]
async fn history_lists_versions_newest_first_and_restore_brings_one_back() {
    let local = Local::start("history").await;
    for value in ["{\"enabled\": true}", "{\"enabled\": false}"] {
        local
            .s3kv_with(&["put", "flags/maintenance"], Some(value), &[])
            .await
            .ok();
        local.settle().await;
    }

    // history and restore.
    let history = local
        .s3kv(&["history", "flags/maintenance", "--output", "json"])
        .await
        .ok()
        .json();
    let versions = history.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let oldest = versions[1]["version"].as_str().unwrap().to_owned();
    let text = local.s3kv(&["history", "flags/maintenance"]).await.ok();
    assert!(
        text.stdout.lines().next().unwrap().starts_with("* "),
        "{}",
        text.stdout
    );
    local
        .s3kv(&["restore", "flags/maintenance", &oldest])
        .await
        .ok();
    local.settle().await;
    let restored = local.s3kv(&["get", "flags/maintenance"]).await.ok();
    assert_eq!(restored.stdout, "{\"enabled\": true}");
    let old = local
        .s3kv(&["get", "flags/maintenance", "--version", &oldest])
        .await
        .ok();
    assert_eq!(old.stdout, "{\"enabled\": true}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restoring_a_version_that_does_not_exist_exits_3() {
    let local = Local::start("restore-none").await;
    local
        .s3kv_with(&["put", "flags/maintenance"], Some("{}"), &[])
        .await
        .ok();
    local.settle().await;
    local
        .s3kv(&["restore", "flags/maintenance", "0000000042"])
        .await
        .fails(3, "no version");
}
