//! `validate [PREFIX]`: the stored items checked against their schemas.

use crate::harness::{upload, Local, READ_KEY};
use crate::schema::schema_file;

/// The schema for `flags/`; `flags/good` through the API, `flags/bad` (breaking the schema) uploaded around it,
/// `notes/free` under no schema.
async fn seeded(name: &str) -> Local {
    let local = Local::start(name).await;
    schema_file(&local);
    local
        .s3kv(&["schema", "put", "flags/", "flags.schema.json", "--create"])
        .await
        .ok();
    local
        .s3kv_with(&["put", "flags/good"], Some(r#"{"enabled": true}"#), &[])
        .await
        .ok();
    upload(&local, "flags/bad.json", r#"{"enabled": "yes"}"#).await;
    local
        .s3kv_with(&["put", "notes/free"], Some(r#"{"anything": 1}"#), &[])
        .await
        .ok();
    local.settle().await;
    local
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_refuses_an_item_that_breaks_its_schema() {
    let local = seeded("validate-refused").await;
    local
        .s3kv_with(&["put", "flags/bad"], Some(r#"{"enabled": "yes"}"#), &[])
        .await
        .fails(1, "schema");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_names_exactly_the_items_that_break_their_schema() {
    let local = seeded("validate").await;
    let found = local.s3kv(&["validate"]).await.fails(
        1,
        "checked 2 items under 1 schema: 1 invalid, 1 under no schema",
    );
    assert_eq!(
        found.stdout,
        "flags/bad: /enabled: \"yes\" is not of type \"boolean\" (schema flags/, at /properties/enabled/type)\n"
    );
    assert!(
        found.stderr.contains("1 item breaks its schema"),
        "{}",
        found.stderr
    );
    let json = local
        .s3kv(&["validate", "--output", "json"])
        .await
        .fails(1, "\"invalid\":1");
    assert_eq!(
        json.json(),
        serde_json::json!({"key": "flags/bad", "schema": "flags/", "violations": [{
            "path": "/enabled",
            "schemaPath": "/properties/enabled/type",
            "message": "\"yes\" is not of type \"boolean\"",
        }]})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_under_a_prefix_checks_only_what_is_under_it_with_the_schemas_that_govern_it() {
    let local = seeded("validate-prefix").await;
    // Narrowed: only what is under PREFIX, and only the schemas that govern it.
    let narrowed = local.s3kv(&["validate", "flags/g"]).await.ok();
    assert_eq!(narrowed.stdout, "");
    assert!(
        narrowed
            .stderr
            .contains("checked 1 item under 1 schema: 0 invalid, 0 under no schema"),
        "{}",
        narrowed.stderr
    );
    let elsewhere = local.s3kv(&["validate", "notes/"]).await.ok();
    assert!(
        elsewhere
            .stderr
            .contains("checked 0 items under 0 schemas: 0 invalid, 1 under no schema"),
        "{}",
        elsewhere.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_tells_a_read_key_it_needs_a_write_key() {
    let local = seeded("validate-read-key").await;
    // Schemas are for write keys: a read key is told which key validate needs.
    local
        .s3kv_with(&["validate"], None, &[("S3KV_API_KEY", READ_KEY)])
        .await
        .fails(1, "validate needs a write key");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_reports_a_schema_that_does_not_compile_and_checks_none_of_its_items() {
    let local = seeded("validate-broken").await;
    // A schema uploaded by hand that does not compile: reported, its items not checked, exit 1.
    let broken = s3kv::key::KeyMap::new("", "")
        .schema_object_key(&s3kv::key::KeyPrefix::parse("notes/").unwrap());
    upload(&local, &broken, r#"{"type": "nope"}"#).await;
    let problem = local
        .s3kv(&["validate", "notes/"])
        .await
        .fails(1, "1 schema does not compile");
    assert!(
        problem
            .stdout
            .starts_with("schema notes/: does not compile: "),
        "{}",
        problem.stdout
    );
    assert!(
        problem.stderr.contains("1 not checked"),
        "{}",
        problem.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_exits_0_once_every_item_meets_its_schema() {
    let local = seeded("validate-clean").await;
    // Fixed through the API: everything meets its schema, exit 0.
    local
        .s3kv_with(&["put", "flags/bad"], Some(r#"{"enabled": false}"#), &[])
        .await
        .ok();
    local.settle().await;
    let clean = local.s3kv(&["validate"]).await.ok();
    assert_eq!(clean.stdout, "");
    assert!(
        clean
            .stderr
            .contains("checked 2 items under 1 schema: 0 invalid, 1 under no schema"),
        "{}",
        clean.stderr
    );
}
