//! Values come back exactly as written, on every route that returns a document, and what the store holds is a
//! document every reader reads the same way (issue #30). Through s3kv-local over HTTP, as a client sees it.
//!
//! The property: any document `PUT` accepts (numbers past f64, `-0`, exponents, member order, whitespace, lone
//! surrogates, escapes) comes back byte for byte from `GET /items/{key}` (from the cache and with
//! `?consistent=true`), `GET /public/{key}`, `POST /batch-get`, a version read, a `?wait=` read and OpenFeature's
//! single and bulk evaluations (as a flag's value); and so does the same document uploaded to the bucket around
//! the API.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::common::{Reply, TestStack};

const READ_KEY: &str = "exact-read-key-0123456789";
const WRITE_KEY: &str = "exact-write-key-0123456789";
/// Items live under the public prefix, so the public route can serve them too.
const PREFIX: &str = "exact/";

/// A GET with the read key.
async fn read(api: &TestStack, path: &str) -> Reply {
    api.send(Method::GET, path, Some(READ_KEY), &[], None).await
}

async fn start(name: &str) -> TestStack {
    TestStack::start(name, |o| {
        o.read_keys = vec![s3kv_local::KeySpec {
            value: READ_KEY.into(),
            prefixes: Vec::new(),
        }];
        o.write_keys = vec![s3kv_local::KeySpec {
            value: WRITE_KEY.into(),
            prefixes: Vec::new(),
        }];
        o.public_prefix = Some(PREFIX.into());
    })
    .await
}

/// A batch get's answer with each value's raw text, exactly as the server spliced it in.
#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    items: Vec<BatchItem<'a>>,
}

#[derive(Deserialize)]
struct BatchItem<'a> {
    key: String,
    found: bool,
    error: Option<String>,
    /// `Some` whenever the member is there: a stored `null` is `Some("null")`, where serde's `Option` would make it
    /// `None`, as if the value were missing.
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

/// An OFREP evaluation, single or one of a bulk answer's `flags`, with its value's raw text (`None`: no `value`
/// member, which is how OFREP says "use the code's default" for a stored `null`).
#[derive(Deserialize)]
struct Evaluated<'a> {
    key: String,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Bulk<'a> {
    #[serde(borrow)]
    flags: Vec<Evaluated<'a>>,
}

fn batch_values(body: &str) -> Vec<(String, bool, Option<String>, Option<String>)> {
    let batch: Batch<'_> =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("batch answer {body}: {e}"));
    batch
        .items
        .into_iter()
        .map(|i| (i.key, i.found, i.error, i.value.map(|v| v.get().to_owned())))
        .collect()
}

/// Whitespace JSON allows between tokens.
fn space() -> impl Strategy<Value = &'static str> + Clone {
    prop::sample::select(vec!["", "", " ", "\n", "\t", " \r\n  "])
}

fn scalar() -> impl Strategy<Value = String> {
    let literal = prop::sample::select(vec![
        "1e400",
        "-1.7976931348623157e309",
        "1e-400",
        "123456789012345678901234567890",
        "-0",
        "1E2",
        "0.10",
        "1.0",
        "-0.0e+0",
        "true",
        "false",
        "null",
        "\"\\ud800\"",
        "\"\\udc00x\"",
        "\"\\ud83d\\ude00 = 😀\"",
        "\"caf\\u00e9 = café\"",
        "\"\\/\\\"\\\\\\b\\f\\n\\r\\t\"",
        "\"\"",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        literal,
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zA-Zé ]{0,8}".prop_map(|s| format!("{s:?}"))
    ]
}

/// JSON text with unique member names in any order and whitespace anywhere tokens allow.
fn document() -> impl Strategy<Value = String> {
    scalar().prop_recursive(4, 32, 6, |inner| {
        let member = (space(), inner.clone(), space());
        prop_oneof![
            prop::collection::vec(member.clone(), 0..6).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(a, v, b)| format!("{a}{v}{b}"))
                    .collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec(member, 0..6).prop_map(|members| {
                // Names in descending order: a reader that sorts or re-keys members would change the bytes.
                let count = members.len();
                let members: Vec<String> = members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (a, v, b))| format!("{a}\"m{}\"{b}:{a}{v}{b}", count - i))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

#[test]
fn every_read_route_returns_any_accepted_document_byte_for_byte() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(start("exact"));
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let case = AtomicUsize::new(0);
    runner
        .run(&(space(), document(), space()), |(before, doc, after)| {
            let doc = format!("{before}{doc}{after}");
            let n = case.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(round_trip(&api, n, &doc));
            Ok(())
        })
        .unwrap();
}

async fn round_trip(api: &TestStack, n: usize, doc: &str) {
    let written = format!("{PREFIX}put/{n}");
    let uploaded = format!("{PREFIX}upload/{n}");
    let path = |key: &str| format!("/items/{}", key.replace('/', "%2F"));
    let put = api
        .send(
            Method::PUT,
            &path(&written),
            Some(WRITE_KEY),
            &[],
            Some(doc),
        )
        .await;
    assert!(
        put.status == 201,
        "PUT {doc:?}: {} {}",
        put.status,
        put.body
    );
    api.upload(&uploaded, doc).await;
    api.settle().await;

    for key in [&written, &uploaded] {
        let cached = read(api, &path(key)).await;
        assert_eq!(
            (cached.status, cached.header("x-cache")),
            (200, Some("HIT")),
            "{key}"
        );
        assert_eq!(cached.body, doc, "GET {key} from the cache");
        let consistent = format!("{}?consistent=true", path(key));
        let direct = read(api, &consistent).await;
        assert_eq!(direct.body, doc, "GET {key}?consistent=true");
        let public = format!("/public/{}", key.replace('/', "%2F"));
        let public = api.send(Method::GET, &public, None, &[], None).await;
        assert_eq!(
            (public.status, public.body.as_str()),
            (200, doc),
            "GET /public/{key}"
        );
        // A wait that ends at once, the client's ETag being another: the watch route's answer.
        let waited = format!("{}?wait=5", path(key));
        let other = [("if-none-match", "\"not-this-one\"")];
        let waited = api
            .send(Method::GET, &waited, Some(READ_KEY), &other, None)
            .await;
        assert_eq!(
            (waited.status, waited.body.as_str()),
            (200, doc),
            "GET {key}?wait="
        );
    }

    let versions = read(api, &format!("/versions/{}", written.replace('/', "%2F"))).await;
    let version = versions.json()["versions"][0]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("versions: {}", versions.body))
        .to_owned();
    let old = format!("{}?version={version}", path(&written));
    let old = read(api, &old).await;
    assert_eq!((old.status, old.body.as_str()), (200, doc), "GET ?version=");

    let request = serde_json::json!({ "keys": [&written, &uploaded, &written] }).to_string();
    let batch = api
        .send(
            Method::POST,
            "/batch-get",
            Some(READ_KEY),
            &[],
            Some(&request),
        )
        .await;
    assert_eq!(batch.status, 200, "batch-get: {}", batch.body);
    for (key, found, error, value) in batch_values(&batch.body) {
        assert!(found && error.is_none(), "{key}: {}", batch.body);
        assert_eq!(value.as_deref(), Some(doc.trim()), "batch-get {key}");
    }

    // OpenFeature: the document as the value of the flag `exact/{n}` (the item `flags/exact/{n}`).
    let flag = format!("exact/{n}");
    let put = api
        .send(
            Method::PUT,
            &path(&format!("flags/{flag}")),
            Some(WRITE_KEY),
            &[],
            Some(doc),
        )
        .await;
    assert_eq!(put.status, 201, "PUT flags/{flag}: {}", put.body);
    api.settle().await;
    let expected = Some(doc.trim()).filter(|d| *d != "null");
    let evaluate = async |path: &str| {
        let reply = api
            .send(Method::POST, path, Some(READ_KEY), &[], Some("{}"))
            .await;
        assert_eq!(reply.status, 200, "POST {path}: {}", reply.body);
        reply.body
    };
    let single = evaluate(&format!("/ofrep/v1/evaluate/flags/{flag}")).await;
    let single: Evaluated<'_> =
        serde_json::from_str(&single).unwrap_or_else(|e| panic!("{single}: {e}"));
    assert_eq!(single.key, flag);
    assert_eq!(single.value.map(RawValue::get), expected, "OFREP {flag}");
    let bulk = evaluate("/ofrep/v1/evaluate/flags").await;
    let parsed: Bulk<'_> = serde_json::from_str(&bulk).unwrap_or_else(|e| panic!("{bulk}: {e}"));
    let found = parsed
        .flags
        .iter()
        .find(|f| f.key == flag)
        .unwrap_or_else(|| panic!("no {flag} in {bulk}"));
    assert_eq!(
        found.value.map(RawValue::get),
        expected,
        "OFREP bulk {flag}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_name_twice_is_refused_at_write_and_not_served_from_an_upload() {
    let api = start("exact-duplicates").await;
    // Under a schema that wants a boolean, each reading of the document would decide differently.
    let schema =
        r#"{"type":"object","properties":{"enabled":{"type":"boolean"}},"required":["enabled"]}"#;
    let put_schema = api
        .send(
            Method::PUT,
            "/schemas/exact%2Fflags%2F",
            Some(WRITE_KEY),
            &[],
            Some(schema),
        )
        .await;
    assert_eq!(put_schema.status, 201, "{}", put_schema.body);
    for (doc, column) in [
        (r#"{"enabled":"yes","enabled":true}"#, 18),
        (r#"{"enabled":true,"enabled":"yes"}"#, 17),
    ] {
        let put = api
            .send(
                Method::PUT,
                "/items/exact%2Fflags%2Fa",
                Some(WRITE_KEY),
                &[],
                Some(doc),
            )
            .await;
        assert_eq!(put.status, 400, "{doc}: {}", put.body);
        let body = put.json();
        assert_eq!(body["error"], "duplicate_name", "{}", put.body);
        assert_eq!(
            (body["line"].as_u64(), body["column"].as_u64()),
            (Some(1), Some(column)),
            "{}",
            put.body
        );
        assert!(
            body["message"].as_str().unwrap().contains("\"enabled\""),
            "{}",
            put.body
        );
    }
    // The same with no schema: the rule is the store's, not the schema's.
    let put = api
        .send(
            Method::PUT,
            "/items/exact%2Fother",
            Some(WRITE_KEY),
            &[],
            Some(r#"{"a":1,"\u0061":2}"#),
        )
        .await;
    assert_eq!(
        (put.status, put.json()["error"].as_str()),
        (400, Some("duplicate_name"))
    );

    // A lone surrogate is valid JSON and stored as sent, but a schema cannot read it: the document's error.
    let lone = r#"{"enabled":true,"note":"\ud800"}"#;
    let put = api
        .send(
            Method::PUT,
            "/items/exact%2Fflags%2Fb",
            Some(WRITE_KEY),
            &[],
            Some(lone),
        )
        .await;
    assert_eq!(
        (put.status, put.json()["error"].as_str()),
        (400, Some("invalid_json")),
        "{}",
        put.body
    );
    let put = api
        .send(
            Method::PUT,
            "/items/exact%2Fnotes",
            Some(WRITE_KEY),
            &[],
            Some(lone),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);

    // Uploaded around the API: not served, and the answer says why.
    api.upload("exact/flags/c", r#"{"enabled":"yes","enabled":true}"#)
        .await;
    api.settle().await;
    for query in ["", "?consistent=true"] {
        let get = read(&api, &format!("/items/exact%2Fflags%2Fc{query}")).await;
        assert_eq!(get.status, 409, "{query}: {}", get.body);
        assert_eq!(
            get.json()["error"],
            "invalid_stored_document",
            "{}",
            get.body
        );
    }
    let detailed = read(&api, "/items/exact%2Fflags%2Fc?consistent=true").await;
    assert!(
        detailed.json()["message"]
            .as_str()
            .unwrap()
            .contains("appears twice"),
        "{}",
        detailed.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_is_not_json_answers_what_it_is_not_404() {
    let api = start("exact-unservable").await;
    api.upload("exact/broken", "{not json").await;
    api.settle().await;
    for query in ["", "?consistent=true"] {
        let get = read(&api, &format!("/items/exact%2Fbroken{query}")).await;
        assert_eq!(get.status, 409, "{query}: {}", get.body);
        assert_eq!(
            get.json()["error"],
            "invalid_stored_document",
            "{}",
            get.body
        );
        assert!(
            get.json()["message"]
                .as_str()
                .unwrap()
                .contains("replace it"),
            "{}",
            get.body
        );
    }
    let public = api
        .send(Method::GET, "/public/exact%2Fbroken", None, &[], None)
        .await;
    assert_eq!(
        (public.status, public.json()["error"].as_str()),
        (409, Some("invalid_stored_document"))
    );
    let batch = api
        .send(
            Method::POST,
            "/batch-get",
            Some(READ_KEY),
            &[],
            Some(r#"{"keys":["exact/broken","exact/none"]}"#),
        )
        .await;
    let items = batch_values(&batch.body);
    assert_eq!(
        items[0],
        (
            "exact/broken".into(),
            false,
            Some("invalid_stored_document".into()),
            None
        )
    );
    assert_eq!(items[1], ("exact/none".into(), false, None, None));
    // The listing shows it, flagged, beside a servable item.
    api.upload("exact/fine", "{}").await;
    api.settle().await;
    let listing = read(&api, "/items?prefix=exact%2F").await.json();
    let flags: Vec<(&str, Option<&str>)> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap(), i["unservable"].as_str()))
        .collect();
    assert_eq!(
        flags,
        [
            ("exact/broken", Some("invalid_stored_document")),
            ("exact/fine", None)
        ]
    );
    let none = read(&api, "/items/exact%2Fnone").await;
    assert_eq!(
        (none.status, none.json()["error"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_says_how_http_caches_may_keep_its_answers() {
    let api = start("exact-caching").await;
    let put = api
        .send(
            Method::PUT,
            "/items/exact%2Fk",
            Some(WRITE_KEY),
            &[],
            Some("{}"),
        )
        .await;
    assert_eq!(put.header("cache-control"), Some("no-store"));
    api.settle().await;
    // (method, path, API key, body, the Cache-Control it must carry)
    type Case<'a> = (Method, &'a str, Option<&'a str>, Option<&'a str>, &'a str);
    let cases: [Case<'_>; 8] = [
        (
            Method::GET,
            "/items/exact%2Fk",
            Some(READ_KEY),
            None,
            "private, no-cache",
        ),
        (
            Method::GET,
            "/items/exact%2Fmissing",
            Some(READ_KEY),
            None,
            "private, no-cache",
        ),
        (
            Method::GET,
            "/public/exact%2Fk",
            None,
            None,
            "public, no-cache",
        ),
        (
            Method::GET,
            "/items?prefix=exact%2F",
            Some(READ_KEY),
            None,
            "no-store",
        ),
        (
            Method::POST,
            "/batch-get",
            Some(READ_KEY),
            Some(r#"{"keys":["exact/k"]}"#),
            "no-store",
        ),
        (
            Method::GET,
            "/versions/exact%2Fk",
            Some(READ_KEY),
            None,
            "no-store",
        ),
        (Method::GET, "/changes", Some(READ_KEY), None, "no-store"),
        (Method::GET, "/schemas", Some(WRITE_KEY), None, "no-store"),
    ];
    for (method, path, key, body, expected) in cases {
        let reply = api.send(method.clone(), path, key, &[], body).await;
        assert_eq!(
            reply.header("cache-control"),
            Some(expected),
            "{method} {path}: {}",
            reply.status
        );
        let vary: Vec<_> = reply.headers.get_all("vary").iter().collect();
        if expected.starts_with("private") {
            assert_eq!(vary, ["X-Api-Key"], "{method} {path}");
        } else {
            assert!(vary.is_empty(), "{method} {path}: {vary:?}");
        }
    }
    // A 304 says the same as the 200 it stands for.
    let etag = read(&api, "/items/exact%2Fk").await;
    let etag = etag.header("etag").unwrap().to_owned();
    let same = api
        .send(
            Method::GET,
            "/items/exact%2Fk",
            Some(READ_KEY),
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(
        (same.status, same.header("cache-control")),
        (304, Some("private, no-cache"))
    );
}
