//! The bad-input corpus: every case has its expected outcome, a clear 4xx with a JSON error or a counted skip,
//! never a panic. A sentinel item is checked after each group to prove no bad input touched anything else.

mod http_cases;

use crate::common;
use http_cases::http_cases;

use aws_lambda_events::s3::S3EventRecord;
use common::{Response, Stack};
use http::Method;
use s3kv::api;

const SENTINEL: &str = "{\"sentinel\": true}";

async fn sentinel_intact(stack: &Stack) {
    let read = stack.get("sentinel").await;
    assert_eq!(
        (read.status, read.body.as_str()),
        (200, SENTINEL),
        "the sentinel item changed"
    );
    assert_eq!(
        stack.s3.body("items/sentinel.json").await.as_deref(),
        Some(SENTINEL.as_bytes())
    );
}

#[tokio::test]
async fn http_requests() {
    let stack = Stack::start().await;
    assert_eq!(stack.put("sentinel", SENTINEL).await.status, 201);
    let cases = http_cases();
    for case in &cases {
        let mut request = common::request(
            case.method.clone(),
            case.key.as_deref().unwrap_or_default(),
            case.body.as_deref(),
        );
        if case.key.is_none() {
            request.path_parameters.clear();
        }
        request.is_base64_encoded = case.base64;
        let response = Response::from(
            api::handle_write(&stack.writer, &stack.access, &request, common::deadline(10)).await,
        );
        assert_eq!(
            response.status, case.status,
            "{}: {}",
            case.name, response.body
        );
        if let Some(code) = case.code {
            assert_eq!(response.json()["error"], code, "{}", case.name);
            assert!(
                response.json()["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{}",
                case.name
            );
        }
    }
    // Valid bodies are stored byte-for-byte.
    assert_eq!(
        stack.s3.body("items/big-number.json").await.as_deref(),
        Some(&b"{\"n\": 1e999999}"[..])
    );
    // Refused bodies never reach the bucket.
    assert_eq!(stack.s3.body("items/dup-keys.json").await, None);
    sentinel_intact(&stack).await;
    println!("{} HTTP cases", cases.len());
    assert!(cases.len() >= 50);
}

#[tokio::test]
async fn s3_records_and_uploaded_objects() {
    let stack = Stack::start_with(&[("S3KV_MAX_OBJECT_BYTES", "1048576")]).await;
    let etag = stack
        .s3
        .upload("items/sentinel.json", SENTINEL.as_bytes())
        .await;
    stack
        .sync(vec![stack.created("items/sentinel.json", &etag)])
        .await
        .unwrap();
    let good = stack.s3.upload("items/good.json", b"{}").await;
    let mut cases: Vec<(&str, S3EventRecord, &str)> = Vec::new();
    let mut edit = |name, change: &dyn Fn(&mut S3EventRecord), outcome| {
        let mut record = stack.created("items/good.json", &good);
        change(&mut record);
        cases.push((name, record, outcome));
    };
    edit(
        "unknown event name",
        &|r| r.event_name = Some("ObjectRestore:Completed".into()),
        "ignored",
    );
    edit(
        "test event name",
        &|r| r.event_name = Some("s3:TestEvent".into()),
        "ignored",
    );
    edit("no event name", &|r| r.event_name = None, "skipped");
    edit(
        "outside the prefix",
        &|r| r.s3.object.key = Some("other/good.json".into()),
        "ignored",
    );
    edit(
        "no .json suffix",
        &|r| r.s3.object.key = Some("items/good.txt".into()),
        "ignored",
    );
    edit(
        "missing sequencer",
        &|r| r.s3.object.sequencer = None,
        "skipped",
    );
    edit(
        "non-hex sequencer",
        &|r| r.s3.object.sequencer = Some("zz-not-hex".into()),
        "skipped",
    );
    edit("missing key", &|r| r.s3.object.key = None, "skipped");
    edit(
        "bad percent-encoding",
        &|r| r.s3.object.key = Some("items/100%.json".into()),
        "skipped",
    );
    edit(
        "key breaking the rules",
        &|r| r.s3.object.key = Some("items/a//b.json".into()),
        "skipped",
    );
    edit(
        "a .json object in the reserved .s3kv/ folder",
        &|r| r.s3.object.key = Some("items/.s3kv/schemas/x.json".into()),
        "skipped",
    );
    edit(
        "wrong eTag (a newer version exists)",
        &|r| r.s3.object.e_tag = Some("0123456789abcdef".into()),
        "superseded",
    );

    for (name, body) in [
        ("not JSON", b"<html>".to_vec()),
        ("empty object", Vec::new()),
        ("byte order mark", b"\xEF\xBB\xBF{}".to_vec()),
        ("invalid UTF-8", b"\"\xFF\"".to_vec()),
        (
            "a member name twice",
            br#"{"enabled":true,"enabled":"yes"}"#.to_vec(),
        ),
        ("over the object limit", vec![b' '; 2 << 20]),
    ] {
        let object_key = format!("items/bad/{}.json", name.replace(' ', "-"));
        let etag = stack.s3.upload(&object_key, &body).await;
        cases.push((name, stack.created(&object_key, &etag), "skipped"));
    }
    for (name, record, outcome) in &cases {
        let report = stack
            .sync(vec![record.clone()])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let counted = match *outcome {
            "ignored" => report.ignored,
            "skipped" => report.skipped,
            "superseded" => report.superseded,
            other => unreachable!("{other}"),
        };
        assert_eq!(
            (counted, report.records, report.failed),
            (1, 1, 0),
            "{name}: {report:?}"
        );
    }
    // A huge batch (S3 itself sends one record per event): 500 records for objects that do not exist (superseded)
    // and one good one, within one invocation's time against the test server.
    let mut batch: Vec<S3EventRecord> = (0..500)
        .map(|i| stack.created(&format!("items/none/{i}.json"), &good))
        .collect();
    batch.push(stack.created("items/good.json", &good));
    let report = stack
        .sync_within(batch, std::time::Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        (report.records, report.superseded, report.applied),
        (501, 500, 1),
        "{report:?}"
    );
    // In the bucket but not served: the answer says so rather than "not found".
    for name in ["not-JSON", "empty-object", "invalid-UTF-8"] {
        let read = stack.get(&format!("bad/{name}")).await;
        assert_eq!(read.status, 409, "{name}: {}", read.body);
        assert_eq!(read.json()["error"], "invalid_stored_document", "{name}");
    }
    sentinel_intact(&stack).await;
    assert_eq!(stack.get("good").await.status, 200);
}

#[tokio::test]
async fn a_50_mb_upload_is_skipped_under_the_default_limit_and_never_served() {
    let stack = Stack::start().await; // default S3KV_MAX_OBJECT_BYTES: 16 MiB
    let etag = stack
        .s3
        .upload("items/sentinel.json", SENTINEL.as_bytes())
        .await;
    stack
        .sync(vec![stack.created("items/sentinel.json", &etag)])
        .await
        .unwrap();
    // A valid JSON document, just too big: a 50 MB string.
    let etag = stack
        .s3
        .upload("items/huge.json", &json_string_of(50_000_000))
        .await;

    let report = stack
        .sync(vec![stack.created("items/huge.json", &etag)])
        .await
        .expect("an oversized object is a counted skip, not a failed invocation");
    assert_eq!(
        (report.skipped, report.failed, report.applied),
        (1, 0, 0),
        "{report:?}"
    );
    let read = stack.get("huge").await;
    assert_eq!(read.status, 409, "{}", read.body);
    assert_eq!(read.json()["error"], "stored_too_large");
    sentinel_intact(&stack).await;
}

#[tokio::test]
async fn an_item_too_big_for_a_lambda_response_gets_a_clear_error_not_a_bare_502() {
    let stack = Stack::start().await;
    // 7 MB of JSON: under the 16 MiB object limit, so it is cached, but over Lambda's 6 MB response limit.
    let etag = stack
        .s3
        .upload("items/big.json", &json_string_of(7_000_000))
        .await;
    let report = stack
        .sync(vec![stack.created("items/big.json", &etag)])
        .await
        .unwrap();
    assert_eq!(report.applied, 1, "{report:?}");
    let read = stack.get("big").await;
    assert_eq!(
        (read.status, read.json()["error"].as_str()),
        (502, Some("response_too_large"))
    );
    assert!(read.body.len() < 1000, "the error is small");
    // A small item next to it is unaffected.
    assert_eq!(stack.put("small", "1").await.status, 201);
    assert_eq!(stack.get("small").await.body, "1");
}

/// A valid JSON document of `len` + 2 bytes: one string of `x`s.
fn json_string_of(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 2);
    body.push(b'"');
    body.resize(len + 1, b'x');
    body.push(b'"');
    body
}

/// Schemas and writes under them: bad schemas, bad prefixes, documents with many violations. Each is a clear
/// 4xx, nothing stored but what was valid.
#[tokio::test]
async fn schema_requests() {
    let stack = Stack::start().await;
    assert_eq!(stack.put("sentinel", SENTINEL).await.status, 201);
    let huge = format!(
        "{{\"enum\": [{}]}}",
        vec!["\"xxxxxxxxxxxxxxxx\""; 20_000].join(",")
    );
    let many = format!("[{}]", vec!["1"; 1000].join(","));
    let backtracking = format!("[\"{}!\"]", "a".repeat(5000));
    // (name, method, path with query, body, status, error code)
    type SchemaCase<'a> = (
        &'a str,
        Method,
        &'a str,
        Option<&'a str>,
        u16,
        Option<&'a str>,
    );
    let cases: Vec<SchemaCase> = vec![
        (
            "schema not JSON",
            Method::PUT,
            "/schemas/s%2F",
            Some("{\"type\":"),
            400,
            Some("invalid_json"),
        ),
        (
            "schema empty",
            Method::PUT,
            "/schemas/s%2F",
            Some(" "),
            400,
            Some("empty_body"),
        ),
        (
            "schema an array",
            Method::PUT,
            "/schemas/s%2F",
            Some("[{}]"),
            422,
            Some("invalid_schema"),
        ),
        (
            "schema a number",
            Method::PUT,
            "/schemas/s%2F",
            Some("1"),
            422,
            Some("invalid_schema"),
        ),
        (
            "unknown type",
            Method::PUT,
            "/schemas/s%2F",
            Some(r#"{"type":"bool"}"#),
            422,
            Some("invalid_schema"),
        ),
        (
            "bad regex",
            Method::PUT,
            "/schemas/s%2F",
            Some(r#"{"pattern":"(("}"#),
            422,
            Some("invalid_schema"),
        ),
        (
            "remote $ref",
            Method::PUT,
            "/schemas/s%2F",
            Some(r#"{"$ref":"http://127.0.0.1:1/x.json"}"#),
            422,
            Some("invalid_schema"),
        ),
        (
            "unknown $schema",
            Method::PUT,
            "/schemas/s%2F",
            Some(r#"{"$schema":"https://example.com/meta"}"#),
            422,
            Some("invalid_schema"),
        ),
        (
            "dangling local $ref",
            Method::PUT,
            "/schemas/s%2F",
            Some(r##"{"$ref":"#/$defs/none"}"##),
            422,
            Some("invalid_schema"),
        ),
        (
            "schema over 256 KiB",
            Method::PUT,
            "/schemas/s%2F",
            Some(&huge),
            413,
            Some("body_too_large"),
        ),
        (
            "prefix with an empty segment",
            Method::PUT,
            "/schemas/a%2F%2F",
            Some("{}"),
            400,
            Some("invalid_key"),
        ),
        (
            "prefix under the reserved .s3kv/ folder",
            Method::PUT,
            "/schemas/.s3kv%2F",
            Some("{}"),
            400,
            Some("invalid_key"),
        ),
        (
            "prefix with a leading slash",
            Method::PUT,
            "/schemas/%2Fa",
            Some("{}"),
            400,
            Some("invalid_key"),
        ),
        (
            "prefix with ..",
            Method::PUT,
            "/schemas/a/../b",
            Some("{}"),
            400,
            Some("invalid_key"),
        ),
        (
            "prefix badly percent-encoded",
            Method::PUT,
            "/schemas/a%ZZ",
            Some("{}"),
            400,
            Some("invalid_key"),
        ),
        (
            "prefix with a control character",
            Method::GET,
            "/schemas/a%01",
            None,
            400,
            Some("invalid_key"),
        ),
        (
            "no such schema",
            Method::GET,
            "/schemas/none%2F",
            None,
            404,
            Some("not_found"),
        ),
        (
            "delete no such schema",
            Method::DELETE,
            "/schemas/none%2F",
            None,
            404,
            Some("not_found"),
        ),
        (
            "valid schema",
            Method::PUT,
            "/schemas/s%2F",
            Some(r#"{"type":"array","items":{"type":"string","pattern":"^(a+)+$"}}"#),
            201,
            None,
        ),
        (
            "dryRun not a boolean",
            Method::PUT,
            "/items/s/x?dryRun=1",
            Some("[]"),
            400,
            Some("invalid_query"),
        ),
        (
            "a thousand violations",
            Method::PUT,
            "/items/s/many",
            Some(&many),
            422,
            Some("schema_violation"),
        ),
        (
            "a pattern that would backtrack",
            Method::PUT,
            "/items/s/regex",
            Some(&backtracking),
            422,
            Some("schema_violation"),
        ),
        (
            "body not JSON under a schema",
            Method::PUT,
            "/items/s/x",
            Some("[1,"),
            400,
            Some("invalid_json"),
        ),
        (
            "valid under the schema",
            Method::PUT,
            "/items/s/ok",
            Some(r#"["aaa"]"#),
            201,
            None,
        ),
    ];
    for (name, method, path, body, status, code) in &cases {
        let request = common::event(None, method.clone(), path, &[], *body);
        let reply = stack.route(&request).await;
        assert_eq!(reply.status, *status, "{name}: {}", reply.body);
        if let Some(code) = code {
            assert_eq!(reply.json()["error"], *code, "{name}: {}", reply.body);
            assert!(
                reply.json()["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{name}"
            );
        }
        if *name == "a thousand violations" {
            let body = reply.json();
            assert_eq!(body["violationCount"], 1000, "{name}");
            assert_eq!(
                body["violations"].as_array().map(Vec::len),
                Some(100),
                "{name}"
            );
            assert_eq!(body["violations"][99]["path"], "/99", "{name}");
        }
    }
    assert_eq!(stack.current("s/many").await, None);
    assert_eq!(stack.current("s/regex").await, None);
    assert_eq!(stack.current("s/ok").await.as_deref(), Some(r#"["aaa"]"#));
    sentinel_intact(&stack).await;
}
