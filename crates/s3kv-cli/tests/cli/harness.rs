//! What every CLI test shares: a running s3kv-local ([`Local`]) and its API keys, `s3kv` run against it ([`Run`])
//! or left running in the background ([`Watch`]), a fake `$EDITOR`, and an upload around the API.

use std::path::Path;
use std::time::Duration;

use s3kv_local::testing::TestStack;

/// Keys as long as API Gateway requires (20 characters at least), as s3kv-local's command line does.
pub const KEY: &str = "cli-test-key-0123456789";
pub const READ_KEY: &str = "cli-read-key-0123456789";

/// The shared [`TestStack`] with the CLI's keys, and `s3kv` run against it.
pub struct Local(TestStack);

impl std::ops::Deref for Local {
    type Target = TestStack;
    fn deref(&self) -> &TestStack {
        &self.0
    }
}

impl Local {
    pub async fn start(name: &str) -> Self {
        Self(
            TestStack::start(&format!("cli-{name}"), |o| {
                o.api_key = Some(KEY.into());
                o.read_keys = vec![s3kv_local::KeySpec {
                    value: READ_KEY.into(),
                    prefixes: Vec::new(),
                }];
            })
            .await,
        )
    }

    /// Where s3kv-local serves push (what `watch` derives from [`TestStack::endpoint`] by itself).
    pub fn push_url(&self) -> String {
        self.stack.push_url()
    }

    /// Closes every push connection, as a lost network would.
    pub fn drop_push_connections(&self) {
        self.stack.drop_push_connections();
    }

    /// Push connections open now: a watch over push holds one.
    pub fn push_connections(&self) -> usize {
        self.stack.push.connections()
    }

    /// A write through the API from the test itself (no `s3kv` process): for writes in quick succession.
    pub async fn put(&self, key: &str, body: &str) {
        let path = format!("/items/{}", s3kv::percent::encode_path(key));
        let headers = [("content-type", "application/json")];
        let reply = self
            .send(http::Method::PUT, &path, Some(KEY), &headers, Some(body))
            .await;
        assert!(
            (200..300).contains(&reply.status),
            "PUT {key}: {}",
            reply.status
        );
    }

    /// Runs `s3kv ARGS` with this stack's endpoint and key in the environment, as a user would after pasting
    /// the banner's export lines.
    pub async fn s3kv(&self, args: &[&str]) -> Run {
        self.s3kv_with(args, None, &[]).await
    }

    pub async fn s3kv_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env("S3KV_ENDPOINT", self.endpoint())
            .env("S3KV_API_KEY", KEY)
            .env("S3KV_CONFIG_DIR", self.dir.join("config"))
            .env_remove("S3KV_PROFILE")
            .env_remove("S3KV_PUSH_URL")
            .env_remove("S3KV_PUSH_HOST")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("run s3kv");
        let mut input = child.stdin.take().unwrap();
        let text = stdin.unwrap_or_default().to_owned();
        // A command that fails before reading stdin closes it: nothing to report.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut input, text.as_bytes()).await;
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    args: Vec<String>,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "s3kv {:?}: {}{}",
            self.args, self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn fails(self, code: i32, says: &str) -> Self {
        assert_eq!(
            self.code, code,
            "s3kv {:?}: {}{}",
            self.args, self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(says),
            "s3kv {:?}: {:?} not in {}",
            self.args,
            says,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// A fake `$EDITOR`: a shell script that runs `action` with the file as $1.
pub fn editor(dir: &Path, name: &str, action: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{action}\n")).unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).unwrap();
    path.display().to_string()
}

/// A `s3kv watch` running in the background, read a line at a time: what it printed so far is how a test knows
/// it is watching before it writes.
pub struct Watch {
    pub child: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    /// What it said on stderr besides cursors (warnings), so far.
    pub said: Vec<String>,
    args: Vec<String>,
}

/// Only against a hang: a watch that missed a change would wait forever, not fail.
pub const HANG: Duration = Duration::from_secs(120);

impl Local {
    pub fn watch(&self, args: &[&str]) -> Watch {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"))
            .arg("watch")
            .args(args)
            .current_dir(&self.dir)
            .env("S3KV_ENDPOINT", self.endpoint())
            .env("S3KV_API_KEY", KEY)
            .env("S3KV_CONFIG_DIR", self.dir.join("config"))
            .env_remove("S3KV_PROFILE")
            .env_remove("S3KV_PUSH_URL")
            .env_remove("S3KV_PUSH_HOST")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run s3kv watch");
        use tokio::io::AsyncBufReadExt;
        Watch {
            stdout: tokio::io::BufReader::new(child.stdout.take().unwrap()).lines(),
            stderr: tokio::io::BufReader::new(child.stderr.take().unwrap()).lines(),
            child,
            said: Vec::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

impl Watch {
    /// The next line on stdout, as JSON.
    pub async fn line(&mut self) -> serde_json::Value {
        let line = self.raw_line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// The next line on stdout as printed, for values that must be byte for byte.
    pub async fn raw_line(&mut self) -> String {
        tokio::time::timeout(HANG, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("s3kv watch {:?} printed nothing", self.args))
            .unwrap()
            .unwrap_or_else(|| panic!("s3kv watch {:?} ended", self.args))
    }

    /// The next line on stderr other than a cursor (a warning, a note).
    pub async fn said_line(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(HANG, self.stderr.next_line())
                .await
                .unwrap_or_else(|_| panic!("s3kv watch {:?} said nothing", self.args))
                .unwrap()
                .unwrap_or_else(|| panic!("s3kv watch {:?} ended", self.args));
            assert!(!line.contains("panicked"), "{line}");
            if !line.starts_with("cursor: ") {
                return line;
            }
        }
    }

    /// The cursor of the next `cursor: C` line on stderr (after any warnings).
    pub async fn cursor(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(HANG, self.stderr.next_line())
                .await
                .unwrap_or_else(|_| panic!("s3kv watch {:?} told no cursor", self.args))
                .unwrap()
                .unwrap_or_else(|| panic!("s3kv watch {:?} ended", self.args));
            assert!(!line.contains("panicked"), "{line}");
            match line.strip_prefix("cursor: ") {
                Some(cursor) => return cursor.to_owned(),
                None => self.said.push(line),
            }
        }
    }

    /// Waits for it to exit by itself (`--once`): its exit code and the rest of stdout, one JSON value a line.
    pub async fn ends(mut self) -> (i32, Vec<serde_json::Value>) {
        let status = tokio::time::timeout(HANG, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("s3kv watch {:?} did not end", self.args))
            .unwrap();
        let mut rest = Vec::new();
        while let Some(line) = self.stdout.next_line().await.unwrap() {
            rest.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
        (status.code().unwrap_or(-1), rest)
    }
}

/// Straight to s3kv-local's S3 endpoint, around the API and its schema check: what `validate` is for.
pub async fn upload(local: &Local, object_key: &str, body: &str) {
    local.upload_object(object_key, body.as_bytes()).await;
}

/// One call of an AWS JSON-protocol API on moto (`target` as in `X-Amz-Target`), not signed: moto does not check
/// signatures, and tells the service by the credential scope (`scope`: `sqs`, `monitoring`, ...).
pub async fn moto_json(
    moto: &str,
    scope: &str,
    target: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("{moto}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", target)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/{scope}/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{target}: {}",
        response.status()
    );
    serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or_default()
}

/// AWS credentials and region for `s3kv` calling moto or a stand-in, with no profile files (`missing` names a
/// file that does not exist) and no instance metadata; `endpoints` adds `AWS_ENDPOINT_URL_*` overrides.
pub fn aws_env<'a>(missing: &'a str, endpoints: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", missing),
        ("AWS_SHARED_CREDENTIALS_FILE", missing),
    ];
    env.extend_from_slice(endpoints);
    env
}
