//! `doctor`: a stack checked end to end through its API, each check OK, FAIL with the fix, or SKIP with why.

use crate::harness::{Local, READ_KEY};

#[tokio::test(flavor = "multi_thread")]
async fn a_write_key_passes_every_check_and_leaves_nothing_behind() {
    let local = Local::start("doctor-write").await;
    let run = local.s3kv(&["doctor"]).await.ok();
    for check in [
        "OK   api:",
        "a wrong key gets 40",
        "OK   S3 from the VPC: the reader read the scratch key straight from S3",
        "OK   key: a write key",
        "OK   write:",
        "OK   cache:",
        "X-Cache: HIT",
        "OK   delete:",
    ] {
        assert!(
            run.stdout.contains(check),
            "{check:?} not in {}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(run.stdout.contains("not checked here"), "{}", run.stdout);
    // The scratch item is gone.
    local.settle().await;
    let left = local.s3kv(&["ls", ".s3kv-doctor/"]).await.ok();
    assert_eq!(left.stdout.trim(), "", "{}", left.stdout);

    let json = local.s3kv(&["doctor", "--output", "json"]).await.ok();
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["check"] == "cache" && l["status"] == "OK"),
        "{}",
        json.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_key_reads_and_its_write_checks_are_skipped() {
    let local = Local::start("doctor-read").await;
    let run = local
        .s3kv_with(&["doctor"], None, &[("S3KV_API_KEY", READ_KEY)])
        .await
        .ok();
    assert!(
        run.stdout.contains("OK   key: a read key"),
        "{}",
        run.stdout
    );
    for check in ["SKIP write:", "SKIP cache:", "SKIP delete:"] {
        assert!(
            run.stdout.contains(check),
            "{check:?} not in {}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_fails_with_the_fix() {
    let local = Local::start("doctor-wrong").await;
    let run = local
        .s3kv_with(
            &["doctor"],
            None,
            &[("S3KV_API_KEY", "not-this-stacks-key")],
        )
        .await
        .fails(1, "1 check failed");
    assert!(run.stdout.contains("OK   api:"), "{}", run.stdout);
    assert!(run.stdout.contains("FAIL key reads:"), "{}", run.stdout);
    assert!(
        run.stdout.contains("fix: use a key of this stack"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_fails_with_the_fix() {
    let local = Local::start("doctor-unreachable").await;
    let run = local
        .s3kv_with(
            &["doctor"],
            None,
            &[("S3KV_ENDPOINT", "http://127.0.0.1:9")],
        )
        .await
        .fails(1, "check failed");
    assert!(run.stdout.contains("FAIL api:"), "{}", run.stdout);
    assert!(
        run.stdout.contains("fix: check the endpoint"),
        "{}",
        run.stdout
    );
}
