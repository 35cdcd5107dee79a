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
//! CORS must name the page's origin, and s3kv-local reads it from `S3KV_CORS_ORIGIN` in the environment. Setting
//! that in this process would change the other suites' stacks, so the test runs itself again in a child process
//! (the same test binary, this one test) with the variable set there, in its own process group, which is killed
//! when the child ends or hangs: no browser or server outlives the test. `scripts/test` installs Chromium,
//! chromedriver and selenium and exports their paths; without them the test fails and says so.

use crate::common::{LocalApi, Reply};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
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
/// Set in the child: the port the page is served on (its origin is the one CORS names).
const PAGE_PORT_ENV: &str = "S3KV_BROWSER_TEST_PAGE_PORT";
const TEST_NAME: &str =
    "browsers_never_answer_a_read_from_their_cache_when_stale_or_without_the_key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_never_answer_a_read_from_their_cache_when_stale_or_without_the_key() {
    match std::env::var(PAGE_PORT_ENV) {
        Ok(port) => in_child(port.parse().expect("page port")).await,
        Err(_) => run_in_child().await,
    }
}

/// Chromium, chromedriver and the Python with selenium: from `scripts/test`'s variables, or where it puts them.
struct Tools {
    chromium: String,
    chromedriver: String,
    python: String,
}

fn tools() -> Tools {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let find = |env: &str, default: PathBuf| {
        let path = std::env::var(env)
            .ok()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or(default);
        assert!(
            path.is_file(),
            "{} is missing ({env}): run scripts/test, which installs Debian's chromium and chromium-driver and \
             selenium (into .venv) and exports their paths",
            path.display()
        );
        path.to_string_lossy().into_owned()
    };
    Tools {
        chromium: find("S3KV_CHROMIUM", "/usr/bin/chromium".into()),
        chromedriver: find("S3KV_CHROMEDRIVER", "/usr/bin/chromedriver".into()),
        python: find("S3KV_BROWSER_PYTHON", manifest.join(".venv/bin/python")),
    }
}

/// The parent: runs this test again in a child process with `S3KV_CORS_ORIGIN` naming the page's origin.
async fn run_in_child() {
    tools(); // fail here, plainly, when something is missing
    let port = testkit::free_port();
    let exe = std::env::current_exe().expect("the test binary");
    let name = format!(
        "{}::{TEST_NAME}",
        module_path!().split_once("::").unwrap().1
    );
    let mut command = tokio::process::Command::new(&exe);
    command
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(PAGE_PORT_ENV, port.to_string())
        .env("S3KV_CORS_ORIGIN", format!("http://127.0.0.1:{port}"))
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: everything it starts (servers, python, chromedriver, Chromium) is killed with it.
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().expect("run the test binary again");
    let group = child.id().expect("child pid");
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output()).await;
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let output = output.expect("the browser test did not finish within 300 s (killed)");
    let output = output.expect("the browser test's output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{log}",
        output.status
    );
    print!("{log}");
}

/// The child: the stack, the page, the header checks, then the browser.
async fn in_child(page_port: u16) {
    let tools = tools();
    let origin = format!("http://127.0.0.1:{page_port}");
    assert_eq!(
        std::env::var("S3KV_CORS_ORIGIN").ok().as_deref(),
        Some(origin.as_str())
    );
    let page_listener = tokio::net::TcpListener::bind(("127.0.0.1", page_port))
        .await
        .expect("bind the page's port");
    let page_server = AbortOnDrop(tokio::spawn(serve_page(page_listener)));

    let api = LocalApi::start("browser", |options| {
        options.read_keys = vec![key_spec(READ_KEY)];
        options.write_keys = vec![key_spec(WRITE_KEY)];
        options.public_prefix = Some(PUBLIC_PREFIX.into());
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

    let profile = testkit::temp_dir("test-browser-profile");
    let config = serde_json::json!({
        "chromium": tools.chromium,
        "chromedriver": tools.chromedriver,
        "profile_dir": profile,
        "driver_log": profile.with_extension("chromedriver.log"),
        "page": format!("{origin}/"),
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/http_cache.py");
    let mut command = tokio::process::Command::new(&tools.python);
    command
        .arg(&script)
        .arg(config.to_string())
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(proxy);
    }
    let output = tokio::time::timeout(Duration::from_secs(240), command.output())
        .await
        .expect("the browser script did not finish within 240 s")
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tools.python));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let driver_log = profile.with_extension("chromedriver.log");
    let driver_lines = std::fs::read_to_string(&driver_log).unwrap_or_default();
    let driver_lines: Vec<&str> = driver_lines.lines().collect();
    let driver_tail = driver_lines[driver_lines.len().saturating_sub(40)..].join("\n");
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_file(&driver_log);
    drop(page_server);
    // The browser's log, whatever the outcome: what each fetch got, and whether the cache answered it.
    println!("--- the browser ({}):\n{log}---", script.display());
    match output.status.code() {
        Some(0) => {}
        Some(1) => problems.push(format!(
            "in the browser (its log is above):\n{}",
            log.lines()
                .filter(|l| l.starts_with("FAIL"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
        _ => panic!(
            "the browser could not be driven ({}); run scripts/test if something is missing:\n{log}\n\
             chromedriver's log (end):\n{driver_tail}",
            output.status
        ),
    }
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
    api: &LocalApi,
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

/// The test page, for any path, never cached.
async fn serve_page(listener: tokio::net::TcpListener) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                http::Response::builder()
                    .header("content-type", "text/html; charset=utf-8")
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
