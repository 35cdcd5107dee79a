//! `put`, `get`, `rm`, `ls` and `batch-get`: what they print, and their exit codes.

use crate::harness::Local;

#[tokio::test(flavor = "multi_thread")]
async fn put_from_a_file_or_stdin_and_get_prints_exactly_what_was_stored() {
    let local = Local::start("put-get").await;
    std::fs::write(local.dir.join("flag.json"), r#"{"enabled": true}"#).unwrap();

    // put from a file, then from stdin; get prints exactly what was stored.
    let created = local
        .s3kv(&["put", "flags/maintenance", "flag.json"])
        .await
        .ok();
    assert!(
        created.stdout.starts_with("created flags/maintenance"),
        "{}",
        created.stdout
    );
    local.settle().await;
    let got = local
        .s3kv(&["get", "flags/maintenance", "--etag"])
        .await
        .ok();
    assert_eq!(got.stdout, "{\"enabled\": true}");
    assert!(got.stderr.starts_with("ETag: "), "{}", got.stderr);
    let replaced = local
        .s3kv_with(
            &["put", "flags/maintenance", "-"],
            Some("{\"enabled\": false}"),
            &[],
        )
        .await
        .ok();
    assert!(
        replaced.stdout.starts_with("replaced"),
        "{}",
        replaced.stdout
    );
    local.settle().await;
    let json = local
        .s3kv(&["get", "flags/maintenance", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json["value"], serde_json::json!({"enabled": false}));
    assert!(
        json["writer"].as_str().unwrap().starts_with("key=local0"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_that_does_not_hold_exits_4_and_changes_nothing() {
    let local = Local::start("conditions").await;
    std::fs::write(local.dir.join("flag.json"), r#"{"enabled": true}"#).unwrap();
    local
        .s3kv(&["put", "flags/maintenance", "flag.json"])
        .await
        .ok();
    local.settle().await;
    let got = local
        .s3kv(&["get", "flags/maintenance", "--etag"])
        .await
        .ok();
    let first_etag = got.stderr.trim().trim_start_matches("ETag: ").to_owned();
    local
        .s3kv_with(
            &["put", "flags/maintenance", "-"],
            Some("{\"enabled\": false}"),
            &[],
        )
        .await
        .ok();
    local.settle().await;

    // Conditions: exit 4 when they do not hold, and nothing changes.
    local
        .s3kv(&["put", "flags/maintenance", "flag.json", "--create"])
        .await
        .fails(4, "already exists");
    local
        .s3kv(&[
            "put",
            "flags/maintenance",
            "flag.json",
            "--if-match",
            &first_etag,
        ])
        .await
        .fails(4, "ETag");
    local.settle().await;
    let still = local.s3kv(&["get", "flags/maintenance"]).await.ok();
    assert_eq!(still.stdout, "{\"enabled\": false}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_that_is_not_json_or_a_key_breaking_the_rules_is_refused_before_sending() {
    let local = Local::start("refused").await;
    local
        .s3kv_with(
            &["put", "flags/maintenance", "-"],
            Some("{\"enabled\": false}"),
            &[],
        )
        .await
        .ok();
    // Refused before sending: a value that is not JSON, a key breaking the rules (exit 2).
    local
        .s3kv_with(&["put", "flags/maintenance"], Some("{not json"), &[])
        .await
        .fails(2, "not valid JSON");
    local.s3kv(&["get", "a//b"]).await.fails(2, "invalid key");
    local.settle().await;
    let still = local.s3kv(&["get", "flags/maintenance"]).await.ok();
    assert_eq!(still.stdout, "{\"enabled\": false}");
}

/// Three items: `flags/beta`, `flags/maintenance` and `config/ui`.
async fn three_items(local: &Local) {
    local
        .s3kv_with(
            &["put", "flags/maintenance", "-"],
            Some("{\"enabled\": false}"),
            &[],
        )
        .await
        .ok();
    local
        .s3kv_with(&["put", "flags/beta"], Some("[1,2]"), &[])
        .await
        .ok();
    local
        .s3kv_with(&["put", "config/ui"], Some("{}"), &[])
        .await
        .ok();
    local.settle().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_lists_the_keys_under_a_prefix_and_long_adds_etag_size_and_time() {
    let local = Local::start("ls").await;
    three_items(&local).await;
    let listed = local.s3kv(&["ls", "flags/"]).await.ok();
    assert_eq!(listed.stdout, "flags/beta\nflags/maintenance\n");
    let long = local.s3kv(&["ls", "--long"]).await.ok();
    assert_eq!(long.stdout.lines().count(), 3);
    assert!(
        long.stdout
            .lines()
            .all(|l| l.split_whitespace().count() == 4),
        "{}",
        long.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_get_prints_each_key_with_its_value_or_null() {
    let local = Local::start("batch-get").await;
    three_items(&local).await;
    let batch = local
        .s3kv(&["batch-get", "flags/beta", "nope", "config/ui"])
        .await
        .ok();
    let batch: serde_json::Value = serde_json::from_str(&batch.stdout).unwrap();
    assert_eq!(
        batch,
        serde_json::json!({"flags/beta": [1, 2], "nope": null, "config/ui": {}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_deletes_and_what_is_not_there_exits_3_with_the_apis_message() {
    let local = Local::start("rm").await;
    three_items(&local).await;
    // rm, and what is not there: exit 3 with the API's message.
    local.s3kv(&["rm", "flags/beta"]).await.ok();
    local.settle().await;
    local
        .s3kv(&["get", "flags/beta"])
        .await
        .fails(3, "no item with key");
    local
        .s3kv(&["rm", "flags/beta"])
        .await
        .fails(3, "no item with key");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_with_a_ttl_or_an_expiry_time_says_when_the_item_expires() {
    let local = Local::start("put-ttl").await;
    std::fs::write(local.dir.join("flag.json"), "true").unwrap();
    let written = local
        .s3kv(&[
            "put",
            "flags/banner",
            "flag.json",
            "--ttl",
            "1h",
            "--output",
            "json",
        ])
        .await
        .ok()
        .json();
    let at = written["expiresAt"].as_str().expect("expiresAt").to_owned();
    let now = s3kv::expiry::now();
    let about_an_hour: Vec<String> = (now + 3590..=now + 3610)
        .map(|s| s3kv::expiry::Expiry::at(s).rfc3339())
        .collect();
    assert!(about_an_hour.contains(&at), "{at}");
    let text = local
        .s3kv(&[
            "put",
            "flags/banner",
            "flag.json",
            "--expires-at",
            &(now + 600).to_string(),
        ])
        .await
        .ok();
    assert!(text.stdout.contains(", expires "), "{}", text.stdout);
    local.settle().await;
    let got = local
        .s3kv(&["get", "flags/banner", "--output", "json"])
        .await
        .ok()
        .json();
    let expected = s3kv::expiry::Expiry::at(now + 600).rfc3339();
    assert_eq!(got["expiresAt"], serde_json::json!(expected), "{got}");
    let got = local.s3kv(&["get", "flags/banner", "--etag"]).await.ok();
    assert!(
        got.stderr.contains(&format!("Expires: {expected}")),
        "{}",
        got.stderr
    );
    // Refused before sending (a bad duration), or by the API (a time in the past), and nothing is written.
    local
        .s3kv(&["put", "flags/other", "flag.json", "--ttl", "0s"])
        .await
        .fails(2, "at least 1 second");
    local
        .s3kv(&[
            "put",
            "flags/other",
            "flag.json",
            "--expires-at",
            "2001-01-01T00:00:00Z",
        ])
        .await
        .fails(1, "expiresAt");
    local
        .s3kv(&[
            "put",
            "flags/other",
            "flag.json",
            "--ttl",
            "1h",
            "--expires-at",
            "1",
        ])
        .await
        .fails(2, "cannot be used with");
    local
        .s3kv(&["get", "flags/other"])
        .await
        .fails(3, "no item");
}
