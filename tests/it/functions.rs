//! The functions' real binaries, run as Lambda runs them (behind a Runtime API, `testkit::runtime_api`): a typo in
//! the access configuration never keeps a function from starting (issue #33). A bad grant is logged and its key
//! denied; the other keys keep working.

use std::process::Command;

use http::Method;
use testkit::runtime_api::{AnswerKind, RuntimeApi};
use testkit::ChildServer;

use crate::common::{self, BUCKET, S3};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_starts_with_a_bad_grant_denies_that_key_and_serves_the_others() {
    let s3 = S3::start().await;
    let mut api = RuntimeApi::start().await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_writer"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "s3kv-writer")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL_S3", s3.server.endpoint())
        .env("S3KV_BUCKET", BUCKET)
        .env("S3KV_METRICS", "off")
        // One sound grant, one with a role that does not exist, and a second variable that is not JSON at all.
        .env(
            "S3KV_API_KEYS",
            r#"{"good": {"role": "write"}, "typo": {"role": "writer"}}"#,
        )
        .env("S3KV_EXTRA_API_KEYS", r#"{"extra": {"role": "write"},}"#)
        .env("S3KV_PUBLIC_PREFIX", "public/\u{7}");
    let mut writer = ChildServer::spawn("writer", command).unwrap_or_else(|e| panic!("{e}"));

    let invoke = |key_id: &str, key: &str| {
        let request = common::event(
            Some(key_id),
            Method::PUT,
            &format!("/items/{key}"),
            &[],
            Some("{}"),
        );
        serde_json::to_vec(&request).unwrap()
    };
    let answer = api.invoke(invoke("good", "a"), &mut writer).await;
    assert!(
        matches!(answer.kind, AnswerKind::Response),
        "{}",
        writer.output()
    );
    let response: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(response["statusCode"], 201, "{response}");
    for denied in ["typo", "extra", "unknown"] {
        let answer = api.invoke(invoke(denied, "b"), &mut writer).await;
        let response: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(response["statusCode"], 403, "{denied}: {response}");
    }
    assert!(writer.exited().is_none(), "the writer is still running");
    // Each problem is in the log, naming its variable.
    let log = writer.output();
    for said in [
        "S3KV_API_KEYS=",
        "S3KV_EXTRA_API_KEYS=",
        "S3KV_PUBLIC_PREFIX=",
    ] {
        assert!(log.contains(said), "{said} not logged:\n{log}");
    }
}
