//! Scoped API keys: every route × every kind of caller, through the functions' handlers (with the key id API
//! Gateway would pass) and through s3kv-local (real HTTP with real x-api-key values), and afterwards the bucket
//! holds exactly what the allowed writes made: a read key, no key and an unknown key changed nothing, and a
//! key for `flags/` never touched `config/`. Then the audit trail: who wrote an item, on reads. The handlers'
//! side, with the audit trail, is in `access_handlers.rs`, so that each file stays under ~600 lines.

use crate::common;

use http::Method;
use s3kv::percent;
use serde_json::{json, Value};

/// The kinds of caller, in the order of each case's expected statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    NoKey,
    Read,
    Write,
    /// A write key limited to `flags/`.
    Flags,
    /// A key API Gateway accepts but s3kv has no role for (through s3kv-local: a key nobody configured).
    Unknown,
}

pub(super) const WHO: [Who; 5] = [Who::NoKey, Who::Read, Who::Write, Who::Flags, Who::Unknown];

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
pub(super) const SEED: &[(&str, &str)] = &[
    ("flags/beta", r#"{"seed":"flags"}"#),
    ("config/ui", r#"{"seed":"config"}"#),
    ("public/banner", r#"{"seed":"public"}"#),
];

#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) method: Method,
    /// The route's resource, and the item key for the item routes.
    pub(super) resource: &'static str,
    pub(super) key: Option<String>,
    pub(super) query: &'static [(&'static str, &'static str)],
    pub(super) body: Option<String>,
    /// Per [`WHO`].
    pub(super) expect: [u16; 5],
}

impl Case {
    pub(super) fn item(method: Method, key: String, body: Option<&str>, expect: [u16; 5]) -> Self {
        Self {
            method,
            resource: s3kv::routes::ITEM,
            key: Some(key),
            query: &[],
            body: body.map(str::to_owned),
            expect,
        }
    }

    pub(super) fn path(&self) -> String {
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
pub(super) fn cases(who: Who) -> Vec<Case> {
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
pub(super) trait Api {
    /// Whether a 403 for this caller is s3kv's own (a JSON body naming the problem), rather than the gateway's.
    fn ours(&self, who: Who, case: &Case) -> bool;
    async fn send(&self, who: Who, case: &Case) -> Reply;
    async fn seed(&self, key: &str, body: &str);
    async fn exists(&self, key: &str) -> Option<String>;
    /// Waits until seeded items are in the cache, where the transport syncs on its own.
    async fn settle(&self) {}
}

pub(super) async fn run_matrix(api: &impl Api) {
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
