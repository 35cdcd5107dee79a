//! The access matrix of `access.rs` through the functions' handlers, with the key id API Gateway would pass; what
//! a key limited to a prefix lists, the public route switched off, the audit trail on reads, and refusals that
//! reach neither S3 nor the cache. Apart from `access.rs` (the matrix, and its run through s3kv-local) so that
//! each file stays under ~600 lines.

use super::access::{cases, run_matrix, Api, Case, Who, SEED, WHO};
use crate::common;
use common::Reply;

use std::collections::HashMap;

use http::Method;
use s3kv::api;
use s3kv::percent;
use serde_json::json;

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
