//! The S3 endpoint of `s3kv-local` under its one mutation lock: reads never wait for it. Apart from
//! `local_repair.rs` (whose in-process [`Local`] stack it shares) so that each file stays under ~600 lines.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::local_repair::{journal_entries, Local, BUCKET};

/// Whether a change holds the endpoint's mutation lock: its journal intent exists only while it does.
fn a_change_holds_the_lock(data_dir: &Path) -> bool {
    journal_entries(data_dir)
        .iter()
        .any(|dir| dir.join("intent.json").is_file())
}

/// Reads never wait for the mutation lock. A PutObject whose body is held back holds that lock (the endpoint takes
/// it before s3s-fs streams the body in; its journal intent, written with the lock held, shows it has it). While
/// it does, GET /items/{key} (from the cache, and `?consistent=true` from S3), GetObject, HeadObject and a listing
/// of other keys all answer, and the write has still not completed when they have: if reads took the lock, they
/// would wait for the write, which waits for this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_answered_while_a_write_holds_the_mutation_lock() {
    let valkey = testkit::Valkey::start();
    let dir = testkit::temp_dir("repair-reads");
    let data_dir = dir.join("data");
    let local = Local::start(&data_dir, &valkey).await;
    let (status, _) = local.api("PUT", "other", Some(r#"{"n":1}"#)).await;
    assert!(status == 200 || status == 201, "PUT other: {status}");
    local.upload("held.json", r#"{"v":1}"#).await;
    assert!(local.stack.backlog.wait_idle(Duration::from_secs(20)).await);
    assert!(!a_change_holds_the_lock(&data_dir));

    // A presigned PUT (UNSIGNED-PAYLOAD, so s3s streams the body to s3s-fs instead of hashing it first), sent raw:
    // the head and half the body now, the rest when this test says.
    let presigned = local
        .s3
        .put_object()
        .bucket(BUCKET)
        .key("held.json")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let uri: http::Uri = presigned.uri().parse().unwrap();
    let body = br#"{"v":2,"pad":"0123456789"}"#;
    let (first, rest) = body.split_at(body.len() / 2);
    let mut head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        uri.path_and_query().unwrap(),
        uri.authority().unwrap(),
        body.len()
    );
    for (name, value) in presigned.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut upload = tokio::net::TcpStream::connect(local.stack.s3_addr)
        .await
        .unwrap();
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(first).await.unwrap();
    upload.flush().await.unwrap();
    let mut waited = 0;
    while !a_change_holds_the_lock(&data_dir) {
        waited += 1;
        assert!(
            waited < 2000,
            "the held upload never took the mutation lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The reads, while the write holds the lock. The timeout only turns a read stuck behind the lock into a failure
    // sooner than the endpoint's 30 s body timeout would end the write.
    let reads = async {
        let cached = local.api("GET", "other", None).await;
        let consistent = local.api("GET", "other?consistent=true", None).await;
        let object = local.read("other.json").await;
        let head = local
            .s3
            .head_object()
            .bucket(BUCKET)
            .key("other.json")
            .send()
            .await
            .map(|h| h.content_length());
        let listed = local.listed().await;
        (cached, consistent, object, head, listed)
    };
    let (cached, consistent, object, head, listed) =
        tokio::time::timeout(Duration::from_secs(20), reads)
            .await
            .expect("reads waited for the write holding the mutation lock");
    assert_eq!(cached, (200, r#"{"n":1}"#.to_owned()), "GET /items/other");
    assert_eq!(
        consistent,
        (200, r#"{"n":1}"#.to_owned()),
        "GET /items/other?consistent=true"
    );
    assert_eq!(
        object.as_deref(),
        Some(r#"{"n":1}"#),
        "GetObject other.json"
    );
    assert_eq!(head.expect("HeadObject other.json"), Some(7));
    assert_eq!(listed, ["held.json", "other.json"]);

    // The write is still held: its intent is there and it has not been answered.
    assert!(
        a_change_holds_the_lock(&data_dir),
        "the write completed before the reads did"
    );
    let mut early = [0u8; 64];
    match upload.try_read(&mut early) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!(
            "the write was answered before the reads returned: {other:?} {}",
            String::from_utf8_lossy(&early)
        ),
    }

    // Let it go: it completes, and is read back.
    upload.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), upload.read_to_end(&mut answer))
        .await
        .expect("the released write is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!a_change_holds_the_lock(&data_dir));
    assert_eq!(
        local.read("held.json").await.as_deref(),
        Some(std::str::from_utf8(body).unwrap())
    );
    local.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
