//! Real S3 clients and misbehaving HTTP clients against `s3kv-local` (#31): rclone and the aws CLI do what they
//! say with awkward keys, listings answer ListObjects v1 with an empty delimiter and honour `encoding-type=url`,
//! an item and the items under it are refused clearly instead of failing on the file system, and both servers
//! time out clients that stop sending and answer bad requests with JSON.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use s3kv_local::testing::TestStack;
use s3kv_local::{self as local, Options, Tuning};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "clients-test-key-0123456789";

/// Keys that break a client which decodes what was never encoded, or encodes twice.
const AWKWARD: [&str; 6] = [
    "a b.json",
    "a+b.json",
    "c%41.json",
    "cA.json",
    "ünï/cødé ✓.json",
    "q?x=1&y.json",
];

/// The stack with the full-access key, and what these tests do to it beyond [`TestStack`].
struct Local(TestStack);

impl std::ops::Deref for Local {
    type Target = TestStack;
    fn deref(&self) -> &TestStack {
        &self.0
    }
}

impl Local {
    async fn start(name: &str, tuning: Tuning) -> Self {
        let configure = |o: &mut Options| o.api_key = Some(KEY.into());
        Self(TestStack::start_tuned(&format!("clients-{name}"), configure, tuning).await)
    }

    /// An object whose body names its key, so a listing can be checked against what each object holds.
    async fn put_object(&self, object_key: &str) {
        let body = serde_json::json!({ "key": object_key }).to_string();
        self.upload_object(object_key, body.as_bytes()).await;
    }

    /// Every key under `prefix`, from ListObjectsV2 without encoding.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let page = self
            .s3()
            .list_objects_v2()
            .bucket("s3kv")
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        page.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    async fn api(&self, method: &str, key: &str, body: Option<&str>) -> (u16, String) {
        let path = format!("/items/{}", s3kv::percent::encode_path(key));
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        let reply = self.send(method, &path, Some(KEY), &[], body).await;
        (reply.status, reply.body)
    }
}

/// Runs a client program to its end; its status, stdout and stderr.
async fn run(program: &str, args: &[&str], envs: &[(&str, String)], dir: &Path) -> (bool, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        // A CA bundle from the environment makes rclone's S3 client fail before it sends anything (and the
        // endpoint is plain HTTP anyway).
        .env_remove("AWS_CA_BUNDLE")
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_lists_sizes_deletes_syncs_and_purges_awkward_keys() {
    let rclone = testkit::program("S3KV_RCLONE", "rclone").unwrap_or_else(|e| panic!("{e}"));
    let local = Local::start("rclone", Tuning::default()).await;
    for key in AWKWARD {
        local.put_object(&format!("bulk/{key}")).await;
    }
    // rclone's S3 remote for "any other S3", as its docs configure one: ListObjects v1, no URL encoding.
    let envs = [
        ("RCLONE_CONFIG", "/dev/null".to_owned()),
        ("RCLONE_CONFIG_LOCAL_TYPE", "s3".to_owned()),
        ("RCLONE_CONFIG_LOCAL_PROVIDER", "Other".to_owned()),
        (
            "RCLONE_CONFIG_LOCAL_ACCESS_KEY_ID",
            local::ACCESS_KEY.to_owned(),
        ),
        (
            "RCLONE_CONFIG_LOCAL_SECRET_ACCESS_KEY",
            local::SECRET_KEY.to_owned(),
        ),
        ("RCLONE_CONFIG_LOCAL_REGION", local::REGION.to_owned()),
        (
            "RCLONE_CONFIG_LOCAL_ENDPOINT",
            format!("http://{}", local.stack.s3_addr),
        ),
    ];
    let rclone = |args: &'static [&'static str]| {
        let (rclone, envs, dir) = (rclone.clone(), envs.clone(), local.dir.clone());
        async move {
            let (ok, out) = run(&rclone, args, &envs, &dir).await;
            assert!(ok, "rclone {args:?} failed:\n{out}");
            out
        }
    };

    let mut listed: Vec<String> = rclone(&["lsf", "-R", "local:s3kv/bulk"])
        .await
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(str::to_owned)
        .collect();
    listed.sort();
    let mut expected: Vec<String> = AWKWARD.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let size = rclone(&["size", "--json", "local:s3kv/bulk"]).await;
    let size: serde_json::Value = serde_json::from_str(size.trim()).expect(&size);
    assert_eq!(size["count"], AWKWARD.len(), "{size}");

    rclone(&["delete", "local:s3kv/bulk"]).await;
    assert_eq!(local.keys("bulk/").await, Vec::<String>::new());

    // sync up a directory of awkward names, then purge it.
    let source = local.dir.join("sync-source");
    for key in AWKWARD {
        let path = source.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::json!({ "file": key }).to_string()).unwrap();
    }
    let mut args = vec!["sync".to_owned(), source.display().to_string()];
    args.push("local:s3kv/synced".to_owned());
    let args: &'static [&'static str] = Box::leak(
        args.into_iter()
            .map(|a| &*Box::leak(a.into_boxed_str()))
            .collect(),
    );
    rclone(args).await;
    let mut synced = local.keys("synced/").await;
    synced.sort();
    let mut expected: Vec<String> = AWKWARD.iter().map(|k| format!("synced/{k}")).collect();
    expected.sort();
    assert_eq!(synced, expected);
    local.settle().await;
    let (status, body) = local.api("GET", "synced/a+b", None).await;
    assert_eq!((status, body.as_str()), (200, "{\"file\":\"a+b.json\"}"));

    rclone(&["purge", "local:s3kv/synced"]).await;
    assert_eq!(local.keys("synced/").await, Vec::<String>::new());
    local.settle().await;
    assert_eq!(local.api("GET", "synced/a+b", None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_removes_exactly_the_awkward_keys_it_lists() {
    let aws = testkit::program("S3KV_AWS_CLI", "aws").unwrap_or_else(|e| panic!("{e}"));
    let local = Local::start("aws", Tuning::default()).await;
    for key in AWKWARD {
        local.put_object(&format!("rm/{key}")).await;
    }
    local.put_object("keep/a b.json").await;
    let envs = [
        ("AWS_ACCESS_KEY_ID", local::ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", local::SECRET_KEY.to_owned()),
        ("AWS_DEFAULT_REGION", local::REGION.to_owned()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ];
    let endpoint = format!("http://{}", local.stack.s3_addr);
    let aws = |args: Vec<String>| {
        let (aws, envs, dir, endpoint) = (
            aws.clone(),
            envs.clone(),
            local.dir.clone(),
            endpoint.clone(),
        );
        async move {
            let mut all = vec!["--endpoint-url".to_owned(), endpoint];
            all.extend(args);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let (ok, out) = run(&aws, &all, &envs, &dir).await;
            assert!(ok, "aws {all:?} failed:\n{out}");
            out
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let listed = aws(args(&["s3", "ls", "--recursive", "s3://s3kv/rm/"])).await;
    for key in AWKWARD {
        assert!(
            listed.contains(&format!("rm/{key}")),
            "{key} not in:\n{listed}"
        );
    }
    let removed = aws(args(&["s3", "rm", "--recursive", "s3://s3kv/rm/"])).await;
    let mut deleted: Vec<&str> = removed
        .lines()
        .filter_map(|l| l.strip_prefix("delete: s3://s3kv/"))
        .collect();
    deleted.sort();
    let mut expected: Vec<String> = AWKWARD.iter().map(|k| format!("rm/{k}")).collect();
    expected.sort();
    assert_eq!(deleted, expected, "{removed}");
    assert_eq!(local.keys("rm/").await, Vec::<String>::new());
    assert_eq!(local.keys("keep/").await, vec!["keep/a b.json".to_owned()]);

    // sync a directory up and back down: the same names both ways.
    let up = local.dir.join("up");
    for key in AWKWARD {
        let path = up.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{}").unwrap();
    }
    aws(vec![
        "s3".into(),
        "sync".into(),
        up.display().to_string(),
        "s3://s3kv/synced/".into(),
    ])
    .await;
    let down = local.dir.join("down");
    aws(vec![
        "s3".into(),
        "sync".into(),
        "s3://s3kv/synced/".into(),
        down.display().to_string(),
    ])
    .await;
    for key in AWKWARD {
        assert!(down.join(key).is_file(), "{key} did not come back down");
    }
}

#[tokio::test]
async fn listings_take_an_empty_delimiter_and_encode_keys_when_asked() {
    let local = Local::start("listing", Tuning::default()).await;
    for key in AWKWARD {
        local.put_object(&format!("bulk/{key}")).await;
    }
    // ListObjects v1 with `delimiter=` (rclone's recursive listing): every key, no common prefix.
    let v1 = local
        .s3()
        .list_objects()
        .bucket("s3kv")
        .prefix("bulk/")
        .delimiter("")
        .send()
        .await
        .expect("ListObjects");
    assert_eq!(v1.contents().len(), AWKWARD.len(), "{v1:?}");
    assert!(v1.common_prefixes().is_empty(), "{v1:?}");
    // And with a delimiter, a page that is cut short says where the next begins.
    let v1 = local
        .s3()
        .list_objects()
        .bucket("s3kv")
        .prefix("bulk/")
        .delimiter("/")
        .max_keys(2)
        .send()
        .await
        .expect("ListObjects");
    assert_eq!(v1.is_truncated(), Some(true));
    assert!(v1.next_marker().is_some(), "{v1:?}");

    // ListObjectsV2 with encoding-type=url: keys percent-encoded, so that decoding gives each key back.
    let v2 = local
        .s3()
        .list_objects_v2()
        .bucket("s3kv")
        .prefix("bulk/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("ListObjectsV2");
    let mut keys: Vec<String> = v2
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_owned())
        .collect();
    keys.sort();
    assert!(keys.contains(&"bulk/a%20b.json".to_owned()), "{keys:?}");
    assert!(keys.contains(&"bulk/a%2Bb.json".to_owned()), "{keys:?}");
    assert!(keys.contains(&"bulk/c%2541.json".to_owned()), "{keys:?}");
    let mut decoded: Vec<String> = keys
        .iter()
        .map(|k| s3kv::percent::decode(k, s3kv::percent::Encoding::Form).unwrap())
        .collect();
    decoded.sort();
    let mut expected: Vec<String> = AWKWARD.iter().map(|k| format!("bulk/{k}")).collect();
    expected.sort();
    assert_eq!(decoded, expected);
    // ... and the same in v1.
    let v1 = local
        .s3()
        .list_objects()
        .bucket("s3kv")
        .prefix("bulk/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("ListObjects");
    assert!(v1
        .contents()
        .iter()
        .any(|o| o.key() == Some("bulk/a%2Bb.json")));
}

#[tokio::test]
async fn an_item_and_items_under_it_are_refused_clearly_not_retried() {
    let local = Local::start("collide", Tuning::default()).await;
    for (first, second) in [
        ("flags/d.json/e", "flags/d"),
        ("config/x", "config/x.json/y"),
    ] {
        let (status, body) = local.api("PUT", first, Some("{\"first\":true}")).await;
        assert!(status == 200 || status == 201, "{first}: {status} {body}");
        let (status, body) = local.api("PUT", second, Some("{}")).await;
        assert_eq!(status, 409, "PUT {second} after {first}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).expect(&body);
        assert_eq!(error["error"], "key_conflict", "{body}");
        assert_eq!(local.api("GET", second, None).await.0, 404, "GET {second}");
        let (status, body) = local.api("DELETE", second, None).await;
        assert!(
            status == 204 || status == 404,
            "DELETE {second}: {status} {body}"
        );
        let (status, _) = local.api("GET", first, None).await;
        assert_eq!(status, 200, "{first} is still there");
    }
    // Straight to the bucket: a 400 with S3's error shape, not a 500 that clients retry.
    let error = local
        .s3()
        .put_object()
        .bucket("s3kv")
        .key("flags/d.json")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await
        .expect_err("a key with keys under it");
    let raw = error.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(400), "{error:?}");
    let get = local
        .s3()
        .get_object()
        .bucket("s3kv")
        .key("flags/d.json")
        .send()
        .await
        .expect_err("no such object");
    assert_eq!(get.raw_response().map(|r| r.status().as_u16()), Some(404));
}

/// Sends `request` raw and reads until the server closes the connection; what it answered.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // A safety net only: the server's own (one-second) timeout is what closes the connection.
    let read = tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server held the connection for 60 s");
    String::from_utf8_lossy(&answer).into_owned()
}

fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_sending_are_timed_out_and_bad_requests_get_json() {
    let local = Local::start(
        "timeouts",
        Tuning {
            read_timeout: Duration::from_secs(1),
            ..Tuning::default()
        },
    )
    .await;
    let (api, s3) = (local.stack.api_addr, local.stack.s3_addr);

    // Half a request head, on both servers: closed.
    for addr in [api, s3] {
        let answer = raw(addr, b"GET /items/x HTTP/1.1\r\nHost: local\r\n").await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    // A whole head and half a body: the API answers 408 with JSON.
    let answer = raw(
        api,
        format!("PUT /items/slow HTTP/1.1\r\nHost: local\r\nx-api-key: {KEY}\r\nContent-Length: 100\r\n\r\n{{\"half\":").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(json_body(&answer)["error"], "body_timeout");

    // A malformed chunked body: 400, not 413.
    let answer = raw(
        api,
        format!("PUT /items/chunky HTTP/1.1\r\nHost: local\r\nx-api-key: {KEY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nnot hex\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(json_body(&answer)["error"], "malformed_body");

    // 10,000 query parameters: 414, with JSON.
    let query = "a=1&".repeat(10_000);
    let answer = raw(
        api,
        format!("GET /items/x?{query} HTTP/1.1\r\nHost: local\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 414"),
        "{}",
        &answer[..200.min(answer.len())]
    );
    assert_eq!(json_body(&answer)["error"], "uri_too_long");
}
