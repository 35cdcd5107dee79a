//! JSON Schemas per key prefix, as a user checks them: a write that breaks its prefix's schema is refused with
//! every violation named and nothing written; the longest prefix governs; a dry run writes nothing; a changed or
//! deleted schema holds from the next write; a schema that does not compile (or needs a remote `$ref`) is
//! refused with why; an upload around the API is served but counted by the syncer and by reconcile; a restore
//! must meet today's schema; only write keys, within their prefixes, see and change schemas. Through the
//! handlers on moto, and the HTTP path (trailing `/` as `%2F` or literal) through s3kv-local.

use crate::common;

use http::Method;
use s3kv::key::KeyPrefix;
use s3kv::percent;
use serde_json::{json, Value};

use common::Reply;

const GRANTS: &str = r#"{"schemawrite1": {"role": "write"}, "schemaread1": {"role": "read"},
    "schemaflags1": {"role": "write", "prefixes": ["flags/"]}}"#;
const WRITE: Option<&str> = Some("schemawrite1");
const READ: Option<&str> = Some("schemaread1");
const FLAGS: Option<&str> = Some("schemaflags1");

fn schema(prefix: &str) -> String {
    s3kv::routes::schema_path(&KeyPrefix::parse(prefix).unwrap())
}

fn item(key: &str) -> String {
    format!("/items/{}", percent::encode_path(key))
}

async fn call(
    stack: &common::Stack,
    key_id: Option<&str>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string());
    let request = common::event(key_id, method, path, headers, body.as_deref());
    stack.route(&request).await
}

/// A request without headers or body.
async fn bare(stack: &common::Stack, key_id: Option<&str>, method: Method, path: &str) -> Reply {
    call(stack, key_id, method, path, &[], None).await
}

async fn put(stack: &common::Stack, path: &str, body: Value) -> Reply {
    call(stack, WRITE, Method::PUT, path, &[], Some(body)).await
}

/// The `(path, schemaPath)` of each listed violation, sorted.
fn violations(reply: &Reply) -> Vec<(String, String)> {
    let body = reply.json();
    let mut listed: Vec<(String, String)> = body["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("no violations: {body}"))
        .iter()
        .map(|v| {
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            (
                v["path"].as_str().unwrap().to_owned(),
                v["schemaPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(body["violationCount"], listed.len(), "{body}");
    listed
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    pairs.sort();
    pairs
}

fn flags_schema() -> Value {
    json!({
        "type": "object",
        "required": ["enabled"],
        "properties": {"enabled": {"type": "boolean"}, "note": {"type": "string", "maxLength": 20}},
        "additionalProperties": false
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_meet_the_longest_prefix_schema_and_every_violation_is_named() {
    let stack = common::Stack::start_with(&[("S3KV_API_KEYS", GRANTS)]).await;
    let stored = put(&stack, &schema("flags/"), flags_schema()).await;
    assert_eq!(stored.status, 201, "{}", stored.body);
    assert_eq!(stored.json()["prefix"], "flags/");
    let beta = json!({
        "type": "object",
        "required": ["enabled", "rollout"],
        "properties": {"enabled": {"type": "boolean"}, "rollout": {"type": "integer", "minimum": 0, "maximum": 100}}
    });
    assert_eq!(put(&stack, &schema("flags/beta/"), beta).await.status, 201);

    // A valid write passes; an invalid one is refused with every violation, and S3 keeps the valid one.
    let key = "flags/maintenance";
    let ok = put(&stack, &item(key), json!({"enabled": true})).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let bad = put(
        &stack,
        &item(key),
        json!({"enabled": "yes", "note": "x".repeat(30), "extra": 1}),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.json()["error"], "schema_violation");
    assert_eq!(bad.json()["schema"], "flags/");
    assert_eq!(
        violations(&bad),
        pairs(&[
            ("", "/additionalProperties"),
            ("/enabled", "/properties/enabled/type"),
            ("/note", "/properties/note/maxLength"),
        ])
    );
    assert_eq!(
        stack.current(key).await.as_deref(),
        Some(r#"{"enabled":true}"#)
    );

    // The longest prefix governs: flags/beta/ keys meet the beta schema, not the flags/ one.
    let beta_key = "flags/beta/search";
    let missing = put(&stack, &item(beta_key), json!({"enabled": true, "x": 1})).await;
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert_eq!(missing.json()["schema"], "flags/beta/");
    assert_eq!(violations(&missing), pairs(&[("", "/required")]));
    let over = put(
        &stack,
        &item(beta_key),
        json!({"enabled": 1, "rollout": 150}),
    )
    .await;
    assert_eq!(
        violations(&over),
        pairs(&[
            ("/enabled", "/properties/enabled/type"),
            ("/rollout", "/properties/rollout/maximum"),
        ])
    );
    assert_eq!(stack.current(beta_key).await, None);
    let fine = put(
        &stack,
        &item(beta_key),
        json!({"enabled": true, "rollout": 5, "x": 1}),
    )
    .await;
    assert_eq!(fine.status, 201, "{}", fine.body);
    // Keys under no schema take any JSON.
    assert_eq!(
        put(&stack, &item("other/x"), json!("anything"))
            .await
            .status,
        201
    );

    // A dry run checks and writes nothing.
    let dry_key = "flags/dry";
    let dry_bad = put(&stack, &format!("{}?dryRun=true", item(dry_key)), json!({})).await;
    assert_eq!(dry_bad.status, 422, "{}", dry_bad.body);
    assert_eq!(violations(&dry_bad), pairs(&[("", "/required")]));
    let dry_ok = put(
        &stack,
        &format!("{}?dryRun=true", item(dry_key)),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(dry_ok.status, 200, "{}", dry_ok.body);
    assert_eq!(
        dry_ok.json(),
        json!({"key": dry_key, "valid": true, "schema": "flags/"})
    );
    assert!(dry_ok.header("etag").is_none());
    let dry_free = put(&stack, &format!("{}?dryRun=true", item("free/x")), json!(1)).await;
    assert_eq!(dry_free.json()["schema"], Value::Null);
    let dry_wrong = put(&stack, &format!("{}?dryRun=yes", item(dry_key)), json!({})).await;
    assert_eq!(
        (dry_wrong.status, dry_wrong.json()["error"].as_str()),
        (400, Some("invalid_query"))
    );
    assert_eq!(stack.current(dry_key).await, None);

    // The schemas, listed in prefix order, and one read back with the ETag a replace needs.
    let listed = bare(&stack, WRITE, Method::GET, "/schemas").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let prefixes: Vec<Value> = listed.json()["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["prefix"], s["valid"]]))
        .collect();
    assert_eq!(
        prefixes,
        vec![json!(["flags/", true]), json!(["flags/beta/", true])]
    );
    let read = bare(&stack, WRITE, Method::GET, &schema("flags/")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json(), flags_schema());
    let etag = read.header("etag").unwrap().to_owned();

    // A changed schema holds for the next write; a replace under a stale ETag is refused.
    let mut stricter = flags_schema();
    stricter["required"] = json!(["enabled", "owner"]);
    stricter["properties"]["owner"] = json!({"type": "string"});
    let replaced = call(
        &stack,
        WRITE,
        Method::PUT,
        &schema("flags/"),
        &[("if-match", &etag)],
        Some(stricter),
    )
    .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let stale = call(
        &stack,
        WRITE,
        Method::PUT,
        &schema("flags/"),
        &[("if-match", &etag)],
        Some(flags_schema()),
    )
    .await;
    assert_eq!(stale.status, 412, "{}", stale.body);
    let now_bad = put(&stack, &item(key), json!({"enabled": false})).await;
    assert_eq!(now_bad.status, 422, "{}", now_bad.body);
    assert_eq!(violations(&now_bad), pairs(&[("", "/required")]));
    let now_ok = put(
        &stack,
        &item(key),
        json!({"enabled": false, "owner": "ops"}),
    )
    .await;
    assert_eq!(now_ok.status, 200, "{}", now_ok.body);

    // A restore must meet today's schema: the first version has no owner.
    let versions = bare(&stack, READ, Method::GET, &format!("/versions/{key}")).await;
    let oldest = versions.json()["versions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["version"]
        .clone();
    let restore = call(
        &stack,
        WRITE,
        Method::POST,
        &format!("/restore/{key}"),
        &[],
        Some(json!({ "version": oldest })),
    )
    .await;
    assert_eq!(restore.status, 422, "{}", restore.body);
    assert_eq!(
        stack.current(key).await.as_deref(),
        Some(r#"{"enabled":false,"owner":"ops"}"#)
    );

    // Deleting the beta schema hands its keys to flags/ from the next write; deleting it again is a 404.
    let gone = bare(&stack, WRITE, Method::DELETE, &schema("flags/beta/")).await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let again = bare(&stack, WRITE, Method::DELETE, &schema("flags/beta/")).await;
    assert_eq!(again.status, 404, "{}", again.body);
    let under_flags = put(
        &stack,
        &item(beta_key),
        json!({"enabled": true, "rollout": 5}),
    )
    .await;
    assert_eq!(
        under_flags.json()["schema"],
        "flags/",
        "{}",
        under_flags.body
    );
    let missing = bare(&stack, WRITE, Method::GET, &schema("flags/beta/")).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_that_does_not_compile_is_refused_with_why() {
    let stack = common::Stack::start_with(&[("S3KV_API_KEYS", GRANTS)]).await;
    for (body, says) in [
        (json!({"type": "bool"}), "bool"),
        (json!({"properties": {"n": {"minimum": "one"}}}), "one"),
        (json!([{"type": "object"}]), "a schema is a JSON object"),
        (json!({"pattern": "(unclosed"}), "(unclosed"),
        (
            json!({"$ref": "https://schemas.example.com/flag.json"}),
            "remote $ref is not fetched",
        ),
    ] {
        let reply = put(&stack, &schema("cfg/"), body.clone()).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
        assert_eq!(reply.json()["error"], "invalid_schema", "{body}");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{body}: {message}");
    }
    let not_json = common::event(WRITE, Method::PUT, &schema("cfg/"), &[], Some("{\"type\":"));
    let reply = stack.route(&not_json).await;
    assert_eq!(
        (reply.status, reply.json()["error"].as_str()),
        (400, Some("invalid_json"))
    );
    let bad_prefix = put(&stack, "/schemas/a%2F%2F", json!({})).await;
    assert_eq!(bad_prefix.status, 400, "{}", bad_prefix.body);
    // None of them was stored: writes under cfg/ take anything.
    let listed = bare(&stack, WRITE, Method::GET, "/schemas").await;
    assert_eq!(listed.json(), json!({"schemas": []}));
    assert_eq!(put(&stack, &item("cfg/x"), json!(1)).await.status, 201);

    // A local $ref resolves; the same document with the definition remote does not.
    let local = json!({
        "$defs": {"flag": {"type": "boolean"}},
        "type": "object",
        "properties": {"on": {"$ref": "#/$defs/flag"}}
    });
    assert_eq!(put(&stack, &schema("cfg/"), local).await.status, 201);
    let broken = put(&stack, &item("cfg/x"), json!({"on": "yes"})).await;
    assert_eq!(violations(&broken), pairs(&[("/on", "/$defs/flag/type")]));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_write_keys_within_their_prefixes_see_and_change_schemas() {
    let stack = common::Stack::start_with(&[("S3KV_API_KEYS", GRANTS)]).await;
    assert_eq!(
        put(&stack, &schema("config/"), json!({"type": "object"}))
            .await
            .status,
        201
    );
    assert_eq!(
        put(&stack, &schema("fl"), json!({"type": "object"}))
            .await
            .status,
        201
    );
    let refused = |reply: &Reply| reply.status == 403 && reply.json()["error"] == "forbidden";

    for (method, path) in [
        (Method::GET, "/schemas".to_owned()),
        (Method::GET, schema("config/")),
        (Method::PUT, schema("flags/")),
        (Method::DELETE, schema("config/")),
    ] {
        let body = (method == Method::PUT).then(|| json!({}));
        let reply = call(&stack, READ, method.clone(), &path, &[], body).await;
        assert!(refused(&reply), "read key {method} {path}: {}", reply.body);
    }
    // The flags/ key changes schemas inside flags/ only: not config/, and not fl, which governs more than flags/.
    let inside = call(
        &stack,
        FLAGS,
        Method::PUT,
        &schema("flags/x/"),
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(inside.status, 201, "{}", inside.body);
    for path in [schema("config/"), schema("fl"), schema("f")] {
        let reply = call(&stack, FLAGS, Method::PUT, &path, &[], Some(json!({}))).await;
        assert!(refused(&reply), "flags key PUT {path}: {}", reply.body);
        let reply = bare(&stack, FLAGS, Method::DELETE, &path).await;
        assert!(refused(&reply), "flags key DELETE {path}: {}", reply.body);
    }
    // It sees the schemas that govern its keys, from above (fl) or inside, and not config/'s.
    let listed = bare(&stack, FLAGS, Method::GET, "/schemas").await;
    let prefixes: Vec<Value> = listed.json()["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["prefix"].clone())
        .collect();
    assert_eq!(prefixes, vec![json!("fl"), json!("flags/x/")]);
    let hidden = bare(&stack, FLAGS, Method::GET, &schema("config/")).await;
    assert!(refused(&hidden), "{}", hidden.body);
    assert_eq!(
        bare(&stack, FLAGS, Method::GET, &schema("fl")).await.status,
        200
    );
    // Items under "fl" (the flags/ key's keys too) must be objects now.
    let reply = call(
        &stack,
        FLAGS,
        Method::PUT,
        &item("flags/y"),
        &[],
        Some(json!(1)),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.json()["schema"], "fl");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_breaks_its_schema_is_served_and_counted() {
    let stack = common::Stack::start_with(&[("S3KV_API_KEYS", GRANTS)]).await;
    assert_eq!(
        put(&stack, &schema("flags/"), flags_schema()).await.status,
        201
    );
    let bad = "flags/uploaded-bad";
    let good = "flags/uploaded-good";
    let bad_etag = stack
        .s3
        .upload(&stack.object_key(bad), br#"{"enabled":"yes"}"#)
        .await;
    let good_etag = stack
        .s3
        .upload(&stack.object_key(good), br#"{"enabled":true}"#)
        .await;

    // S3 is the truth: the syncer caches both, and counts the one that breaks its schema.
    let bad_record = stack.created(&stack.object_key(bad), &bad_etag);
    let report = stack
        .sync(vec![
            bad_record.clone(),
            stack.created(&stack.object_key(good), &good_etag),
        ])
        .await
        .expect("sync");
    assert_eq!(
        (report.applied, report.schema_violations),
        (2, 1),
        "{report:?}"
    );
    let served = bare(&stack, READ, Method::GET, &item(bad)).await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.body, r#"{"enabled":"yes"}"#);
    assert_eq!(served.header("x-cache"), Some("HIT"));
    let metrics = s3kv::metrics::for_sync(&report, false);
    let counted = metrics
        .iter()
        .find(|(name, _, _)| *name == "SchemaViolations");
    assert_eq!(counted.map(|(_, _, v)| v.clone()), Some(vec![1.0]));

    // A redelivery is stale, not counted again; reconcile counts what it loads.
    let again = stack.sync(vec![bad_record]).await.expect("sync");
    assert_eq!((again.stale, again.schema_violations), (1, 0), "{again:?}");
    stack.flush_cache().await;
    let reconciled = stack.reconcile().await.expect("reconcile");
    assert_eq!(
        (reconciled.loaded, reconciled.schema_violations),
        (2, 1),
        "{reconciled:?}"
    );

    // A schema uploaded around the API that does not compile: listed as invalid, and writes under it refused.
    let keys = stack.config.key_map();
    let object_key = keys.schema_object_key(&KeyPrefix::parse("broken/").unwrap());
    stack.s3.upload(&object_key, br#"{"type": "nope"}"#).await;
    let listed = bare(&stack, WRITE, Method::GET, "/schemas").await;
    let broken = listed.json()["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["prefix"] == "broken/")
        .cloned()
        .unwrap_or_else(|| panic!("{}", listed.body));
    assert_eq!(broken["valid"], false);
    assert!(
        broken["problem"]
            .as_str()
            .is_some_and(|p| p.contains("nope")),
        "{broken}"
    );
    let refused = put(&stack, &item("broken/x"), json!({})).await;
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert_eq!(refused.json()["error"], "invalid_stored_schema");
    assert_eq!(refused.json()["schema"], "broken/");
    assert_eq!(stack.current("broken/x").await, None);
}

const LOCAL_KEY: &str = "schemas-local-key";

#[tokio::test(flavor = "multi_thread")]
async fn schemas_over_http_through_s3kv_local() {
    let api = common::TestStack::start("schemas", |o| o.api_key = Some(LOCAL_KEY.into())).await;
    let send = |method: Method, path: String, body: Option<Value>| {
        let api = &api;
        async move {
            let body = body.map(|b| b.to_string());
            api.send(method, &path, Some(LOCAL_KEY), &[], body.as_deref())
                .await
        }
    };
    let stored = send(Method::PUT, schema("flags/"), Some(flags_schema())).await;
    assert_eq!(stored.status, 201, "{}", stored.body);
    assert!(stored.header("etag").is_some());
    // A literal trailing slash names the same prefix.
    let read = send(Method::GET, "/schemas/flags/".into(), None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json(), flags_schema());

    let bad = send(Method::PUT, item("flags/x"), Some(json!({"enabled": 1}))).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(
        violations(&bad),
        pairs(&[("/enabled", "/properties/enabled/type")])
    );
    assert_eq!(api.current("flags/x").await, None);
    let ok = send(Method::PUT, item("flags/x"), Some(json!({"enabled": true}))).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    api.settle().await;
    let served = send(Method::GET, item("flags/x"), None).await;
    assert_eq!(served.body, r#"{"enabled":true}"#);

    // Schema objects are not items: the listing does not show them.
    let listing = send(Method::GET, "/items".into(), None).await;
    let keys: Vec<Value> = listing.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].clone())
        .collect();
    assert_eq!(keys, vec![json!("flags/x")]);
    let gone = send(Method::DELETE, schema("flags/"), None).await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let free = send(Method::PUT, item("flags/x"), Some(json!(7))).await;
    assert_eq!(free.status, 200, "{}", free.body);
}
