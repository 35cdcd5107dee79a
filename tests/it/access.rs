//! Scoped API keys: every route × every kind of caller, through the functions' handlers (with the key id API
//! Gateway would pass) and through s3kv-local (real HTTP with real x-api-key values), and afterwards the bucket
//! holds exactly what the allowed writes made: a read key, no key and an unknown key changed nothing, and a
//! key for `flags/` never touched `config/`. Then the audit trail: who wrote an item, on reads.

use crate::common;

use std::collections::HashMap;

use http::Method;
use s3kv::api;
use s3kv::percent;
use serde_json::{json, Value};

/// The kinds of caller, in the order of each case's expected statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoKey,
    Read,
    Write,
    /// A write key limited to `flags/`.
    Flags,
    /// A key API Gateway accepts but s3kv has no role for (through s3kv-local: a key nobody configured).
    Unknown,
}

const WHO: [Who; 5] = [Who::NoKey, Who::Read, Who::Write, Who::Flags, Who::Unknown];

impl Who {
    fn tag(self) -> &'static str {
        match self {
            Who::NoKey => "nokey",
            Who::Read => "read",
            Who::Write => "write",
            Who::Flags => "flags",
            Who::Unknown => "unknown",
        }
    }
}

/// The items every run starts with (uploaded straight to the bucket).
const SEED: &[(&str, &str)] = &[
    ("flags/beta", r#"{"seed":"flags"}"#),
    ("config/ui", r#"{"seed":"config"}"#),
    ("public/banner", r#"{"seed":"public"}"#),
];

#[derive(Debug, Clone)]
struct Case {
    method: Method,
    /// The route's resource, and the item key for the item routes.
    resource: &'static str,
    key: Option<String>,
    query: &'static [(&'static str, &'static str)],
    body: Option<String>,
    /// Per [`WHO`].
    expect: [u16; 5],
}

impl Case {
    fn item(method: Method, key: String, body: Option<&str>, expect: [u16; 5]) -> Self {
        Self {
            method,
            resource: s3kv::routes::ITEM,
            key: Some(key),
            query: &[],
            body: body.map(str::to_owned),
            expect,
        }
    }

    fn path(&self) -> String {
        let base = self.resource.replace("{key+}", "");
        let mut path = match &self.key {
            Some(key) => format!("{base}{}", percent::encode_path(key)),
            None => base,
        };
        if !self.query.is_empty() {
            let pairs: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| format!("{k}={}", percent::encode_path(v)))
                .collect();
            path = format!("{path}?{}", pairs.join("&"));
        }
        path
    }
}

/// Writes are aimed at keys of their own per caller, and each delete at an item seeded for that caller, so that
/// the cases do not depend on each other.
fn write_key(what: &str, prefix: &str, who: Who) -> String {
    format!("{prefix}{what}-{}", who.tag())
}

/// The matrix. Read as: which of no key, read, write, flags-only write, unknown key gets which status.
fn cases(who: Who) -> Vec<Case> {
    let flags_put = write_key("put", "flags/", who);
    let config_put = write_key("put", "config/", who);
    let forbidden_writes = [403, 403, 201, 201, 403];
    vec![
        Case::item(
            Method::GET,
            "flags/beta".into(),
            None,
            [403, 200, 200, 200, 403],
        ),
        Case::item(
            Method::GET,
            "config/ui".into(),
            None,
            [403, 200, 200, 403, 403],
        ),
        Case::item(Method::PUT, flags_put, Some(r#"{"v":1}"#), forbidden_writes),
        Case::item(
            Method::PUT,
            config_put,
            Some(r#"{"v":1}"#),
            [403, 403, 201, 403, 403],
        ),
        Case::item(
            Method::POST,
            write_key("post", "flags/", who),
            Some(r#"{"v":2}"#),
            forbidden_writes,
        ),
        Case::item(
            Method::POST,
            write_key("post", "config/", who),
            Some(r#"{"v":2}"#),
            [403, 403, 201, 403, 403],
        ),
        Case::item(
            Method::DELETE,
            write_key("del", "flags/", who),
            None,
            [403, 403, 204, 204, 403],
        ),
        Case::item(
            Method::DELETE,
            write_key("del", "config/", who),
            None,
            [403, 403, 204, 403, 403],
        ),
        Case {
            method: Method::GET,
            resource: s3kv::routes::LIST,
            key: None,
            query: &[("prefix", "config/")],
            body: None,
            expect: [403, 200, 200, 403, 403],
        },
        Case {
            method: Method::POST,
            resource: s3kv::routes::BATCH_GET,
            key: None,
            query: &[],
            body: Some(json!({ "keys": ["flags/beta", "config/ui"] }).to_string()),
            expect: [403, 200, 200, 200, 403],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::VERSIONS,
            key: Some("flags/beta".into()),
            query: &[],
            body: None,
            expect: [403, 200, 200, 200, 403],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::VERSIONS,
            key: Some("config/ui".into()),
            query: &[],
            body: None,
            expect: [403, 200, 200, 403, 403],
        },
        // A restore of a version nobody has: who may restore learns that (404), nobody else gets that far.
        Case {
            method: Method::POST,
            resource: s3kv::routes::RESTORE,
            key: Some(write_key("restore", "flags/", who)),
            query: &[],
            body: Some(json!({ "version": "0000000000000042" }).to_string()),
            expect: [403, 403, 404, 404, 403],
        },
        Case {
            method: Method::POST,
            resource: s3kv::routes::RESTORE,
            key: Some(write_key("restore", "config/", who)),
            query: &[],
            body: Some(json!({ "version": "0000000000000042" }).to_string()),
            expect: [403, 403, 404, 403, 403],
        },
        // The change feed from its start: a read of the keys under the prefix, like a listing.
        Case {
            method: Method::GET,
            resource: s3kv::routes::CHANGES,
            key: None,
            query: &[("prefix", "flags/"), ("after", "0-0")],
            body: None,
            expect: [403, 200, 200, 200, 403],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::CHANGES,
            key: None,
            query: &[("prefix", "config/"), ("after", "0-0")],
            body: None,
            expect: [403, 200, 200, 403, 403],
        },
        // Schemas decide what may be written: write keys only, and a scoped key only inside its prefixes.
        Case {
            method: Method::PUT,
            resource: s3kv::routes::SCHEMA,
            key: Some(format!("{}/", write_key("schema", "flags/", who))),
            query: &[],
            body: Some(json!({ "type": "object" }).to_string()),
            expect: [403, 403, 201, 201, 403],
        },
        Case {
            method: Method::PUT,
            resource: s3kv::routes::SCHEMA,
            key: Some(format!("{}/", write_key("schema", "config/", who))),
            query: &[],
            body: Some(json!({ "type": "object" }).to_string()),
            expect: [403, 403, 201, 403, 403],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::SCHEMAS,
            key: None,
            query: &[],
            body: None,
            expect: [403, 403, 200, 200, 403],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::SCHEMA,
            key: Some("flags/none/".into()),
            query: &[],
            body: None,
            expect: [403, 403, 404, 404, 403],
        },
        Case {
            method: Method::DELETE,
            resource: s3kv::routes::SCHEMA,
            key: Some("config/none/".into()),
            query: &[],
            body: None,
            expect: [403, 403, 404, 403, 403],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::PUBLIC_ITEM,
            key: Some("public/banner".into()),
            query: &[],
            body: None,
            expect: [200; 5],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::PUBLIC_ITEM,
            key: Some("flags/beta".into()),
            query: &[],
            body: None,
            expect: [403; 5],
        },
        Case {
            method: Method::GET,
            resource: s3kv::routes::PUBLIC_ITEM,
            key: Some("public/banner".into()),
            query: &[("consistent", "true")],
            body: None,
            expect: [403; 5],
        },
    ]
}

use common::Reply;

/// The two ways in: the handlers, and s3kv-local over HTTP.
trait Api {
    /// Whether a 403 for this caller is s3kv's own (a JSON body naming the problem), rather than the gateway's.
    fn ours(&self, who: Who, case: &Case) -> bool;
    async fn send(&self, who: Who, case: &Case) -> Reply;
    async fn seed(&self, key: &str, body: &str);
    async fn exists(&self, key: &str) -> Option<String>;
    /// Waits until seeded items are in the cache, where the transport syncs on its own.
    async fn settle(&self) {}
}

async fn run_matrix(api: &impl Api) {
    for (key, body) in SEED {
        api.seed(key, body).await;
    }
    for who in WHO {
        for prefix in ["flags/", "config/"] {
            api.seed(&write_key("del", prefix, who), r#"{"doomed":true}"#)
                .await;
        }
    }
    api.settle().await;
    let mut checked = 0;
    for (index, who) in WHO.into_iter().enumerate() {
        for case in cases(who) {
            let reply = api.send(who, &case).await;
            let expected = case.expect[index];
            let label = format!("{who:?} {} {}", case.method, case.path());
            assert_eq!(reply.status, expected, "{label}: {}", reply.body);
            checked += 1;
            if reply.status == 403 && api.ours(who, &case) {
                let body = reply.json();
                assert_eq!(body["error"], "forbidden", "{label}: {}", reply.body);
                assert!(
                    body["message"].as_str().is_some_and(|m| m.len() > 20),
                    "{label}: {}",
                    reply.body
                );
            }
            if reply.status == 200 {
                check_read(who, &case, &reply, &label);
            }
        }
    }
    assert!(checked >= 60, "only {checked} cases");

    // The bucket holds what the allowed writes made, and nothing else changed.
    for (key, body) in SEED {
        assert_eq!(api.exists(key).await.as_deref(), Some(*body), "{key}");
    }
    // The schemas are the ones the allowed schema writes made; a scoped key lists only those inside its prefix.
    let mut made: Vec<String> = Vec::new();
    for (index, who) in WHO.into_iter().enumerate() {
        for case in cases(who) {
            if case.resource == s3kv::routes::SCHEMA
                && case.method == Method::PUT
                && case.expect[index] == 201
            {
                made.extend(case.key.clone());
            }
        }
    }
    made.sort();
    let listing = |who| {
        let case = cases(who)
            .into_iter()
            .find(|c| c.resource == s3kv::routes::SCHEMAS)
            .unwrap();
        async move {
            let reply = api.send(who, &case).await;
            let mut prefixes: Vec<String> = reply.json()["schemas"]
                .as_array()
                .unwrap_or_else(|| panic!("{}", reply.body))
                .iter()
                .map(|s| s["prefix"].as_str().unwrap().to_owned())
                .collect();
            prefixes.sort();
            prefixes
        }
    };
    assert_eq!(listing(Who::Write).await, made);
    let flags: Vec<String> = made
        .into_iter()
        .filter(|p| p.starts_with("flags/"))
        .collect();
    assert_eq!(listing(Who::Flags).await, flags);

    for (index, who) in WHO.into_iter().enumerate() {
        for case in cases(who) {
            let Some(key) = &case.key else { continue };
            if case.resource == s3kv::routes::SCHEMA {
                continue;
            }
            let allowed = (200..300).contains(&case.expect[index]);
            let exists = api.exists(key).await.is_some();
            match case.method {
                Method::PUT | Method::POST => {
                    assert_eq!(exists, allowed, "{who:?} {} {key}", case.method)
                }
                Method::DELETE => assert_eq!(exists, !allowed, "{who:?} DELETE {key}"),
                _ => {}
            }
        }
    }
}

/// A 200 carries what the caller may see, and only that.
fn check_read(who: Who, case: &Case, reply: &Reply, label: &str) {
    if case.resource == s3kv::routes::BATCH_GET {
        let items = reply.json()["items"].clone();
        assert_eq!(items[0]["value"], json!({"seed": "flags"}), "{label}");
        if who == Who::Flags {
            assert_eq!(
                items[1],
                json!({"key": "config/ui", "found": false, "error": "forbidden"}),
                "{label}"
            );
        } else {
            assert_eq!(items[1]["value"], json!({"seed": "config"}), "{label}");
        }
    } else if case.resource == s3kv::routes::VERSIONS {
        // The seeded upload, as its only version.
        let history = reply.json();
        assert_eq!(
            history["versions"].as_array().map(Vec::len),
            Some(1),
            "{label}: {history}"
        );
        assert_eq!(history["versions"][0]["writer"], "s3", "{label}");
    } else if case.resource == s3kv::routes::CHANGES {
        let prefix = case.query[0].1;
        let changes = reply.json()["changes"].clone();
        let keys: Vec<&str> = changes
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"].as_str().unwrap())
            .collect();
        assert!(
            keys.iter().all(|k| k.starts_with(prefix)),
            "{label}: {keys:?}"
        );
    } else if case.resource == s3kv::routes::SCHEMAS {
        // What it lists is checked once the matrix is done.
    } else if case.resource == s3kv::routes::LIST {
        let keys: Vec<String> = reply.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_owned())
            .collect();
        assert!(keys.contains(&"config/ui".to_owned()), "{label}: {keys:?}");
        assert!(keys.iter().all(|k| k.starts_with("config/")), "{label}");
    } else {
        let key = case.key.as_deref().unwrap();
        let seeded = SEED.iter().find(|(k, _)| *k == key).unwrap().1;
        assert_eq!(
            reply.json(),
            serde_json::from_str::<Value>(seeded).unwrap(),
            "{label}"
        );
        if case.resource == s3kv::routes::PUBLIC_ITEM {
            assert_eq!(
                reply.header("x-s3kv-writer"),
                None,
                "{label}: public reads name no writer"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------- through handlers

const GRANTS: &str = r#"{
    "readkey1": {"role": "read", "name": "t-read"},
    "writekey1": {"role": "write", "name": "t-write"},
    "flagskey1": {"role": "write", "prefixes": ["flags/"], "name": "t-flags"}
}"#;

async fn stack() -> common::Stack {
    common::Stack::start_with(&[("S3KV_API_KEYS", GRANTS), ("S3KV_PUBLIC_PREFIX", "public/")]).await
}

fn key_id(who: Who) -> Option<&'static str> {
    match who {
        Who::NoKey => None,
        Who::Read => Some("readkey1"),
        Who::Write => Some("writekey1"),
        Who::Flags => Some("flagskey1"),
        Who::Unknown => Some("strangerkey"),
    }
}

fn event(
    who: Who,
    case: &Case,
    request_id: &str,
) -> aws_lambda_events::apigw::ApiGatewayProxyRequest {
    let mut request = common::request(
        case.method.clone(),
        &case
            .key
            .as_deref()
            .map(percent::encode_path)
            .unwrap_or_default(),
        case.body.as_deref(),
    );
    request.resource = Some(case.resource.to_owned());
    request.path = Some(case.path());
    if case.key.is_none() {
        request.path_parameters.clear();
    }
    let query: HashMap<String, String> = case
        .query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    request.query_string_parameters = query.into();
    request.request_context.identity.api_key_id = key_id(who).map(str::to_owned);
    request.request_context.request_id = Some(request_id.to_owned());
    request
}

impl Api for common::Stack {
    fn ours(&self, _: Who, _: &Case) -> bool {
        true
    }

    async fn send(&self, who: Who, case: &Case) -> Reply {
        let request = event(who, case, "req-matrix");
        self.route(&request).await
    }

    async fn seed(&self, key: &str, body: &str) {
        self.s3.upload(&self.object_key(key), body.as_bytes()).await;
    }

    async fn exists(&self, key: &str) -> Option<String> {
        self.current(key).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_allows_exactly_what_the_key_may_do_through_the_handlers() {
    run_matrix(&stack().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limited_key_lists_only_its_prefix_and_a_public_read_needs_the_public_prefix_on() {
    let stack = stack().await;
    for (key, body) in SEED {
        stack.seed(key, body).await;
    }
    let list_all = Case {
        method: Method::GET,
        resource: s3kv::routes::LIST,
        key: None,
        query: &[],
        body: None,
        expect: [0; 5],
    };
    let keys = |reply: Reply| -> Vec<String> {
        reply.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        keys(stack.send(Who::Flags, &list_all).await),
        vec!["flags/beta".to_owned()]
    );
    assert_eq!(
        keys(stack.send(Who::Read, &list_all).await).len(),
        SEED.len()
    );
    let forbidden = stack.send(Who::Read, &cases(Who::Read)[2]).await.json();
    assert_eq!(
        (forbidden["role"].as_str(), forbidden["prefixes"].clone()),
        (Some("read"), json!([]))
    );

    // Without S3KV_PUBLIC_PREFIX, the public route refuses everything.
    let closed = common::Stack::start_with(&[("S3KV_API_KEYS", GRANTS)]).await;
    closed.seed("public/banner", "{}").await;
    let public = cases(Who::NoKey)
        .into_iter()
        .find(|c| c.resource == s3kv::routes::PUBLIC_ITEM && c.expect[0] == 200)
        .unwrap();
    let reply = closed.send(Who::NoKey, &public).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("public reads are off"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_say_who_wrote_an_item_and_when() {
    let stack = stack().await;
    let write = Case::item(
        Method::PUT,
        "flags/audited".into(),
        Some(r#"{"v":1}"#),
        [0; 5],
    );
    let request = event(Who::Flags, &write, "req-audit-1");
    let written: common::Response =
        api::handle_write(&stack.writer, &stack.access, &request, common::deadline(10))
            .await
            .into();
    assert_eq!(written.status, 201, "{}", written.body);
    let expected = "key=flagskey1; name=t-flags; request=req-audit-1";

    // From S3 (a consistent read), then from the cache once the syncer has the event.
    let mut read = Case::item(Method::GET, "flags/audited".into(), None, [0; 5]);
    read.query = &[("consistent", "true")];
    let fresh = stack.send(Who::Read, &read).await;
    assert_eq!(fresh.header("x-s3kv-writer"), Some(expected));
    let modified = fresh
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let when = chrono::DateTime::parse_from_rfc2822(&modified).expect("an HTTP date");
    let age = chrono::Utc::now().signed_duration_since(when);
    assert!(age.num_seconds().abs() < 600, "{modified}");
    let etag = s3kv::ports::Etag::new(written.header("etag").unwrap());
    stack
        .sync(vec![
            stack.created(&stack.object_key("flags/audited"), &etag)
        ])
        .await
        .unwrap();
    read.query = &[];
    let cached = stack.send(Who::Read, &read).await;
    assert_eq!(cached.header("x-cache"), Some("HIT"));
    assert_eq!(cached.header("x-s3kv-writer"), Some(expected));
    assert_eq!(cached.header("last-modified"), Some(modified.as_str()));

    // A manual upload: S3 alone cannot say who; the event can.
    let object_key = stack.object_key("flags/manual");
    let etag = stack.s3.upload(&object_key, br#"{"by":"hand"}"#).await;
    let mut manual = Case::item(Method::GET, "flags/manual".into(), None, [0; 5]);
    manual.query = &[("consistent", "true")];
    assert_eq!(
        stack.send(Who::Read, &manual).await.header("x-s3kv-writer"),
        Some("s3")
    );
    stack
        .sync(vec![stack.created(&object_key, &etag)])
        .await
        .unwrap();
    manual.query = &[];
    let cached = stack.send(Who::Read, &manual).await;
    assert_eq!(cached.header("x-cache"), Some("HIT"));
    assert_eq!(
        cached.header("x-s3kv-writer"),
        Some("s3; principal=s3kv-local")
    );
}

/// "Before any S3 or Valkey call": with the functions' S3 behind a counting proxy and Valkey stopped, every
/// refused request of the matrix is answered 403 without one request reaching S3 (and a cache that is down
/// changes nothing about it); an allowed read through the same proxy is counted, so the count is live.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_touches_neither_s3_nor_the_cache() {
    let s3 = common::S3::start().await;
    let proxy = common::FaultyS3::start(s3.port()).await;
    let valkey = tokio::task::spawn_blocking(common::Valkey::start)
        .await
        .unwrap();
    let overrides = [("S3KV_API_KEYS", GRANTS), ("S3KV_PUBLIC_PREFIX", "public/")];
    let stack = common::Stack::assemble(valkey, s3, proxy.client(), &overrides).await;
    stack.seed("flags/beta", r#"{"seed":"flags"}"#).await;
    stack.valkey.stop();
    proxy.reset_counts();
    let mut refused = 0;
    for (index, who) in WHO.into_iter().enumerate() {
        for case in cases(who).into_iter().filter(|c| c.expect[index] == 403) {
            let reply = stack.send(who, &case).await;
            let label = format!("{who:?} {} {}", case.method, case.path());
            assert_eq!(reply.status, 403, "{label}: {}", reply.body);
            assert_eq!(proxy.seen(), 0, "{label} reached S3");
            refused += 1;
        }
    }
    assert!(refused >= 30, "only {refused} refusals");
    let allowed = stack.send(Who::Read, &cases(Who::Read)[0]).await;
    assert_eq!(
        (allowed.status, allowed.header("x-cache")),
        (200, Some("BYPASS"))
    );
    assert!(proxy.seen() > 0, "the allowed read was not counted");
}

// ------------------------------------------------------------------------------------------ through s3kv-local

const FULL_KEY: &str = "local-full-key";
const READ_KEY: &str = "local-read-key";
const WRITE_KEY: &str = "local-write-key";
const FLAGS_KEY: &str = "local-flags-key";

/// s3kv-local with a full key, a read key, a write key and a key for `flags/`, and public reads of `public/`.
struct Local(common::TestStack);

impl Local {
    async fn start() -> Self {
        Self(
            common::TestStack::start("access", |o| {
                o.api_key = Some(FULL_KEY.into());
                o.read_keys = vec![spec(READ_KEY, &[])];
                o.write_keys = vec![spec(WRITE_KEY, &[]), spec(FLAGS_KEY, &["flags/"])];
                o.public_prefix = Some("public/".into());
            })
            .await,
        )
    }
}

fn spec(value: &str, prefixes: &[&str]) -> s3kv_local::KeySpec {
    s3kv_local::KeySpec {
        value: value.into(),
        prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
    }
}

impl Api for Local {
    /// s3kv-local knows only the keys it was given, as API Gateway does: a missing or unknown key is the
    /// gateway's 403, except on the public route, which takes no key.
    fn ours(&self, who: Who, case: &Case) -> bool {
        !matches!(who, Who::NoKey | Who::Unknown) || case.resource == s3kv::routes::PUBLIC_ITEM
    }

    async fn send(&self, who: Who, case: &Case) -> Reply {
        let value = match who {
            Who::NoKey => None,
            Who::Read => Some(READ_KEY),
            Who::Write => Some(WRITE_KEY),
            Who::Flags => Some(FLAGS_KEY),
            Who::Unknown => Some("nobody-gave-this-key"),
        };
        let path = case.path();
        let body = case.body.as_deref();
        self.0
            .send(case.method.clone(), &path, value, &[], body)
            .await
    }

    async fn seed(&self, key: &str, body: &str) {
        self.0.upload(key, body).await;
    }

    async fn exists(&self, key: &str) -> Option<String> {
        self.0.current(key).await
    }

    async fn settle(&self) {
        self.0.settle().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_allows_exactly_what_the_key_may_do_through_s3kv_local() {
    let local = Local::start().await;
    run_matrix(&local).await;
    // The banner says which key may do what.
    let banner = local.0.stack.banner();
    for line in [
        format!("{READ_KEY}  read, every item"),
        format!("{FLAGS_KEY}  read, write, items under flags/"),
        "read items under public/".to_owned(),
    ] {
        assert!(banner.contains(&line), "{line:?} not in\n{banner}");
    }
    // A write through the local API is audited like one through API Gateway.
    let write = Case::item(Method::PUT, "flags/by-local".into(), Some("{}"), [0; 5]);
    assert_eq!(local.send(Who::Flags, &write).await.status, 201);
    local.settle().await;
    let read = Case::item(Method::GET, "flags/by-local".into(), None, [0; 5]);
    let reply = local.send(Who::Read, &read).await;
    let writer = reply.header("x-s3kv-writer").unwrap_or_default();
    assert!(
        writer.starts_with("key=localwrite2; name=write-key-2; request="),
        "{writer}"
    );
}
