//! What a real browser's HTTP cache does with the API's answers (issue #30): Debian's Chromium, driven through
//! chromedriver by `tests/browser/http_cache.py` (selenium), loads a page from its own origin that calls a local
//! stack on another one with plain `fetch()`, as app code does. A read right after a write made elsewhere must see
//! the new value, and a read without a key or with an unknown key must get the server's 403, never a copy the
//! browser kept of a keyed answer: for keyed reads (`?version=` too), the public route and the other read routes.
//! Plain HTTP from here checks the headers that policy rests on: `Cache-Control` per route, each `Vary` token
//! once, and the CORS preflight.
//!
//! The browser keeps an answer without `Cache-Control` for a tenth of its age (`Date` − `Last-Modified`), so the
//! items are made old enough first that a cached copy would visibly be used: the test waits about
//! [`ITEM_AGE_SECS`].
//!
//! CORS names the page's origin (the stack's `cors_origin`, which is `S3KV_CORS_ORIGIN` for s3kv-local). The
//! script runs in its own process group, which is killed when it ends or hangs: no browser outlives the test.
//! `scripts/test` installs Chromium, chromedriver and selenium and exports their paths; without them the test
//! fails and says so (`tests/it/common/browser.rs`).

use crate::common::{BrowserScript, PageOrigin, Reply, TestStack};

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use s3kv::key::KeyPrefix;
use s3kv_local::KeySpec;

const READ_KEY: &str = "browser-read-key-0123456789";
const WRITE_KEY: &str = "browser-write-key-0123456789";
/// A well-formed key the stack does not know.
const UNKNOWN_KEY: &str = "browser-unknown-key-0123456789";
const PREFIX: &str = "browser/";
const ITEM: &str = "browser/doc";
const PUBLIC_PREFIX: &str = "pub/";
const PUBLIC_ITEM: &str = "pub/doc";
/// How old the items are when the browser first reads them: without `Cache-Control`, Chrome would then serve
/// them from its cache, unasked, for about a tenth of that.
const ITEM_AGE_SECS: u64 = 30;
/// The page, on its own origin.
const PAGE: &str = include_str!("../browser/page.html");

/// The stack, the page, the header checks, then the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_never_answer_a_read_from_their_cache_when_stale_or_without_the_key() {
    let script = BrowserScript::new("http_cache.py", "test-browser-profile");
    let page = PageOrigin::bind().await;
    let origin = page.origin.clone();
    let cors_origin = origin.clone();
    // The test page, for any path.
    let page_server = page.serve(|_, _| async {
        (
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(PAGE.as_bytes()),
        )
    });

    let api = TestStack::start("browser", |options| {
        options.read_keys = vec![key_spec(READ_KEY)];
        options.write_keys = vec![key_spec(WRITE_KEY)];
        options.public_prefix = Some(PUBLIC_PREFIX.into());
        options.cors_origin = Some(cors_origin);
        // The change feed answers at once.
        options.max_wait_secs = 0;
    })
    .await;
    let schema_path = s3kv::routes::schema_path(&KeyPrefix::parse(PREFIX).unwrap());
    let schema = api
        .send(
            Method::PUT,
            &schema_path,
            Some(WRITE_KEY),
            &[],
            Some(r#"{"type": "object"}"#),
        )
        .await;
    assert_eq!(schema.status, 201, "{}", schema.body);
    for key in [ITEM, PUBLIC_ITEM] {
        let put = api
            .send(
                Method::PUT,
                &format!("/items/{key}"),
                Some(WRITE_KEY),
                &[],
                Some(r#"{"v": 1}"#),
            )
            .await;
        assert_eq!(put.status, 201, "{}", put.body);
    }
    api.settle().await;
    let history = api
        .send(
            Method::GET,
            &format!("/versions/{ITEM}"),
            Some(READ_KEY),
            &[],
            None,
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
    let version = history.json()["versions"][0]["version"]
        .as_str()
        .expect("a version id")
        .to_owned();

    let mut problems = header_problems(&api, &origin, &version, &schema_path).await;

    let config = serde_json::json!({
        "api": format!("http://{}", api.stack.api_addr),
        "read_key": READ_KEY,
        "write_key": WRITE_KEY,
        "unknown_key": UNKNOWN_KEY,
        "prefix": PREFIX,
        "item": ITEM,
        "version": version,
        "public_item": PUBLIC_ITEM,
        "schema_path": schema_path,
        "min_age_secs": ITEM_AGE_SECS,
    });
    // What each fetch got, and whether the cache answered it, is in the browser's log.
    if let Err(failed) = script.run(&origin, config, Duration::from_secs(240)).await {
        problems.push(failed);
    }
    drop(page_server);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

fn key_spec(value: &str) -> KeySpec {
    KeySpec {
        value: value.into(),
        prefixes: Vec::new(),
    }
}

/// What the policy looks like in plain HTTP, each miss as one line: `Cache-Control` per route, `Vary` tokens
/// once each, and the preflight a browser sends before a keyed `fetch()` or a write.
async fn header_problems(
    api: &TestStack,
    origin: &str,
    version: &str,
    schema_path: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let get = |path: String, key: Option<&'static str>| async move {
        let reply = api
            .send(Method::GET, &path, key, &[("origin", origin)], None)
            .await;
        (format!("GET {path} {}", key_name(key)), reply)
    };
    let version = s3kv::percent::encode_path(version);
    let private: &[&str] = &["private", "no-cache"];
    let public: &[&str] = &["public", "no-cache"];
    let no_store: &[&str] = &["no-store"];
    let keyed: &[&str] = &["x-api-key", "origin"];
    let unkeyed: &[&str] = &["origin"];
    let checks = [
        (
            format!("/items/{ITEM}"),
            Some(READ_KEY),
            200,
            private,
            keyed,
        ),
        (
            format!("/items/{ITEM}?version={version}"),
            Some(READ_KEY),
            200,
            private,
            keyed,
        ),
        (format!("/public/{PUBLIC_ITEM}"), None, 200, public, unkeyed),
        (format!("/items/{ITEM}"), None, 403, no_store, unkeyed),
        (
            format!("/items/{ITEM}"),
            Some(UNKNOWN_KEY),
            403,
            no_store,
            unkeyed,
        ),
        (
            format!("/items?prefix={PREFIX}"),
            Some(READ_KEY),
            200,
            no_store,
            unkeyed,
        ),
        (
            format!("/versions/{ITEM}"),
            Some(READ_KEY),
            200,
            no_store,
            unkeyed,
        ),
        (
            "/changes".to_owned(),
            Some(READ_KEY),
            200,
            no_store,
            unkeyed,
        ),
        (
            "/schemas".to_owned(),
            Some(WRITE_KEY),
            200,
            no_store,
            unkeyed,
        ),
    ];
    for (path, key, status, cache_control, vary) in checks {
        let (what, reply) = get(path, key).await;
        if reply.status != status {
            problems.push(format!(
                "{what}: {} {}, want {status}",
                reply.status, reply.body
            ));
        }
        check_tokens(&mut problems, &what, &reply, "cache-control", cache_control);
        check_tokens(&mut problems, &what, &reply, "vary", vary);
    }

    // A keyed schema answers either way: never stored, or kept privately per key and revalidated.
    let (what, reply) = get(schema_path.to_owned(), Some(WRITE_KEY)).await;
    let control = tokens(&reply, "cache-control");
    let vary = tokens(&reply, "vary");
    let kept_per_key = control.contains(&"private".to_owned())
        && control.contains(&"no-cache".to_owned())
        && vary.contains(&"x-api-key".to_owned());
    if reply.status != 200 || !(control == ["no-store"] || kept_per_key) {
        problems.push(format!(
            "{what}: {} with Cache-Control {control:?} and Vary {vary:?}, want 200 and no-store, or private, \
             no-cache with Vary X-Api-Key",
            reply.status
        ));
    }
    check_once(&mut problems, &what, &reply);

    for (method, path, key) in [
        (Method::POST, "/batch-get".to_owned(), READ_KEY),
        (Method::PUT, format!("/items/{PREFIX}written"), WRITE_KEY),
    ] {
        let body = match method {
            Method::POST => format!(r#"{{"keys": ["{ITEM}"]}}"#),
            _ => r#"{"v": 0}"#.to_owned(),
        };
        let reply = api
            .send(
                method.clone(),
                &path,
                Some(key),
                &[("origin", origin)],
                Some(&body),
            )
            .await;
        let what = format!("{method} {path} {}", key_name(Some(key)));
        if !(200..300).contains(&reply.status) {
            problems.push(format!("{what}: {} {}", reply.status, reply.body));
        }
        check_tokens(&mut problems, &what, &reply, "cache-control", no_store);
        check_once(&mut problems, &what, &reply);
    }

    // The preflight before a keyed read or a write from the page.
    let preflight = api
        .send(
            Method::OPTIONS,
            &format!("/items/{ITEM}"),
            None,
            &[
                ("origin", origin),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type,x-api-key"),
            ],
            None,
        )
        .await;
    let what = format!("OPTIONS /items/{ITEM} (preflight)");
    if !(200..300).contains(&preflight.status) {
        problems.push(format!("{what}: {}, want 2xx", preflight.status));
    }
    if preflight.header("access-control-allow-origin") != Some(origin) {
        problems.push(format!(
            "{what}: Access-Control-Allow-Origin {:?}, want {origin}",
            preflight.header("access-control-allow-origin")
        ));
    }
    let methods = tokens(&preflight, "access-control-allow-methods");
    let headers = tokens(&preflight, "access-control-allow-headers");
    for (list, name, wanted) in [
        (&methods, "Methods", &["get", "put"][..]),
        (&headers, "Headers", &["x-api-key", "content-type"][..]),
    ] {
        if !wanted.iter().all(|w| list.contains(&(*w).to_owned())) {
            problems.push(format!(
                "{what}: Access-Control-Allow-{name} {list:?}, want {wanted:?} among them"
            ));
        }
    }
    if preflight.header("access-control-max-age").is_none() {
        problems.push(format!("{what}: no Access-Control-Max-Age"));
    }
    check_tokens(&mut problems, &what, &preflight, "vary", &["origin"]);
    problems
}

fn key_name(key: Option<&str>) -> &'static str {
    match key {
        None => "without a key",
        Some(READ_KEY) => "with the read key",
        Some(WRITE_KEY) => "with the write key",
        Some(_) => "with an unknown key",
    }
}

/// A header's comma-separated tokens over all its lines, lowercased, in order, repeats kept.
fn tokens(reply: &Reply, name: &str) -> Vec<String> {
    reply
        .headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The header has exactly these tokens, each once, in any order.
fn check_tokens(
    problems: &mut Vec<String>,
    what: &str,
    reply: &Reply,
    name: &str,
    wanted: &[&str],
) {
    let mut got = tokens(reply, name);
    let lines = reply.headers.get_all(name).iter().count();
    got.sort();
    let mut want: Vec<String> = wanted.iter().map(|w| w.to_string()).collect();
    want.sort();
    if got != want || lines > 1 {
        let raw: Vec<_> = reply.headers.get_all(name).iter().collect();
        problems.push(format!(
            "{what}: {name} {raw:?} ({lines} line(s)), want {wanted:?}, each once in one line"
        ));
    }
}

/// No `Vary` token is sent twice, and in one line.
fn check_once(problems: &mut Vec<String>, what: &str, reply: &Reply) {
    let got = tokens(reply, "vary");
    let lines = reply.headers.get_all("vary").iter().count();
    let repeated = got.iter().enumerate().any(|(i, t)| got[..i].contains(t));
    if repeated || lines > 1 {
        let raw: Vec<_> = reply.headers.get_all("vary").iter().collect();
        problems.push(format!(
            "{what}: Vary {raw:?} ({lines} line(s)), want each token once in one line"
        ));
    }
}
