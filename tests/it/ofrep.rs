//! OpenFeature (issue #35): the OFREP routes as the protocol defines them, and OpenFeature's own OFREP providers,
//! nobody here wrote, evaluating s3kv flags through s3kv-local: the Node server SDK's provider (npm), the web SDK's
//! provider in headless Chromium (npm), and the Python SDK's provider (PyPI). Each evaluates boolean, string,
//! integer, float, object and nested flags, a missing flag, a type mismatch and an unservable item, and picks up
//! a change written through the API; the web provider's polls are revalidated with 304.
//!
//! The npm packages are pinned in `tests/ofrep/package.json` and installed here (`npm ci`) when `node_modules`
//! does not match the lock; the Python ones come from `requirements.txt` (`scripts/test`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use s3kv_local::KeySpec;
use serde_json::{json, Value};

use crate::common::{child, finish, BrowserScript, PageAnswer, PageOrigin, Reply, TestStack};

const READ_KEY: &str = "ofrep-read-key-0123456789";
const WRITE_KEY: &str = "ofrep-write-key-0123456789";
/// A read key limited to `flags/web/`.
const WEB_KEY: &str = "ofrep-web-key-0123456789";
const PUBLIC_PREFIX: &str = "flags/public/";
const FLAGS: &str = "/ofrep/v1/evaluate/flags";

/// The flags every test starts with (under `flags/`), as written. `ui` keeps its odd formatting and member order:
/// values are spliced byte for byte.
const SEED: &[(&str, &str)] = &[
    ("maintenance", "true"),
    ("theme", "\"blue\""),
    ("limit", "42"),
    ("ratio", "0.25"),
    ("ui", "{\"b\":1, \"a\":[1,2]}"),
    ("checkout/new-ui", "true"),
    ("default-me", "null"),
    ("web/beta", "false"),
    ("public/banner", "\"hello\""),
];

async fn start(name: &str, cors_origin: Option<String>) -> TestStack {
    let api = TestStack::start(name, move |o| {
        o.read_keys = vec![key(READ_KEY, &[]), key(WEB_KEY, &["flags/web/"])];
        o.write_keys = vec![key(WRITE_KEY, &[])];
        o.public_prefix = Some(PUBLIC_PREFIX.into());
        o.cors_origin = cors_origin;
    })
    .await;
    for (flag, body) in SEED {
        let reply = api
            .send(
                Method::PUT,
                &format!("/items/flags/{flag}"),
                Some(WRITE_KEY),
                &[],
                Some(body),
            )
            .await;
        assert_eq!(reply.status, 201, "{flag}: {}", reply.body);
    }
    // Not a document: uploaded around the API, as a manual upload would be.
    api.upload("flags/broken", "not json").await;
    api.settle().await;
    api
}

fn key(value: &str, prefixes: &[&str]) -> KeySpec {
    KeySpec {
        value: value.into(),
        prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
    }
}

async fn evaluate(
    api: &TestStack,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    api.send(Method::POST, path, key, headers, Some(body)).await
}

async fn etag_of(api: &TestStack, flag: &str) -> String {
    let reply = api
        .send(
            Method::GET,
            &format!("/items/flags/{flag}"),
            Some(READ_KEY),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{flag}");
    reply.header("etag").unwrap().trim_matches('"').to_owned()
}

/// The keys of a bulk answer's flags, in order.
fn flag_keys(reply: &Reply) -> Vec<String> {
    reply.json()["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ofrep_routes_evaluate_items_as_flags_as_the_protocol_defines() {
    let api = start("ofrep-routes", None).await;
    let context = r#"{"context":{"targetingKey":"user-1","plan":"pro"}}"#;

    // Single evaluation: the document is the value, byte for byte, the ETag the variant.
    let reply = evaluate(&api, &format!("{FLAGS}/ui"), Some(READ_KEY), &[], context).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        format!(
            r#"{{"key":"ui","value":{{"b":1, "a":[1,2]}},"reason":"STATIC","variant":"{}"}}"#,
            etag_of(&api, "ui").await
        )
    );
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/checkout/new-ui"),
        Some(READ_KEY),
        &[],
        "{}",
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["value"].clone()),
        (200, json!(true))
    );
    // An empty body is an empty context.
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/maintenance"),
        Some(READ_KEY),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.json()["value"], json!(true), "{}", reply.body);
    // A stored null: OFREP's value-less success, "use the code default".
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/default-me"),
        Some(READ_KEY),
        &[],
        context,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.json().get("value").is_none(), "{}", reply.body);
    assert_eq!(reply.json()["reason"], "STATIC");

    // Failures in OFREP's shape.
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/missing"),
        Some(READ_KEY),
        &[],
        context,
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        (
            reply.json()["key"].clone(),
            reply.json()["errorCode"].clone()
        ),
        (json!("missing"), json!("FLAG_NOT_FOUND"))
    );
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/broken"),
        Some(READ_KEY),
        &[],
        context,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["errorCode"], "PARSE_ERROR");
    assert_eq!(reply.json()["error"], "invalid_stored_document");
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/maintenance"),
        Some(READ_KEY),
        &[],
        "{\"context\": 3}",
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["errorCode"].clone()),
        (400, json!("INVALID_CONTEXT"))
    );
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/maintenance"),
        Some(READ_KEY),
        &[],
        "{nope",
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["errorCode"].clone()),
        (400, json!("PARSE_ERROR"))
    );
    let reply = evaluate(&api, &format!("{FLAGS}/a//b"), Some(READ_KEY), &[], "{}").await;
    assert_eq!(
        (reply.status, reply.json()["errorCode"].clone()),
        (400, json!("GENERAL"))
    );

    // The roles hold: no key, a key for another prefix, and keyless evaluation outside the public prefix.
    let reply = evaluate(&api, &format!("{FLAGS}/maintenance"), None, &[], "{}").await;
    assert_eq!(reply.status, 403);
    let reply = evaluate(
        &api,
        &format!("{FLAGS}/maintenance"),
        Some(WEB_KEY),
        &[],
        "{}",
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let reply = evaluate(&api, &format!("{FLAGS}/web/beta"), Some(WEB_KEY), &[], "{}").await;
    assert_eq!(reply.json()["value"], json!(false));
    let reply = evaluate(
        &api,
        &format!("/public-flags{FLAGS}/maintenance"),
        None,
        &[],
        "{}",
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let reply = evaluate(
        &api,
        &format!("/public-flags{FLAGS}/public/banner"),
        None,
        &[],
        "{}",
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["value"].clone()),
        (200, json!("hello"))
    );

    // Bulk: every flag the caller may read, in key order, failures included, with an ETag.
    let reply = evaluate(&api, FLAGS, Some(READ_KEY), &[], context).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        flag_keys(&reply),
        [
            "broken",
            "checkout/new-ui",
            "default-me",
            "limit",
            "maintenance",
            "public/banner",
            "ratio",
            "theme",
            "ui",
            "web/beta"
        ]
    );
    assert!(
        reply.body.contains(r#""value":{"b":1, "a":[1,2]}"#),
        "{}",
        reply.body
    );
    assert_eq!(reply.json()["flags"][0]["errorCode"], "PARSE_ERROR");
    let etag = reply.header("etag").expect("an ETag").to_owned();
    // Revalidation: 304 with the same ETag while nothing changed.
    let reply = evaluate(
        &api,
        FLAGS,
        Some(READ_KEY),
        &[("if-none-match", &etag)],
        context,
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (304, ""));
    assert_eq!(reply.header("etag"), Some(etag.as_str()));
    // Another key's view of the flags has another ETag, and only its flags.
    let reply = evaluate(
        &api,
        FLAGS,
        Some(WEB_KEY),
        &[("if-none-match", &etag)],
        "{}",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(flag_keys(&reply), ["web/beta"]);
    let reply = evaluate(&api, &format!("/public-flags{FLAGS}"), None, &[], "{}").await;
    assert_eq!(flag_keys(&reply), ["public/banner"]);
    // A change: the old ETag no longer matches, and the answer has the new value.
    let reply = api
        .send(
            Method::PUT,
            "/items/flags/theme",
            Some(WRITE_KEY),
            &[],
            Some("\"green\""),
        )
        .await;
    assert_eq!(reply.status, 200);
    api.settle().await;
    let reply = evaluate(
        &api,
        FLAGS,
        Some(READ_KEY),
        &[("if-none-match", &etag)],
        context,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("etag"), Some(etag.as_str()));
    let theme = reply.json()["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "theme")
        .cloned();
    assert_eq!(theme.unwrap()["value"], "green");
}

/// What each SDK's evaluation of the seeded flags must give, the same for every SDK: the stored value with
/// reason `STATIC` and the item's ETag as the variant, or the code's default with the error code.
async fn expected(api: &TestStack) -> Value {
    let mut ok = serde_json::Map::new();
    for (name, flag, value) in [
        ("boolean", "maintenance", json!(true)),
        ("string", "theme", json!("blue")),
        ("integer", "limit", json!(42)),
        ("float", "ratio", json!(0.25)),
        ("object", "ui", json!({"b": 1, "a": [1, 2]})),
        ("nested", "checkout/new-ui", json!(true)),
    ] {
        let variant = etag_of(api, flag).await;
        ok.insert(
            name.into(),
            json!({"value": value, "reason": "STATIC", "errorCode": null, "variant": variant}),
        );
    }
    let failed = |value: Value, code: &str| json!({"value": value, "reason": "ERROR", "errorCode": code, "variant": null});
    ok.insert("missing".into(), failed(json!(false), "FLAG_NOT_FOUND"));
    ok.insert(
        "mismatch".into(),
        failed(json!("fallback"), "TYPE_MISMATCH"),
    );
    ok.insert("broken".into(), failed(json!(false), "PARSE_ERROR"));
    Value::Object(ok)
}

/// Checks one SDK's printed evaluations against [`expected`], and that it picked up the change to `theme`.
fn check(sdk: &str, out: &Value, expected: &Value) {
    for (name, want) in expected.as_object().unwrap() {
        assert_eq!(&out[name], want, "{sdk}: {name}");
    }
    // A stored null is the code default: whatever else an SDK reports, the app gets its own default.
    assert_eq!(out["codeDefault"]["value"], "from code", "{sdk}: {out}");
    assert_eq!(out["put"], 200, "{sdk}");
    assert_eq!(
        out["changed"], "green",
        "{sdk}: the change was not picked up"
    );
}

/// Runs a check script and parses the JSON object it prints last.
async fn run_script(mut command: tokio::process::Command, what: &str) -> Value {
    command.kill_on_drop(true);
    let (status, output) = finish(command, Duration::from_secs(120)).await;
    assert!(status.success(), "{what} failed ({status}):\n{output}");
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{what} printed no result:\n{output}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}:\n{output}"))
}

fn script_config(api: &TestStack) -> Value {
    let base = format!("http://{}", api.stack.api_addr);
    json!({ "base": base, "api": base, "key": READ_KEY, "write_key": WRITE_KEY })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfeatures_node_server_provider_evaluates_s3kv_flags() {
    let modules = tokio::task::spawn_blocking(npm_modules).await.unwrap();
    let api = start("ofrep-node", None).await;
    let expected = expected(&api).await;
    let mut command = child("node");
    command
        .arg(modules.parent().unwrap().join("server.mjs"))
        .arg(script_config(&api).to_string());
    let out = run_script(command, "the Node OFREP provider").await;
    check("node", &out, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfeatures_python_provider_evaluates_s3kv_flags() {
    let python = crate::common::tools().python;
    let api = start("ofrep-python", None).await;
    let expected = expected(&api).await;
    let mut command = child(python);
    command
        .arg(ofrep_dir().join("provider.py"))
        .arg(script_config(&api).to_string());
    let out = run_script(command, "the Python OFREP provider").await;
    check("python", &out, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfeatures_web_provider_evaluates_s3kv_flags_in_a_browser_and_revalidates_with_304() {
    let script = BrowserScript::new("ofrep.py", "test-ofrep-browser-profile");
    let modules = Arc::new(tokio::task::spawn_blocking(npm_modules).await.unwrap());
    let page = PageOrigin::bind().await;
    let origin = page.origin.clone();
    let api = start("ofrep-web", Some(origin.clone())).await;
    let mut expected = expected(&api).await;
    let public = json!({"value": "hello", "reason": "STATIC", "errorCode": null,
        "variant": etag_of(&api, "public/banner").await});
    expected["publicBanner"] = public;
    // The keyless provider's bulk answer holds the public flags only.
    expected["publicHidden"] =
        json!({"value": false, "reason": "ERROR", "errorCode": "FLAG_NOT_FOUND", "variant": null});
    let page_server =
        page.serve(move |method, path| serve_page(method, path, Arc::clone(&modules)));
    let base = format!("http://{}", api.stack.api_addr);
    let config = json!({
        "api": base,
        "base": base,
        "public_base": format!("{base}/public-flags"),
        "key": READ_KEY,
        "write_key": WRITE_KEY,
        "poll_ms": 200,
        "expected": expected,
    });
    let outcome = script.run(&origin, config, Duration::from_secs(180)).await;
    drop(page_server);
    if let Err(failed) = outcome {
        panic!("{failed}");
    }
}

/// The test page, and the npm packages' files under `/m/`.
async fn serve_page(method: Method, path: String, modules: Arc<PathBuf>) -> PageAnswer {
    const PAGE: &str = include_str!("../browser/ofrep.html");
    if method != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::new());
    }
    if path == "/" {
        return (
            StatusCode::OK,
            "text/html",
            Bytes::from_static(PAGE.as_bytes()),
        );
    }
    let Some(file) = path.strip_prefix("/m/") else {
        return (StatusCode::NOT_FOUND, "text/plain", Bytes::new());
    };
    if file
        .split('/')
        .any(|segment| segment == ".." || segment.is_empty())
        || !file.ends_with(".js")
    {
        return (StatusCode::NOT_FOUND, "text/plain", Bytes::new());
    }
    match tokio::fs::read(modules.join(file)).await {
        Ok(bytes) => (StatusCode::OK, "text/javascript", Bytes::from(bytes)),
        Err(_) => (StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    }
}

fn ofrep_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ofrep")
}

/// `tests/ofrep/node_modules`, installed from the lock (`npm ci`) unless it already was; once per test run.
fn npm_modules() -> PathBuf {
    // Concurrent callers wait for the one install.
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = ofrep_dir();
            crate::common::npm_ci(&dir);
            dir.join("node_modules")
        })
        .clone()
}
