//! Values exactly as stored in every JSON output.

use crate::harness::Local;

/// What `get --output json`, `batch-get` and `export` print holds each value exactly as stored: numbers past f64,
/// `-0`, member order and spacing (issue #30: the JSON output re-read values as `serde_json::Value`).
#[tokio::test(flavor = "multi_thread")]
async fn json_output_and_exports_carry_values_exactly_as_stored() {
    let local = Local::start("exact").await;
    let doc = r#"{"n": 1e400, "b": [1E2, -0, 123456789012345678901234567890], "a": "\ud800"}"#;
    local
        .s3kv_with(&["put", "exact/doc", "-"], Some(doc), &[])
        .await
        .ok();
    local.settle().await;
    let got = local
        .s3kv(&["get", "exact/doc", "--output", "json"])
        .await
        .ok();
    assert!(
        got.stdout.contains(&format!("\"value\":{doc}")),
        "{}",
        got.stdout
    );
    let many = local.s3kv(&["batch-get", "exact/doc"]).await.ok();
    assert!(many.stdout.contains(doc), "{}", many.stdout);
    let export = local.s3kv(&["export", "exact/"]).await.ok();
    assert!(
        export.stdout.contains(&format!("\"exact/doc\": {doc}")),
        "{}",
        export.stdout
    );
}
