//! The real `s3kv` binary against a running s3kv-local (its S3 endpoint, syncer, API and a valkey-server): every
//! command, its output and exit code, `edit` racing a concurrent write, and an import of 1,000 files. Here rather
//! than in tests/it because only a package's own tests are told where its binary is (CARGO_BIN_EXE_s3kv).

use std::path::{Path, PathBuf};
use std::time::Duration;

use s3kv_local::{LocalStack, Options};

const KEY: &str = "cli-test-key";
const READ_KEY: &str = "cli-read-key";

struct Local {
    stack: LocalStack,
    _valkey: testkit::Valkey,
    dir: PathBuf,
}

impl Local {
    async fn start(name: &str) -> Self {
        let dir = testkit::temp_dir(&format!("test-cli-{name}"));
        let valkey = tokio::task::spawn_blocking(testkit::Valkey::start)
            .await
            .unwrap();
        let options = Options {
            api_addr: "127.0.0.1:0".parse().unwrap(),
            s3_addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.join("data"),
            bucket: "s3kv".into(),
            prefix: String::new(),
            api_key: Some(KEY.into()),
            read_keys: vec![s3kv_local::KeySpec {
                value: READ_KEY.into(),
                prefixes: Vec::new(),
            }],
            write_keys: Vec::new(),
            public_prefix: None,
            max_wait_secs: s3kv::config::MAX_WAIT_SECS,
            valkey_url: Some(valkey.url()),
        };
        let stack = LocalStack::start(options)
            .await
            .expect("local stack starts");
        Self {
            stack,
            _valkey: valkey,
            dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.stack.api_addr)
    }

    /// Runs `s3kv ARGS` with this stack's endpoint and key in the environment, as a user would after pasting
    /// the banner's export lines.
    async fn s3kv(&self, args: &[&str]) -> Run {
        self.s3kv_with(args, None, &[]).await
    }

    async fn s3kv_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env("S3KV_ENDPOINT", self.endpoint())
            .env("S3KV_API_KEY", KEY)
            .env("S3KV_CONFIG_DIR", self.dir.join("config"))
            .env_remove("S3KV_PROFILE")
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

    async fn settle(&self) {
        assert!(
            self.stack.backlog.wait_idle(Duration::from_secs(30)).await,
            "notifications not synced"
        );
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    args: Vec<String>,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "s3kv {:?}: {}{}",
            self.args, self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    fn fails(self, code: i32, says: &str) -> Self {
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
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_does_what_it_says_and_exits_with_its_code() {
    let local = Local::start("commands").await;
    std::fs::write(local.dir.join("flag.json"), r#"{"enabled": true}"#).unwrap();

    // The banner's export line sets exactly what these runs use.
    let banner = local.stack.banner();
    let export = banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("export "))
        .expect("an export line in the banner");
    let expected = format!("S3KV_ENDPOINT={} S3KV_API_KEY={KEY}", local.endpoint());
    assert_eq!(export, expected);

    // put from a file, then from stdin; get prints exactly what was stored.
    let created = local
        .s3kv(&["put", "flags/maintenance", "flag.json"])
        .await
        .ok();
    assert!(
        created.stdout.starts_with("created flags/maintenance"),
        "{}",
        created.stdout
    );
    local.settle().await;
    let got = local
        .s3kv(&["get", "flags/maintenance", "--etag"])
        .await
        .ok();
    assert_eq!(got.stdout, "{\"enabled\": true}");
    assert!(got.stderr.starts_with("ETag: "), "{}", got.stderr);
    let first_etag = got.stderr.trim().trim_start_matches("ETag: ").to_owned();
    let replaced = local
        .s3kv_with(
            &["put", "flags/maintenance", "-"],
            Some("{\"enabled\": false}"),
            &[],
        )
        .await
        .ok();
    assert!(
        replaced.stdout.starts_with("replaced"),
        "{}",
        replaced.stdout
    );
    local.settle().await;
    let json = local
        .s3kv(&["get", "flags/maintenance", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json["value"], serde_json::json!({"enabled": false}));
    assert!(
        json["writer"].as_str().unwrap().starts_with("key=local0"),
        "{json}"
    );

    // Conditions: exit 4 when they do not hold, and nothing changes.
    local
        .s3kv(&["put", "flags/maintenance", "flag.json", "--create"])
        .await
        .fails(4, "already exists");
    local
        .s3kv(&[
            "put",
            "flags/maintenance",
            "flag.json",
            "--if-match",
            &first_etag,
        ])
        .await
        .fails(4, "ETag");
    // Refused before sending: a value that is not JSON, a key breaking the rules (exit 2).
    local
        .s3kv_with(&["put", "flags/maintenance"], Some("{not json"), &[])
        .await
        .fails(2, "not valid JSON");
    local.s3kv(&["get", "a//b"]).await.fails(2, "invalid key");
    local.settle().await;
    let still = local.s3kv(&["get", "flags/maintenance"]).await.ok();
    assert_eq!(still.stdout, "{\"enabled\": false}");

    // ls, ls --long, batch-get.
    local
        .s3kv_with(&["put", "flags/beta"], Some("[1,2]"), &[])
        .await
        .ok();
    local
        .s3kv_with(&["put", "config/ui"], Some("{}"), &[])
        .await
        .ok();
    local.settle().await;
    let listed = local.s3kv(&["ls", "flags/"]).await.ok();
    assert_eq!(listed.stdout, "flags/beta\nflags/maintenance\n");
    let long = local.s3kv(&["ls", "--long"]).await.ok();
    assert_eq!(long.stdout.lines().count(), 3);
    assert!(
        long.stdout
            .lines()
            .all(|l| l.split_whitespace().count() == 4),
        "{}",
        long.stdout
    );
    let batch = local
        .s3kv(&["batch-get", "flags/beta", "nope", "config/ui"])
        .await
        .ok();
    let batch: serde_json::Value = serde_json::from_str(&batch.stdout).unwrap();
    assert_eq!(
        batch,
        serde_json::json!({"flags/beta": [1, 2], "nope": null, "config/ui": {}})
    );

    // history and restore.
    let history = local
        .s3kv(&["history", "flags/maintenance", "--output", "json"])
        .await
        .ok()
        .json();
    let versions = history.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let oldest = versions[1]["version"].as_str().unwrap().to_owned();
    let text = local.s3kv(&["history", "flags/maintenance"]).await.ok();
    assert!(
        text.stdout.lines().next().unwrap().starts_with("* "),
        "{}",
        text.stdout
    );
    local
        .s3kv(&["restore", "flags/maintenance", &oldest])
        .await
        .ok();
    local.settle().await;
    let restored = local.s3kv(&["get", "flags/maintenance"]).await.ok();
    assert_eq!(restored.stdout, "{\"enabled\": true}");
    let old = local
        .s3kv(&["get", "flags/maintenance", "--version", &oldest])
        .await
        .ok();
    assert_eq!(old.stdout, "{\"enabled\": true}");
    local
        .s3kv(&["restore", "flags/maintenance", "0000000042"])
        .await
        .fails(3, "no version");

    // rm, and what is not there: exit 3 with the API's message.
    local.s3kv(&["rm", "flags/beta"]).await.ok();
    local.settle().await;
    local
        .s3kv(&["get", "flags/beta"])
        .await
        .fails(3, "no item with key");
    local
        .s3kv(&["rm", "flags/beta"])
        .await
        .fails(3, "no item with key");

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
    let down = local
        .s3kv_with(
            &["get", "config/ui"],
            None,
            &[("S3KV_ENDPOINT", "http://127.0.0.1:9")],
        )
        .await;
    assert_eq!(down.code, 1, "{}", down.stderr);
    assert!(down.stderr.contains("cannot reach"), "{}", down.stderr);

    // Profiles: configure, then use with nothing else set; an unknown profile is a usage error.
    let endpoint = local.endpoint();
    local
        .s3kv_with(
            &["configure", "--profile", "dev", &endpoint],
            Some(KEY),
            &[],
        )
        .await
        .ok();
    let saved = local.dir.join("config/profiles.json");
    let mode = std::fs::metadata(&saved).unwrap().permissions();
    let mode = std::os::unix::fs::PermissionsExt::mode(&mode);
    assert_eq!(mode & 0o777, 0o600, "the profile file holds keys");
    local
        .s3kv_with(&["configure", "x"], Some(KEY), &[])
        .await
        .fails(2, "http");
    local
        .s3kv_with(&["configure", &endpoint], Some(""), &[])
        .await
        .fails(2, "no API key");
    // A profile's key is not sent to an endpoint given otherwise: the gateway's 403, not the profile's key.
    let mut elsewhere = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"));
    elsewhere
        .args([
            "--profile",
            "dev",
            "--endpoint",
            &format!("http://{}", local.stack.api_addr).replace("127.0.0.1", "localhost"),
            "get",
            "config/ui",
        ])
        .env("S3KV_CONFIG_DIR", local.dir.join("config"))
        .env_remove("S3KV_ENDPOINT")
        .env_remove("S3KV_API_KEY");
    let out = elsewhere.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));
    let env = [("S3KV_ENDPOINT", ""), ("S3KV_API_KEY", "")];
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"));
    command
        .args(["--profile", "dev", "get", "config/ui"])
        .env("S3KV_CONFIG_DIR", local.dir.join("config"));
    for (name, _) in env {
        command.env_remove(name);
    }
    let out = command.output().await.unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "{}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    local
        .s3kv(&["--profile", "nope", "ls"])
        .await
        .fails(2, "no profile");

    // Usage and completions.
    local.s3kv(&[]).await.fails(2, "Usage");
    let completions = local.s3kv(&["completions", "bash"]).await.ok();
    assert!(
        completions.stdout.contains("_s3kv()"),
        "{}",
        completions.stdout
    );
}

/// A fake `$EDITOR`: a shell script that runs `action` with the file as $1.
fn editor(dir: &Path, name: &str, action: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{action}\n")).unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_writes_back_only_what_nobody_changed_meanwhile() {
    let local = Local::start("edit").await;
    local
        .s3kv_with(&["put", "cfg/app"], Some(r#"{"v": 1}"#), &[])
        .await
        .ok();
    local.settle().await;

    // A plain edit: written back.
    let bump = editor(&local.dir, "bump.sh", r#"printf '{"v": 2}' > "$1""#);
    local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &bump)])
        .await
        .ok();
    local.settle().await;
    assert_eq!(
        local.s3kv(&["get", "cfg/app"]).await.ok().stdout,
        "{\"v\": 2}"
    );

    // Someone writes while the editor is open: the edit is refused (exit 4), and theirs stays.
    let binary = env!("CARGO_BIN_EXE_s3kv");
    let racing = editor(
        &local.dir,
        "race.sh",
        &format!(
            "printf '{{\"v\": \"mine\"}}' > \"$1\"\necho '{{\"v\": \"theirs\"}}' | {binary} put cfg/app -"
        ),
    );
    let raced = local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &racing)])
        .await
        .fails(4, "changed while you were editing");
    assert!(
        raced.stderr.contains("theirs"),
        "it shows the current version: {}",
        raced.stderr
    );
    local.settle().await;
    assert_eq!(
        local.s3kv(&["get", "cfg/app"]).await.ok().stdout,
        "{\"v\": \"theirs\"}\n"
    );

    // An edit that breaks the JSON writes nothing; one that changes nothing writes nothing either.
    let broken = editor(&local.dir, "broken.sh", r#"printf '{"v": ' > "$1""#);
    local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &broken)])
        .await
        .fails(2, "not valid JSON");
    let nothing = editor(&local.dir, "nothing.sh", "true");
    let unchanged = local
        .s3kv_with(&["edit", "cfg/app"], None, &[("EDITOR", &nothing)])
        .await
        .ok();
    assert!(
        unchanged.stderr.contains("no change"),
        "{}",
        unchanged.stderr
    );
    let history = local
        .s3kv(&["history", "cfg/app", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        history.as_array().unwrap().len(),
        3,
        "put, edit, their write: {history}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_files_import_and_export_back_exactly() {
    let local = Local::start("import").await;
    let source = local.dir.join("seed");
    let mut expected = serde_json::Map::new();
    for n in 0..1000 {
        let key = format!("bulk/{:02}/item-{n:04}", n % 10);
        let path = source.join(format!("{key}.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let body = format!("{{\"n\": {n}, \"name\": \"item {n}\"}}");
        std::fs::write(&path, &body).unwrap();
        expected.insert(key, serde_json::from_str(&body).unwrap());
    }
    let dir = source.display().to_string();
    let dry = local.s3kv(&["import", &dir, "--dry-run"]).await.ok();
    assert!(
        dry.stdout.contains("would import 1000 items"),
        "{}",
        dry.stdout
    );
    let listed = local.s3kv(&["ls", "bulk/"]).await.ok();
    assert_eq!(listed.stdout, "", "a dry run writes nothing");

    let summary = local
        .s3kv(&["import", &dir, "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        summary,
        serde_json::json!({"created": 1000, "replaced": 0, "skipped": 0, "failed": 0})
    );
    local.settle().await;
    let export = local.s3kv(&["export", "bulk/"]).await.ok();
    let exported: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&export.stdout).unwrap();
    assert_eq!(exported, expected);

    // The export imports back; --create-only skips what exists.
    std::fs::write(local.dir.join("dump.json"), &export.stdout).unwrap();
    let again = local
        .s3kv(&["import", "dump.json", "--create-only"])
        .await
        .ok();
    assert!(again.stdout.contains("1000 skipped"), "{}", again.stdout);

    // One bad file stops the whole import before anything is written.
    std::fs::write(source.join("bulk/00/zz-broken.json"), "{").unwrap();
    std::fs::write(source.join("bulk/00/new.json"), "{}").unwrap();
    local
        .s3kv(&["import", &dir])
        .await
        .fails(2, "zz-broken.json");
    local.settle().await;
    local
        .s3kv(&["get", "bulk/00/new"])
        .await
        .fails(3, "no item");
}

/// A `s3kv watch` running in the background, read a line at a time: what it printed so far is how a test knows
/// it is watching before it writes.
struct Watch {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    /// What it said on stderr besides cursors (warnings), so far.
    said: Vec<String>,
    args: Vec<String>,
}

/// Only against a hang: a watch that missed a change would wait forever, not fail.
const HANG: Duration = Duration::from_secs(120);

impl Local {
    fn watch(&self, args: &[&str]) -> Watch {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_s3kv"))
            .arg("watch")
            .args(args)
            .current_dir(&self.dir)
            .env("S3KV_ENDPOINT", self.endpoint())
            .env("S3KV_API_KEY", KEY)
            .env("S3KV_CONFIG_DIR", self.dir.join("config"))
            .env_remove("S3KV_PROFILE")
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
    async fn line(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(HANG, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("s3kv watch {:?} printed nothing", self.args))
            .unwrap()
            .unwrap_or_else(|| panic!("s3kv watch {:?} ended", self.args));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// The cursor of the next `cursor: C` line on stderr (after any warnings).
    async fn cursor(&mut self) -> String {
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
    async fn ends(mut self) -> (i32, Vec<serde_json::Value>) {
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

#[tokio::test(flavor = "multi_thread")]
async fn watch_prints_an_item_each_time_it_changes_deleted_and_back() {
    let local = Local::start("watch-item").await;
    local
        .s3kv_with(&["put", "flags/maintenance"], Some(r#"{"on": false}"#), &[])
        .await
        .ok();
    local.settle().await;

    // --once: the state it starts from, then blocks until a write changes it, prints that and exits 0.
    let mut once = local.watch(&["flags/maintenance", "--once"]);
    let first = once.line().await;
    assert_eq!(first["key"], "flags/maintenance");
    assert_eq!(first["value"], serde_json::json!({"on": false}));
    let first_etag = first["etag"].as_str().unwrap().to_owned();
    // Pretty-printed on the way in, one line on the way out: every change is one line of stdout.
    local
        .s3kv_with(
            &["put", "flags/maintenance"],
            Some("{\n  \"on\": true,\n  \"why\": \"a b\"\n}\n"),
            &[],
        )
        .await
        .ok();
    let (code, rest) = once.ends().await;
    assert_eq!(code, 0);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["key"], "flags/maintenance");
    assert_eq!(
        rest[0]["value"],
        serde_json::json!({"on": true, "why": "a b"})
    );
    assert_ne!(rest[0]["etag"], first_etag.as_str());
    assert!(
        rest[0]["writer"]
            .as_str()
            .unwrap()
            .starts_with("key=local0"),
        "{}",
        rest[0]
    );
    local.settle().await;

    // Without --once it goes on: a delete, then the item back again.
    let mut watch = local.watch(&["flags/maintenance"]);
    assert_eq!(watch.line().await["value"]["on"], true);
    local.s3kv(&["rm", "flags/maintenance"]).await.ok();
    assert_eq!(
        watch.line().await,
        serde_json::json!({"key": "flags/maintenance", "deleted": true})
    );
    // Keys the prefix KEY also covers are not this item.
    local
        .s3kv_with(&["put", "flags/maintenance-window"], Some("1"), &[])
        .await
        .ok();
    local
        .s3kv_with(
            &["put", "flags/maintenance"],
            Some(r#"{"on": "again"}"#),
            &[],
        )
        .await
        .ok();
    let back = watch.line().await;
    assert_eq!(back["key"], "flags/maintenance");
    assert_eq!(back["value"], serde_json::json!({"on": "again"}));
    watch.child.kill().await.unwrap();

    // An item that does not exist yet: watched until it does.
    let mut absent = local.watch(&["flags/new", "--once"]);
    assert_eq!(
        absent.line().await,
        serde_json::json!({"key": "flags/new", "deleted": true})
    );
    local
        .s3kv_with(&["put", "flags/new"], Some("[1]"), &[])
        .await
        .ok();
    let (code, rest) = absent.ends().await;
    assert_eq!(code, 0);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["value"], serde_json::json!([1]));

    // Refused before anything is sent: an invalid key, and the feed's options on one item.
    local.s3kv(&["watch", "a//b"]).await.fails(2, "invalid key");
    local
        .s3kv(&["watch", "flags/new", "--after", "x"])
        .await
        .fails(2, "cannot be used with");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prefix_prints_what_changes_under_it_and_resumes_from_its_cursor() {
    let local = Local::start("watch-prefix").await;

    // From now: a write outside the prefix first, then one under it; only that one is printed.
    let mut once = local.watch(&["--prefix", "flags/", "--once"]);
    let start = once.cursor().await;
    local
        .s3kv_with(&["put", "config/ui"], Some("{}"), &[])
        .await
        .ok();
    local
        .s3kv_with(&["put", "flags/beta"], Some("true"), &[])
        .await
        .ok();
    let printed = once.cursor().await;
    let (code, lines) = once.ends().await;
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["key"], "flags/beta");
    assert_eq!(lines[0]["deleted"], false);
    assert!(lines[0]["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert_ne!(printed, start);
    local.settle().await;

    // --after the first cursor, over every prefix: both writes, at once.
    let resumed = local.watch(&["--prefix", "", "--after", &start, "--once"]);
    let (code, lines) = resumed.ends().await;
    assert_eq!(code, 0);
    let mut keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["config/ui", "flags/beta"]);

    // --cursor-file: kept after each batch, and where the next run goes on from; a delete is a change too.
    let file = local.dir.join("flags.cursor");
    let file_arg = file.display().to_string();
    let mut first = local.watch(&["--prefix", "flags/", "--cursor-file", &file_arg, "--once"]);
    first.cursor().await;
    local
        .s3kv_with(&["put", "flags/gamma"], Some("1"), &[])
        .await
        .ok();
    let last = first.cursor().await;
    let (code, lines) = first.ends().await;
    assert_eq!((code, lines.len()), (0, 1), "{lines:?}");
    assert_eq!(lines[0]["key"], "flags/gamma");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), last);
    local.s3kv(&["rm", "flags/beta"]).await.ok();
    local.settle().await;
    let next = local.watch(&["--prefix", "flags/", "--cursor-file", &file_arg, "--once"]);
    let (code, lines) = next.ends().await;
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        [serde_json::json!({"key": "flags/beta", "etag": null, "deleted": true})]
    );

    // A cursor the feed no longer holds (here: one beyond its end): a warning that changes were missed, then on
    // from the cursor the API gives back.
    let mut expired = local.watch(&[
        "--prefix",
        "flags/",
        "--after",
        "99999999999999-0",
        "--once",
    ]);
    assert_eq!(expired.cursor().await, "99999999999999-0");
    let restart = expired.cursor().await;
    assert_ne!(restart, "99999999999999-0");
    assert!(
        expired.said.iter().any(|l| l.contains("were missed")),
        "{:?}",
        expired.said
    );
    local
        .s3kv_with(&["put", "flags/delta"], Some("2"), &[])
        .await
        .ok();
    let (code, lines) = expired.ends().await;
    assert_eq!((code, lines.len()), (0, 1), "{lines:?}");
    assert_eq!(lines[0]["key"], "flags/delta");

    // A cursor the API never gave: its 400, exit 1, not retried forever.
    local
        .s3kv(&["watch", "--prefix", "flags/", "--after", "nonsense"])
        .await
        .fails(1, "not a cursor");
}

/// Straight to s3kv-local's S3 endpoint, around the API and its schema check: what `validate` is for.
async fn upload(local: &Local, object_key: &str, body: &str) {
    let s3 = s3kv::adapters::s3::endpoint_client(
        &format!("http://{}", local.stack.s3_addr),
        s3kv_local::ACCESS_KEY,
        s3kv_local::SECRET_KEY,
        Duration::from_secs(10),
    );
    s3.put_object()
        .bucket(&local.stack.bucket)
        .key(object_key)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            body.as_bytes().to_vec(),
        ))
        .send()
        .await
        .expect("upload to the local S3 endpoint");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_names_exactly_the_items_that_break_their_schema() {
    let local = Local::start("validate").await;
    let schema = r#"{"type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}}}"#;
    std::fs::write(local.dir.join("flags.schema.json"), schema).unwrap();

    // The schema subcommands: put (a trailing `/` survives the trip), ls, get exactly as stored, conditions.
    let created = local
        .s3kv(&["schema", "put", "flags/", "flags.schema.json", "--create"])
        .await
        .ok();
    assert!(
        created.stdout.starts_with("created schema flags/ (etag "),
        "{}",
        created.stdout
    );
    assert_eq!(local.s3kv(&["schema", "ls"]).await.ok().stdout, "flags/\n");
    let got = local
        .s3kv(&["schema", "get", "flags/", "--etag"])
        .await
        .ok();
    assert_eq!(got.stdout, schema);
    let etag = got.stderr.trim().trim_start_matches("ETag: ").to_owned();
    let json = local
        .s3kv(&["schema", "get", "flags/", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(json["prefix"], "flags/");
    assert_eq!(json["etag"], etag.as_str());
    assert_eq!(json["schema"]["required"], serde_json::json!(["enabled"]));
    local
        .s3kv(&["schema", "put", "flags/", "flags.schema.json", "--create"])
        .await
        .fails(4, "");
    local
        .s3kv_with(
            &["schema", "put", "flags/", "-", "--if-match", &etag],
            Some(schema),
            &[],
        )
        .await
        .ok();
    local
        .s3kv_with(&["schema", "put", "flags/"], Some(r#"{"type": 7}"#), &[])
        .await
        .fails(1, "JSON Schema");
    local
        .s3kv(&["schema", "get", "nothing/"])
        .await
        .fails(3, "");
    local
        .s3kv(&["schema", "get", "a//"])
        .await
        .fails(2, "invalid prefix");

    // A valid item through the API, one the API refuses, the same uploaded around it, one under no schema.
    local
        .s3kv_with(&["put", "flags/good"], Some(r#"{"enabled": true}"#), &[])
        .await
        .ok();
    local
        .s3kv_with(&["put", "flags/bad"], Some(r#"{"enabled": "yes"}"#), &[])
        .await
        .fails(1, "schema");
    upload(&local, "flags/bad.json", r#"{"enabled": "yes"}"#).await;
    local
        .s3kv_with(&["put", "notes/free"], Some(r#"{"anything": 1}"#), &[])
        .await
        .ok();
    local.settle().await;

    let found = local.s3kv(&["validate"]).await.fails(
        1,
        "checked 2 items under 1 schema: 1 invalid, 1 under no schema",
    );
    assert_eq!(
        found.stdout,
        "flags/bad: /enabled: \"yes\" is not of type \"boolean\" (schema flags/, at /properties/enabled/type)\n"
    );
    assert!(
        found.stderr.contains("1 item breaks its schema"),
        "{}",
        found.stderr
    );
    let json = local
        .s3kv(&["validate", "--output", "json"])
        .await
        .fails(1, "\"invalid\":1");
    assert_eq!(
        json.json(),
        serde_json::json!({"key": "flags/bad", "schema": "flags/", "violations": [{
            "path": "/enabled",
            "schemaPath": "/properties/enabled/type",
            "message": "\"yes\" is not of type \"boolean\"",
        }]})
    );

    // Narrowed: only what is under PREFIX, and only the schemas that govern it.
    let narrowed = local.s3kv(&["validate", "flags/g"]).await.ok();
    assert_eq!(narrowed.stdout, "");
    assert!(
        narrowed
            .stderr
            .contains("checked 1 item under 1 schema: 0 invalid, 0 under no schema"),
        "{}",
        narrowed.stderr
    );
    let elsewhere = local.s3kv(&["validate", "notes/"]).await.ok();
    assert!(
        elsewhere
            .stderr
            .contains("checked 0 items under 0 schemas: 0 invalid, 1 under no schema"),
        "{}",
        elsewhere.stderr
    );

    // Schemas are for write keys: a read key is told which key validate needs.
    local
        .s3kv_with(&["validate"], None, &[("S3KV_API_KEY", READ_KEY)])
        .await
        .fails(1, "validate needs a write key");
    local
        .s3kv_with(&["schema", "ls"], None, &[("S3KV_API_KEY", READ_KEY)])
        .await
        .fails(1, "needs a write key");

    // A schema uploaded by hand that does not compile: reported, its items not checked, exit 1; then removed.
    let broken = s3kv::key::KeyMap::new("", "")
        .schema_object_key(&s3kv::key::KeyPrefix::parse("notes/").unwrap());
    upload(&local, &broken, r#"{"type": "nope"}"#).await;
    let problem = local
        .s3kv(&["validate", "notes/"])
        .await
        .fails(1, "1 schema does not compile");
    assert!(
        problem
            .stdout
            .starts_with("schema notes/: does not compile: "),
        "{}",
        problem.stdout
    );
    assert!(
        problem.stderr.contains("1 not checked"),
        "{}",
        problem.stderr
    );
    let listed = local.s3kv(&["schema", "ls"]).await.ok();
    assert!(
        listed.stdout.contains("notes/  (does not compile: "),
        "{}",
        listed.stdout
    );
    let deleted = local.s3kv(&["schema", "rm", "notes/"]).await.ok();
    assert_eq!(deleted.stdout, "deleted schema notes/\n");

    // Fixed through the API: everything meets its schema, exit 0.
    local
        .s3kv_with(&["put", "flags/bad"], Some(r#"{"enabled": false}"#), &[])
        .await
        .ok();
    local.settle().await;
    let clean = local.s3kv(&["validate"]).await.ok();
    assert_eq!(clean.stdout, "");
    assert!(
        clean
            .stderr
            .contains("checked 2 items under 1 schema: 0 invalid, 1 under no schema"),
        "{}",
        clean.stderr
    );
}

/// What `get --output json`, `batch-get` and `export` print holds each value exactly as stored: numbers past f64,
/// `-0`, member order and spacing (issue #30: the JSON output re-read values as `serde_json::Value`).
#[tokio::test(flavor = "multi_thread")]
async fn json_output_and_exports_carry_values_exactly_as_stored() {
    let local = Local::start("exact").await;
    let doc = r#"{"n": 1e400, "b": [1E2, -0, 123456789012345678901234567890], "a": "\ud800"}"#;
    local
        .s3kv_with(&["put", "exact/doc", "-"], Some(doc), &[])
        .await
        .ok();
    local.settle().await;
    let got = local
        .s3kv(&["get", "exact/doc", "--output", "json"])
        .await
        .ok();
    assert!(
        got.stdout.contains(&format!("\"value\":{doc}")),
        "{}",
        got.stdout
    );
    let many = local.s3kv(&["batch-get", "exact/doc"]).await.ok();
    assert!(many.stdout.contains(doc), "{}", many.stdout);
    let export = local.s3kv(&["export", "exact/"]).await.ok();
    assert!(
        export.stdout.contains(&format!("\"exact/doc\": {doc}")),
        "{}",
        export.stdout
    );
}
