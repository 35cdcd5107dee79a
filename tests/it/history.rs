//! History, rollback and undelete on the bucket's versions, the same scenario two ways: through the functions'
//! handlers on moto (with the syncer fed the events S3 would send), and through s3kv-local over HTTP (its own
//! versioned S3 endpoint and notifications). What a user checks: every write is a version, in order, with its
//! writer; an old version reads back exactly; a restore makes it the item again (after sync, from the cache);
//! a delete then a restore undeletes; a restore racing a write under the same If-Match has exactly one winner.

use crate::common;

use http::Method;
use s3kv::percent;
use serde_json::{json, Value};

use common::Reply;

/// The ETag header, as sent.
fn etag(reply: &Reply) -> String {
    reply.header("etag").expect("an ETag").to_owned()
}

/// Who calls: a write key, or a read key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Write,
    Read,
}

trait Api {
    /// `path` is the API path with its query string, the key percent-encoded.
    async fn call(
        &self,
        key: Key,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply;
    /// A manual upload, straight to the bucket.
    async fn upload(&self, key: &str, body: &str);
    /// The item's current bytes in the bucket.
    async fn current(&self, key: &str) -> Option<String>;
    /// Waits until the cache has what the bucket has for `key`.
    async fn settle(&self, key: &str);
    /// The writer every write through the API records, up to its request id.
    fn writer_prefix(&self) -> &'static str;
    /// Lets the server's clock move to a new second where it keeps whole seconds and lists delete markers apart
    /// from versions (moto): the order of a delete and a write within one second is unknowable there. S3
    /// interleaves them in order, and s3kv-local keeps milliseconds.
    async fn next_second(&self) {}
}

fn item(key: &str) -> String {
    format!("/items/{}", percent::encode_path(key))
}

async fn run_scenario(api: &impl Api) {
    let key = "hist/doc";
    let mut etags = Vec::new();
    for n in 1..=10 {
        let reply = api
            .call(
                Key::Write,
                Method::PUT,
                &item(key),
                &[],
                Some(&format!("{{\"n\":{n}}}")),
            )
            .await;
        assert!(matches!(reply.status, 200 | 201), "{}", reply.body);
        etags.push(etag(&reply));
    }

    // Ten versions, newest first, each with its ETag and writer; only the newest is current.
    let path = format!("/versions/{}?limit=100", percent::encode_path(key));
    let listed = api.call(Key::Read, Method::GET, &path, &[], None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = listed.json();
    let versions = listed["versions"].as_array().expect("versions").clone();
    assert_eq!(versions.len(), 10, "{listed}");
    assert_eq!(listed["cursor"], Value::Null);
    let listed_etags: Vec<String> = versions
        .iter()
        .map(|v| format!("\"{}\"", v["etag"].as_str().unwrap()))
        .collect();
    let newest_first: Vec<String> = etags.iter().rev().cloned().collect();
    assert_eq!(listed_etags, newest_first);
    for (index, version) in versions.iter().enumerate() {
        assert_eq!(version["current"], index == 0, "{version}");
        assert_eq!(version["deleted"], false);
        assert_eq!(
            version["size"].as_u64(),
            Some(format!("{{\"n\":{}}}", 10 - index).len() as u64)
        );
        let writer = version["writer"].as_str().unwrap_or_default();
        assert!(writer.starts_with(api.writer_prefix()), "{writer}");
    }
    let ids: Vec<String> = versions
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_owned())
        .collect();

    // The same ten in pages of three.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/versions/{}?limit=3", percent::encode_path(key));
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = api
            .call(Key::Read, Method::GET, &path, &[], None)
            .await
            .json();
        let page_versions = page["versions"].as_array().unwrap();
        assert!(page_versions.len() <= 3);
        paged.extend(
            page_versions
                .iter()
                .map(|v| v["version"].as_str().unwrap().to_owned()),
        );
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, ids);

    // The third write reads back exactly, from S3.
    let third = &ids[7];
    let path = format!("{}?version={third}", item(key));
    let old = api.call(Key::Read, Method::GET, &path, &[], None).await;
    assert_eq!(
        (old.status, old.body.as_str(), old.header("x-cache")),
        (200, r#"{"n":3}"#, Some("BYPASS"))
    );
    assert_eq!(etag(&old), etags[2]);

    // Restoring it makes it the item again, through the notification path: a cache hit with its bytes, and the
    // writer says it was a restore.
    let restore_path = format!("/restore/{}", percent::encode_path(key));
    let restore = json!({ "version": third }).to_string();
    let restored = api
        .call(Key::Write, Method::POST, &restore_path, &[], Some(&restore))
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(restored.json()["restoredFrom"], third.as_str());
    assert_eq!(etag(&restored), etags[2], "the same bytes, the same ETag");
    api.settle(key).await;
    let read = api
        .call(Key::Read, Method::GET, &item(key), &[], None)
        .await;
    assert_eq!((read.status, read.body.as_str()), (200, r#"{"n":3}"#));
    assert_eq!(read.header("x-cache"), Some("HIT"));
    let writer = read.header("x-s3kv-writer").unwrap_or_default();
    assert!(writer.ends_with(&format!("restored={third}")), "{writer}");

    // A delete, then a restore of the first version: undeleted (201, as a create).
    api.next_second().await;
    let deleted = api
        .call(Key::Write, Method::DELETE, &item(key), &[], None)
        .await;
    assert_eq!(deleted.status, 204);
    api.settle(key).await;
    assert_eq!(
        api.call(Key::Read, Method::GET, &item(key), &[], None)
            .await
            .status,
        404
    );
    api.next_second().await;
    let first = json!({ "version": ids[9] }).to_string();
    let undeleted = api
        .call(Key::Write, Method::POST, &restore_path, &[], Some(&first))
        .await;
    assert_eq!(undeleted.status, 201, "{}", undeleted.body);
    api.settle(key).await;
    let read = api
        .call(Key::Read, Method::GET, &item(key), &[], None)
        .await;
    assert_eq!((read.status, read.body.as_str()), (200, r#"{"n":1}"#));
    let history = api
        .call(
            Key::Read,
            Method::GET,
            &format!("/versions/{}?limit=3", percent::encode_path(key)),
            &[],
            None,
        )
        .await
        .json();
    let top: Vec<(bool, bool)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["deleted"].as_bool().unwrap(),
                v["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        top,
        vec![(false, true), (true, false), (false, false)],
        "{history}"
    );
    assert_eq!(
        history["versions"][1]["writer"],
        Value::Null,
        "S3 keeps no writer for a delete"
    );

    // A restore and a write race under the same If-Match: exactly one wins, and the bucket holds the winner's.
    let current = etag(&read);
    let if_match = [("if-match", current.as_str())];
    let second = json!({ "version": ids[8] }).to_string();
    let item_path = item(key);
    let (write, restore) = tokio::join!(
        api.call(
            Key::Write,
            Method::PUT,
            &item_path,
            &if_match,
            Some(r#"{"raced":"write"}"#)
        ),
        api.call(
            Key::Write,
            Method::POST,
            &restore_path,
            &if_match,
            Some(&second)
        ),
    );
    let mut statuses = [write.status, restore.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 412],
        "write: {}, restore: {}",
        write.body,
        restore.body
    );
    let winner = if write.status == 200 {
        r#"{"raced":"write"}"#
    } else {
        r#"{"n":2}"#
    };
    assert_eq!(api.current(key).await.as_deref(), Some(winner));
    let loser = if write.status == 412 {
        &write
    } else {
        &restore
    };
    assert_eq!(loser.json()["error"], "precondition_failed");

    // A manual upload's history names no key: its writer is an upload.
    api.upload("hist/manual", r#"{"by":"hand"}"#).await;
    let manual = api
        .call(Key::Read, Method::GET, "/versions/hist/manual", &[], None)
        .await
        .json();
    assert_eq!(
        manual["versions"].as_array().map(Vec::len),
        Some(1),
        "{manual}"
    );
    assert_eq!(manual["versions"][0]["writer"], "s3");

    // What cannot be done says so.
    let unknown = api
        .call(
            Key::Read,
            Method::GET,
            &format!("{}?version=0000000000004242", item(key)),
            &[],
            None,
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.json()["error"].as_str()),
        (404, Some("not_found"))
    );
    let bogus = json!({ "version": "0000000000004242" }).to_string();
    let missing = api
        .call(Key::Write, Method::POST, &restore_path, &[], Some(&bogus))
        .await;
    assert_eq!(
        (missing.status, missing.json()["error"].as_str()),
        (404, Some("not_found"))
    );
    let shapeless = api
        .call(
            Key::Write,
            Method::POST,
            &restore_path,
            &[],
            Some(r#"{"v":1}"#),
        )
        .await;
    assert_eq!(
        (shapeless.status, shapeless.json()["error"].as_str()),
        (400, Some("invalid_body"))
    );
    let by_reader = api
        .call(Key::Read, Method::POST, &restore_path, &[], Some(&second))
        .await;
    assert_eq!(
        (by_reader.status, by_reader.json()["error"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        api.current(key).await.as_deref(),
        Some(winner),
        "refused requests changed nothing"
    );
}

// ------------------------------------------------------------------------------------------- through handlers

const GRANTS: &str =
    r#"{"histwrite1": {"role": "write", "name": "t-write"}, "histread1": {"role": "read"}}"#;

fn event(
    key: Key,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> aws_lambda_events::apigw::ApiGatewayProxyRequest {
    let key_id = match key {
        Key::Write => "histwrite1",
        Key::Read => "histread1",
    };
    let mut request = common::event(Some(key_id), method, path, headers, body);
    request.request_context.request_id = Some("req-history".to_owned());
    request
}

impl Api for common::Stack {
    async fn call(
        &self,
        key: Key,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let request = event(key, method.clone(), path, headers, body);
        self.route(&request).await
    }

    async fn upload(&self, key: &str, body: &str) {
        self.s3.upload(&self.object_key(key), body.as_bytes()).await;
    }

    async fn current(&self, key: &str) -> Option<String> {
        common::Stack::current(self, key).await
    }

    /// The event S3 would send for the bucket's current state of `key`.
    async fn settle(&self, key: &str) {
        let object_key = self.object_key(key);
        let head = self
            .s3
            .client
            .head_object()
            .bucket(common::BUCKET)
            .key(&object_key)
            .send()
            .await;
        let record = match head {
            Ok(head) => self.created(&object_key, &s3kv::ports::Etag::new(head.e_tag().unwrap())),
            Err(_) => self.removed(&object_key),
        };
        self.sync(vec![record]).await.expect("sync");
    }

    fn writer_prefix(&self) -> &'static str {
        "key=histwrite1; name=t-write; request=req-history"
    }

    async fn next_second(&self) {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_restore_and_undelete_through_the_handlers_on_moto() {
    let stack = common::Stack::start_with(&[("S3KV_API_KEYS", GRANTS)]).await;
    run_scenario(&stack).await;
}

// ------------------------------------------------------------------------------------------ through s3kv-local

const WRITE_KEY: &str = "history-write-key";
const READ_KEY: &str = "history-read-key";

/// s3kv-local with a full key and a read key.
struct Local(common::TestStack);

impl Local {
    async fn start() -> Self {
        Self(
            common::TestStack::start("history", |o| {
                o.api_key = Some(WRITE_KEY.into());
                o.read_keys = vec![s3kv_local::KeySpec {
                    value: READ_KEY.into(),
                    prefixes: Vec::new(),
                }];
            })
            .await,
        )
    }
}

impl Api for Local {
    async fn call(
        &self,
        key: Key,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let value = if key == Key::Write {
            WRITE_KEY
        } else {
            READ_KEY
        };
        self.0.send(method, path, Some(value), headers, body).await
    }

    async fn upload(&self, key: &str, body: &str) {
        self.0.upload(key, body).await;
    }

    async fn current(&self, key: &str) -> Option<String> {
        self.0.current(key).await
    }

    async fn settle(&self, _: &str) {
        self.0.settle().await;
    }

    fn writer_prefix(&self) -> &'static str {
        "key=local0; name=api-key; request="
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn history_restore_and_undelete_through_s3kv_local() {
    run_scenario(&Local::start().await).await;
}
