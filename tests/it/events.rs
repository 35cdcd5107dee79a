//! Every sample in events/ parses as the handlers' input type and does what it says when run through its
//! handler against real servers. The samples are also for `cargo lambda invoke --data-file` and
//! `sam local invoke -e`, so a sample that drifts from the handlers' types fails here first.

use crate::common;

use std::collections::BTreeSet;

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use aws_lambda_events::s3::S3Event;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{Response, Stack, BUCKET};
use http::Method;
use s3kv::{api, percent};

/// The body each sample S3 record's ETag was computed from (see the record's `eTag`).
fn body_for(object_key: &str) -> String {
    serde_json::json!({ "sample": object_key }).to_string()
}

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name} does not parse as the handler's input: {e}"))
}

/// API samples in the order a user would send them, with the status each must get.
const API_SAMPLES: &[(&str, i64)] = &[
    // The schema first: the PUT after it must meet it.
    ("apigw-put-schema.json", 201),
    ("apigw-put.json", 201),
    ("apigw-post.json", 201),
    ("apigw-get.json", 200),
    ("apigw-delete.json", 204),
    ("apigw-versions.json", 200),
    ("apigw-changes.json", 200),
    ("apigw-put-malformed.json", 400),
];

/// S3 samples with (applied, ignored) counts once their objects exist as the records describe.
const S3_SAMPLES: &[(&str, usize, usize)] = &[
    ("s3-put.json", 1, 0),
    ("s3-multipart.json", 1, 0),
    ("s3-copy.json", 1, 0),
    ("s3-delete.json", 1, 0),
    ("s3-batch.json", 4, 1),
];

#[test]
fn every_sample_is_covered_by_a_test() {
    let on_disk: BTreeSet<String> =
        std::fs::read_dir(format!("{}/events", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    let covered: BTreeSet<String> = API_SAMPLES
        .iter()
        .map(|s| s.0.to_owned())
        .chain(S3_SAMPLES.iter().map(|s| s.0.to_owned()))
        .collect();
    let covered: BTreeSet<String> = covered
        .into_iter()
        .chain(["s3-test-event.json".to_owned()])
        .collect();
    assert_eq!(on_disk, covered);
}

#[tokio::test]
async fn api_samples_run_through_the_writer_and_reader() {
    let stack = Stack::start_with(&[("S3KV_PREFIX", "")]).await;
    let mut written = None;
    for (name, status) in API_SAMPLES {
        let request: ApiGatewayProxyRequest = load(name);
        let method = request.http_method.clone();
        let body = request.body.clone();
        let response = Response::from(if method == Method::GET {
            api::handle_read(&stack.reader, &stack.access, &request, common::deadline(10)).await
        } else {
            api::handle_write(&stack.writer, &stack.access, &request, common::deadline(10)).await
        });
        assert_eq!(response.status, *status, "{name}: {}", response.body);
        match *name {
            "apigw-put.json" => written = body,
            "apigw-get.json" => {
                assert_eq!(Some(response.body), written, "GET returns what PUT stored")
            }
            "apigw-put-malformed.json" => assert_eq!(response.json()["error"], "invalid_json"),
            "apigw-changes.json" => {
                // From now: nothing yet, and the cursor to follow from.
                let feed = response.json();
                assert_eq!(feed["changes"], serde_json::json!([]), "{feed}");
                assert!(
                    feed["cursor"].as_str().is_some_and(|c| c.contains('-')),
                    "{feed}"
                );
            }
            "apigw-versions.json" => {
                // The PUT, then the DELETE's marker, newest first.
                let versions = response.json()["versions"].clone();
                let kinds: Vec<(bool, bool)> = versions
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
                assert_eq!(kinds, [(true, true), (false, false)], "{versions}");
            }
            _ => {}
        }
    }
    let decoded = stack.s3.body("config/checkout v2.json").await;
    assert!(
        decoded.is_some(),
        "the POST sample's percent-encoded key is stored decoded"
    );
}

#[tokio::test]
async fn s3_samples_run_through_the_syncer() {
    let stack = Stack::start_with(&[("S3KV_PREFIX", "")]).await;
    for (name, applied, ignored) in S3_SAMPLES {
        let event: S3Event = load(name);
        let mut expect_present = Vec::new();
        let mut expect_absent = Vec::new();
        for record in &event.records {
            let object = &record.s3.object;
            let key =
                percent::decode(object.key.as_deref().unwrap(), percent::Encoding::Form).unwrap();
            let event_name = record.event_name.as_deref().unwrap();
            if event_name.starts_with("ObjectCreated:") {
                let etag = materialize(&stack, &key, event_name).await;
                assert_eq!(
                    Some(etag.as_str()),
                    object.e_tag.as_deref(),
                    "{name}: sample eTag matches its object"
                );
                expect_present.push(key);
            } else {
                expect_absent.push(key);
            }
        }
        let report = stack
            .sync(event.records.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (report.applied, report.ignored, report.failed),
            (*applied, *ignored, 0),
            "{name}: {report:?}"
        );
        for key in expect_present
            .iter()
            .filter_map(|k| k.strip_suffix(".json"))
        {
            let read = stack.get(key).await;
            assert_eq!(
                (read.status, read.header("x-cache")),
                (200, Some("HIT")),
                "{name}: {key}"
            );
            assert_eq!(read.body, body_for(&format!("{key}.json")));
        }
        for key in expect_absent.iter().filter_map(|k| k.strip_suffix(".json")) {
            assert_eq!(stack.get(key).await.status, 404, "{name}: {key}");
        }
    }
}

/// Puts the object a record describes into S3 the way the record says it got there; returns its ETag.
async fn materialize(stack: &Stack, key: &str, event_name: &str) -> String {
    let body = body_for(key);
    let s3 = &stack.s3.client;
    let etag = if event_name.ends_with("CompleteMultipartUpload") {
        let upload = s3
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap();
        let part = s3
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(id)
            .part_number(1)
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .unwrap();
        let parts = CompletedMultipartUpload::builder()
            .parts(
                CompletedPart::builder()
                    .part_number(1)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .build(),
            )
            .build();
        let done = s3
            .complete_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(id)
            .multipart_upload(parts)
            .send()
            .await
            .unwrap();
        done.e_tag().unwrap().to_owned()
    } else if event_name.ends_with("Copy") {
        let source = format!("{key}.source");
        stack.s3.upload(&source, body.as_bytes()).await;
        let copied = s3
            .copy_object()
            .bucket(BUCKET)
            .key(key)
            .copy_source(format!("{BUCKET}/{}", percent::encode_path(&source)))
            .send()
            .await
            .unwrap();
        copied
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .unwrap()
            .to_owned()
    } else {
        stack
            .s3
            .upload(key, body.as_bytes())
            .await
            .as_str()
            .to_owned()
    };
    etag.trim_matches('"').to_owned()
}

#[tokio::test]
async fn the_s3_test_event_is_acknowledged_not_failed() {
    let stack = Stack::start_with(&[("S3KV_PREFIX", "")]).await;
    let event: serde_json::Value = load("s3-test-event.json");
    let report = s3kv::s3_event::handle_json(&stack.syncer, event, common::deadline(10))
        .await
        .unwrap();
    assert_eq!(report.records, 0);
    // Anything else that is not an S3 notification still fails the invocation, for the failure queue.
    let junk = serde_json::json!({ "hello": "world" });
    assert!(
        s3kv::s3_event::handle_json(&stack.syncer, junk, common::deadline(10))
            .await
            .is_err()
    );
    // And real notifications go through the same entry.
    let event: serde_json::Value = load("s3-delete.json");
    let report = s3kv::s3_event::handle_json(&stack.syncer, event, common::deadline(10))
        .await
        .unwrap();
    assert_eq!(report.applied, 1, "{report:?}");
}
