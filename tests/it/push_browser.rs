//! Push in a real browser (issue #32): Debian's Chromium, driven through chromedriver by `tests/browser/push.py`
//! (selenium), loads a page from its own origin that imports the built push module of the TypeScript client
//! (`clients/js/src/push.ts`, served as `/s3kv-push.js`) and
//! subscribes to a local stack over its WebSocket (`ws://<api>/event/realtime`). The script changes items from
//! outside the browser and checks what the page's subscriptions got: an API write, a manual upload with the aws CLI
//! and a delete each arrive once with the exact text; after the stack drops every push connection, a change made
//! while the page was disconnected is caught up; with push unreachable the client long-polls, and goes back to
//! push; a `flags/`-limited key and a keyless subscriber get nothing outside what they may read (on the wire too)
//! and their other subscriptions are refused; 100 rapid writes to one key end on the last with no step backwards.
//!
//! The page asks this test, over its own server, to drop the push connections (`POST /control/drop`) and to wait
//! until the stack has synced every notification (`POST /control/settle`).
//!
//! The client is built here first (`npm ci`, when `node_modules` does not match the lock, then `npm run build`)
//! whenever `clients/js/dist/push.js` is missing or older than its sources, so `scripts/test` (and CI)
//! always test the current TypeScript. Node 20 and npm are needed, as for `scripts/lint-openapi`; Chromium,
//! chromedriver and selenium come from `scripts/test` (see `tests/it/common/browser.rs`).

use crate::common::{BrowserScript, PageAnswer, PageOrigin, TestStack};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use s3kv_local::KeySpec;

const READ_KEY: &str = "push-read-key-0123456789";
const WRITE_KEY: &str = "push-write-key-0123456789";
/// A read key limited to `flags/`.
const FLAGS_KEY: &str = "push-flags-key-0123456789";
const PUBLIC_PREFIX: &str = "public/";
const PAGE: &str = include_str!("../browser/push.html");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_every_change_pushed_caught_up_and_in_order() {
    let script = BrowserScript::new("push.py", "test-push-browser-profile");
    let module = tokio::task::spawn_blocking(built_module)
        .await
        .expect("build the push client");
    let module = Bytes::from(std::fs::read(&module).expect("the built client"));

    let page = PageOrigin::bind().await;
    let origin = page.origin.clone();
    let cors_origin = origin.clone();
    let api = Arc::new(
        TestStack::start("push-browser", move |options| {
            options.read_keys = vec![key_spec(READ_KEY, &[]), key_spec(FLAGS_KEY, &["flags/"])];
            options.write_keys = vec![key_spec(WRITE_KEY, &[])];
            options.public_prefix = Some(PUBLIC_PREFIX.into());
            options.cors_origin = Some(cors_origin);
        })
        .await,
    );
    let page_server = {
        let api = Arc::clone(&api);
        page.serve(move |method, path| answer(method, path, module.clone(), Arc::clone(&api)))
    };

    let aws = testkit::program("S3KV_AWS_CLI", "aws").unwrap_or_else(|e| panic!("{e}"));
    let config = serde_json::json!({
        "api": format!("http://{}", api.stack.api_addr),
        // New sockets go here while the page blocks push: nothing listens.
        "closed_ws": format!("ws://127.0.0.1:{}/event/realtime", testkit::free_port()),
        "read_key": READ_KEY,
        "write_key": WRITE_KEY,
        "flags_key": FLAGS_KEY,
        "aws": aws,
        "s3_endpoint": format!("http://{}", api.stack.s3_addr),
        "bucket": api.stack.bucket,
        "aws_access_key": s3kv_local::ACCESS_KEY,
        "aws_secret_key": s3kv_local::SECRET_KEY,
        "aws_region": s3kv_local::REGION,
    });
    let outcome = script.run(&origin, config, Duration::from_secs(300)).await;
    drop(page_server);
    if let Err(failed) = outcome {
        panic!("{failed}");
    }
}

fn key_spec(value: &str, prefixes: &[&str]) -> KeySpec {
    KeySpec {
        value: value.into(),
        prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// `clients/js/dist/push.js`, built first when it is missing or older than anything it is built from. The push
/// module imports nothing, so it is served alone.
fn built_module() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    let out = dir.join("dist/push.js");
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let mut inputs: Vec<PathBuf> = ["package.json", "package-lock.json", "tsconfig.json"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    inputs.extend(
        std::fs::read_dir(dir.join("src"))
            .expect("clients/js/src")
            .map(|entry| entry.expect("clients/js/src").path()),
    );
    let newest = inputs.iter().map(|p| modified(p)).max().unwrap();
    if out.is_file() && modified(&out) >= newest {
        return out;
    }
    crate::common::npm_ci(&dir);
    crate::common::npm(&dir, &["run", "build", "--silent"]);
    assert!(out.is_file(), "npm run build made no {}", out.display());
    out
}

/// The page, the built client, and the two controls the script needs from this side.
async fn answer(method: Method, path: String, module: Bytes, api: Arc<TestStack>) -> PageAnswer {
    match (&method, path.as_str()) {
        (&Method::GET, "/") => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(PAGE.as_bytes()),
        ),
        (&Method::GET, "/s3kv-push.js") => {
            (StatusCode::OK, "text/javascript; charset=utf-8", module)
        }
        (&Method::POST, "/control/drop") => {
            api.stack.drop_push_connections();
            (StatusCode::OK, "text/plain", Bytes::from_static(b"dropped"))
        }
        (&Method::POST, "/control/settle") => {
            api.settle().await;
            (StatusCode::OK, "text/plain", Bytes::from_static(b"settled"))
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not here"),
        ),
    }
}
