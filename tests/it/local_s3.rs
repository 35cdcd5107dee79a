//! The local bucket as S3 clients see it: the aws CLI's uploads, removes and version listings, and versions kept
//! like the deployed bucket's. Apart from `local.rs`, whose [`Local`] harness these tests share, so that each file
//! stays under ~600 lines.

use super::local::Local;
use aws_sdk_s3::primitives::ByteStream;
use s3kv_local as local;

#[tokio::test]
async fn the_aws_cli_uploads_and_removes_items() {
    let aws = testkit::program("S3KV_AWS_CLI", "aws").unwrap_or_else(|e| panic!("{e}"));
    let local = Local::start("cli").await;
    let dir = &local.dir;
    let file = dir.join("upload.json");
    std::fs::write(&file, "{\"from\": \"the aws CLI\"}").unwrap();
    let endpoint = format!("http://{}", local.stack.s3_addr);
    // Async: the stack serves on this test's runtime, so a blocking wait here would deadlock it.
    let cli = |args: &'static [&'static str]| {
        let mut command = tokio::process::Command::new(&aws);
        command
            .current_dir(dir)
            .args(["--endpoint-url", &endpoint])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", local::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", local::SECRET_KEY)
            .env("AWS_DEFAULT_REGION", local::REGION)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .stdout(std::process::Stdio::null());
        async move {
            let status = command.status().await.expect("run aws");
            assert!(status.success(), "aws {args:?} failed");
        }
    };
    cli(&["s3", "cp", "upload.json", "s3://s3kv/cli/my doc.json"]).await;
    local.settle().await;
    let read = local.get("cli/my doc").await;
    assert_eq!(
        (read.status, read.header("x-cache"), read.body.as_str()),
        (200, Some("HIT"), "{\"from\": \"the aws CLI\"}")
    );
    cli(&["s3", "rm", "s3://s3kv/cli/my doc.json"]).await;
    local.settle().await;
    assert_eq!(local.get("cli/my doc").await.status, 404);

    // The bucket is versioned: the CLI sees the upload and the delete marker the rm left.
    let json = |args: &'static [&'static str]| {
        let mut command = tokio::process::Command::new(&aws);
        command
            .args(["--endpoint-url", &endpoint, "--output", "json"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", local::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", local::SECRET_KEY)
            .env("AWS_DEFAULT_REGION", local::REGION)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        async move {
            let out = command.output().await.expect("run aws");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "aws {args:?} failed: {stderr}");
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .unwrap_or_else(|e| panic!("aws {args:?}: {e}: {stderr}"))
        }
    };
    let versioning = json(&["s3api", "get-bucket-versioning", "--bucket", "s3kv"]).await;
    assert_eq!(versioning["Status"], "Enabled");
    let listed = json(&[
        "s3api",
        "list-object-versions",
        "--bucket",
        "s3kv",
        "--prefix",
        "cli/",
    ])
    .await;
    let versions = listed["Versions"].as_array().expect("Versions");
    let markers = listed["DeleteMarkers"].as_array().expect("DeleteMarkers");
    assert_eq!(versions.len(), 1, "{listed}");
    assert_eq!(markers.len(), 1, "{listed}");
    assert_eq!(versions[0]["Key"], "cli/my doc.json");
    assert_eq!(versions[0]["Size"], 23);
    assert_eq!(versions[0]["IsLatest"], false);
    assert_eq!(markers[0]["Key"], "cli/my doc.json");
    assert_eq!(markers[0]["IsLatest"], true);
}

fn http_status<E>(
    error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// The local bucket keeps versions like the deployed one: every write is a version, a delete leaves a marker,
/// old versions can be listed (in pages), read, and copied back, and a copy honours the destination's If-Match.
#[tokio::test]
async fn the_local_bucket_keeps_every_version() {
    let local = Local::start("versions").await;
    let s3 = local.s3();
    let mut written = Vec::new();
    for n in 1..=4 {
        let body = format!("{{\"n\":{n}}}");
        let put = s3
            .put_object()
            .bucket("s3kv")
            .key("h.json")
            .metadata("n", n.to_string())
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await
            .expect("PutObject");
        let id = put.version_id().expect("a version id").to_owned();
        written.push((id, put.e_tag().unwrap().to_owned(), body));
    }
    let deleted = s3
        .delete_object()
        .bucket("s3kv")
        .key("h.json")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.delete_marker(), Some(true));
    let marker = deleted.version_id().expect("the marker's id").to_owned();
    local.settle().await;
    assert_eq!(local.get("h").await.status, 404);

    // Newest first, the delete marker the latest.
    let listed = s3
        .list_object_versions()
        .bucket("s3kv")
        .prefix("h.json")
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .versions()
        .iter()
        .map(|v| v.version_id().unwrap())
        .collect();
    let expected: Vec<&str> = written.iter().rev().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(listed
        .versions()
        .iter()
        .all(|v| v.is_latest() == Some(false)));
    let etags: Vec<&str> = listed
        .versions()
        .iter()
        .map(|v| v.e_tag().unwrap())
        .collect();
    let expected: Vec<&str> = written.iter().rev().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(etags, expected);
    let markers = listed.delete_markers();
    assert_eq!(markers.len(), 1);
    assert_eq!(
        (markers[0].version_id(), markers[0].is_latest()),
        (Some(marker.as_str()), Some(true))
    );

    // In pages of two, continued from the markers each page returns.
    let mut paged = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket("s3kv")
            .prefix("h.json")
            .max_keys(2)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        let in_page = page.versions().len() + page.delete_markers().len();
        assert!(in_page <= 2);
        paged.extend(
            page.versions()
                .iter()
                .map(|v| v.version_id().unwrap().to_owned()),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
    let all: Vec<String> = written.iter().rev().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(paged, all);

    // An old version reads back exactly, with its metadata; a marker is 405, an unknown id 404.
    let (v2, v2_etag, v2_body) = &written[1];
    let old = s3
        .get_object()
        .bucket("s3kv")
        .key("h.json")
        .version_id(v2)
        .send()
        .await
        .unwrap();
    assert_eq!(old.version_id(), Some(v2.as_str()));
    assert_eq!(
        old.metadata().and_then(|m| m.get("n")).map(String::as_str),
        Some("2")
    );
    assert_eq!(
        old.body.collect().await.unwrap().into_bytes().as_ref(),
        v2_body.as_bytes()
    );
    let head = s3
        .head_object()
        .bucket("s3kv")
        .key("h.json")
        .version_id(v2)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(v2_body.len() as i64));
    let on_marker = s3
        .get_object()
        .bucket("s3kv")
        .key("h.json")
        .version_id(&marker)
        .send()
        .await;
    assert_eq!(on_marker.as_ref().err().and_then(http_status), Some(405));
    let unknown = s3
        .get_object()
        .bucket("s3kv")
        .key("h.json")
        .version_id("1234")
        .send()
        .await;
    assert_eq!(unknown.as_ref().err().and_then(http_status), Some(404));

    // Copying version 2 back undeletes the item with its bytes, through the notification path.
    let source = format!("s3kv/h.json?versionId={v2}");
    let restored = s3
        .copy_object()
        .bucket("s3kv")
        .key("h.json")
        .copy_source(&source)
        .send()
        .await
        .expect("CopyObject from a version");
    assert_eq!(restored.copy_source_version_id(), Some(v2.as_str()));
    let restored_etag = restored
        .copy_object_result()
        .and_then(|r| r.e_tag())
        .unwrap()
        .to_owned();
    assert_eq!(&restored_etag, v2_etag, "the same bytes, the same ETag");
    local.settle().await;
    let read = local.get("h").await;
    assert_eq!(
        (read.status, read.header("x-cache"), read.body.as_str()),
        (200, Some("HIT"), v2_body.as_str())
    );

    // The destination's If-Match: a stale tag is refused and changes nothing, the current one wins.
    let (_, v4_etag, _) = &written[3];
    let (v1, _, v1_body) = &written[0];
    let source = format!("s3kv/h.json?versionId={v1}");
    let stale = s3
        .copy_object()
        .bucket("s3kv")
        .key("h.json")
        .copy_source(&source)
        .if_match(v4_etag)
        .send()
        .await;
    assert_eq!(stale.as_ref().err().and_then(http_status), Some(412));
    s3.copy_object()
        .bucket("s3kv")
        .key("h.json")
        .copy_source(&source)
        .if_match(&restored_etag)
        .send()
        .await
        .expect("a copy with the current ETag");
    let current = s3
        .get_object()
        .bucket("s3kv")
        .key("h.json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        current.body.collect().await.unwrap().into_bytes().as_ref(),
        v1_body.as_bytes()
    );
    let count = s3
        .list_object_versions()
        .bucket("s3kv")
        .prefix("h.json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        count.versions().len() + count.delete_markers().len(),
        7,
        "4 writes, a delete, 2 copies"
    );
}
