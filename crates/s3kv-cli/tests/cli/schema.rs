//! `schema ls|get|put|rm`.

use crate::harness::{upload, Local, READ_KEY};

/// A schema for `flags/` (`enabled` required, a boolean), and the file `flags.schema.json` holding it.
pub const SCHEMA: &str = r#"{"type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}}}"#;

/// `flags.schema.json` in the stack's directory, holding [`SCHEMA`].
pub fn schema_file(local: &Local) -> &'static str {
    std::fs::write(local.dir.join("flags.schema.json"), SCHEMA).unwrap();
    SCHEMA
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_put_then_ls_and_get_exactly_as_stored() {
    let local = Local::start("schema").await;
    let schema = schema_file(&local);

    // The schema subcommands: put (a trailing `/` survives the trip), ls, get exactly as stored, conditions.
    let created = local
        .s3kv(&["schema", "put", "flags/", "flags.schema.json", "--create"])
        .await
        .ok();
    assert!(
        created.stdout.starts_with("created schema flags/ (etag "),
        "{}",
        created.stdout
    );
    assert_eq!(local.s3kv(&["schema", "ls"]).await.ok().stdout, "flags/\n");
    let got = local
        .s3kv(&["schema", "get", "flags/", "--etag"])
        .await
        .ok();
    assert_eq!(got.stdout, schema);
    let etag = got.stderr.trim().trim_start_matches("ETag: ").to_owned();
    let json = local
        .s3kv(&["schema", "get", "flags/", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json["prefix"], "flags/");
    assert_eq!(json["etag"], etag.as_str());
    assert_eq!(json["schema"]["required"], serde_json::json!(["enabled"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_put_meets_its_conditions_and_refuses_a_schema_that_does_not_compile() {
    let local = Local::start("schema-put").await;
    let schema = schema_file(&local);
    local
        .s3kv(&["schema", "put", "flags/", "flags.schema.json", "--create"])
        .await
        .ok();
    let got = local
        .s3kv(&["schema", "get", "flags/", "--etag"])
        .await
        .ok();
    let etag = got.stderr.trim().trim_start_matches("ETag: ").to_owned();
    local
        .s3kv(&["schema", "put", "flags/", "flags.schema.json", "--create"])
        .await
        .fails(4, "");
    local
        .s3kv_with(
            &["schema", "put", "flags/", "-", "--if-match", &etag],
            Some(schema),
            &[],
        )
        .await
        .ok();
    local
        .s3kv_with(&["schema", "put", "flags/"], Some(r#"{"type": 7}"#), &[])
        .await
        .fails(1, "JSON Schema");
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_get_of_no_schema_exits_3_and_of_an_invalid_prefix_2() {
    let local = Local::start("schema-get").await;
    local
        .s3kv(&["schema", "get", "nothing/"])
        .await
        .fails(3, "");
    local
        .s3kv(&["schema", "get", "a//"])
        .await
        .fails(2, "invalid prefix");
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_commands_tell_a_read_key_they_need_a_write_key() {
    let local = Local::start("schema-read-key").await;
    local
        .s3kv_with(&["schema", "ls"], None, &[("S3KV_API_KEY", READ_KEY)])
        .await
        .fails(1, "needs a write key");
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_ls_flags_a_schema_that_does_not_compile_and_rm_removes_it() {
    let local = Local::start("schema-broken").await;
    // A schema uploaded by hand that does not compile: listed as such; then removed.
    let broken = s3kv::key::KeyMap::new("", "")
        .schema_object_key(&s3kv::key::KeyPrefix::parse("notes/").unwrap());
    upload(&local, &broken, r#"{"type": "nope"}"#).await;
    let listed = local.s3kv(&["schema", "ls"]).await.ok();
    assert!(
        listed.stdout.contains("notes/  (does not compile: "),
        "{}",
        listed.stdout
    );
    let deleted = local.s3kv(&["schema", "rm", "notes/"]).await.ok();
    assert_eq!(deleted.stdout, "deleted schema notes/\n");
}
