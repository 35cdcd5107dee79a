//! What is refused before or around the API: the wrong key, no key, an endpoint that does not answer, no
//! command; and completions.

use crate::harness::{Local, READ_KEY};

#[tokio::test(flavor = "multi_thread")]
async fn a_read_key_cannot_write_and_no_key_is_the_gateways_403() {
    let local = Local::start("keys").await;
    local
        .s3kv_with(&["put", "config/ui"], Some("{}"), &[])
        .await
        .ok();
    local.settle().await;
    // Keys: a read key cannot write (the API's 403 message), no key at all is the gateway's 403.
    local
        .s3kv_with(
            &["put", "flags/x"],
            Some("1"),
            &[("S3KV_API_KEY", READ_KEY)],
        )
        .await
        .fails(1, "may only read");
    local
        .s3kv_with(&["get", "config/ui"], None, &[("S3KV_API_KEY", "")])
        .await
        .fails(1, "Forbidden");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_does_not_answer_exits_1() {
    let local = Local::start("down").await;
    let down = local
        .s3kv_with(
            &["get", "config/ui"],
            None,
            &[("S3KV_ENDPOINT", "http://127.0.0.1:9")],
        )
        .await;
    assert_eq!(down.code, 1, "{}", down.stderr);
    assert!(down.stderr.contains("cannot reach"), "{}", down.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_command_is_a_usage_error_and_completions_print_a_script() {
    let local = Local::start("usage").await;
    // Usage and completions.
    local.s3kv(&[]).await.fails(2, "Usage");
    let completions = local.s3kv(&["completions", "bash"]).await.ok();
    assert!(
        completions.stdout.contains("_s3kv()"),
        "{}",
        completions.stdout
    );
}
