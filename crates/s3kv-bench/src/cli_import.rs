//! `s3kv import` of N items (`S3KV_BENCH_IMPORT_ITEMS`, 1000) through s3kv-local's API, against the baseline of
//! copying the same files straight to its S3 endpoint with `aws s3 cp --recursive`: what the API, its checks
//! and the CLI cost over a bulk upload. Each round writes new keys (both tools create, neither replaces), and the
//! import is checked afterwards: every item readable with its exact bytes.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::data::json_body;
use crate::procs::start_valkey;
use crate::propagation::start_s3kv_local;
use crate::report::Metrics;
use crate::settings::{release_binary, Settings};
use crate::READ_BODY_BYTES;

const SECTION: &str = "Bulk import through s3kv-local (the CLI against aws s3 cp)";

pub(crate) async fn cli_import(settings: &Settings, tmp: &Path, m: &mut Metrics) {
    let items: usize = std::env::var("S3KV_BENCH_IMPORT_ITEMS")
        .ok()
        .map(|n| n.parse().expect("S3KV_BENCH_IMPORT_ITEMS: a number"))
        .unwrap_or(1000);
    let aws = testkit::program("S3KV_AWS_CLI", "aws").unwrap_or_else(|e| panic!("{e}"));
    let s3kv = release_binary("s3kv");
    eprintln!("bulk import: {items} items, s3kv import against aws s3 cp");
    let valkey = start_valkey();
    let (mut local, api, s3_endpoint) = start_s3kv_local(&tmp.join("import"), &valkey).await;
    let (mut cli_secs, mut aws_secs) = (Vec::new(), Vec::new());
    for round in 0..settings.rounds.max(1) {
        // Files under <dir>/<tool><round>/, so the keys are new in every round.
        let dir = tmp.join(format!("import-files-{round}"));
        for tool in ["cli", "aws"] {
            for i in 0..items {
                let path = dir
                    .join(tool)
                    .join(format!("{tool}{round}/item-{i:05}.json"));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, json_body(tool, i, READ_BODY_BYTES)).unwrap();
            }
        }
        let run = |command: &mut Command| {
            let started = Instant::now();
            let out = command.output().expect("run");
            assert!(
                out.status.success(),
                "{command:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            (
                started.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (secs, summary) = run(Command::new(&s3kv)
            .args(["import", "--output", "json"])
            .arg(dir.join("cli"))
            .env("S3KV_ENDPOINT", &api)
            .env("S3KV_API_KEY", "bench-key-0123456789ab"));
        let summary: serde_json::Value = serde_json::from_str(&summary).expect("import summary");
        assert_eq!(summary["created"], items, "{summary}");
        cli_secs.push(secs);
        let (secs, _) = run(Command::new(&aws)
            .args([
                "--endpoint-url",
                &s3_endpoint,
                "s3",
                "cp",
                "--recursive",
                "--quiet",
            ])
            .arg(dir.join("aws"))
            .arg("s3://s3kv/")
            .env("AWS_ACCESS_KEY_ID", s3kv_local::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3kv_local::SECRET_KEY)
            .env("AWS_DEFAULT_REGION", s3kv_local::REGION)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"));
        aws_secs.push(secs);
        // Every imported item is there, exactly.
        let (_, exported) = run(Command::new(&s3kv)
            .args(["export", &format!("cli{round}/")])
            .env("S3KV_ENDPOINT", &api)
            .env("S3KV_API_KEY", "bench-key-0123456789ab"));
        let exported: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&exported).expect("export");
        assert_eq!(exported.len(), items, "export of round {round}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(status) = local.exited() {
        panic!("s3kv-local exited with {status}: {}", local.output());
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (cli, aws) = (best(&cli_secs), best(&aws_secs));
    m.add(
        SECTION,
        "import.cli.seconds",
        &format!("s3kv import, {items} files (16 in flight)"),
        "s",
        cli,
    );
    m.add(
        SECTION,
        "import.aws.seconds",
        &format!("aws s3 cp --recursive, the same {items} files (baseline)"),
        "s",
        aws,
    );
    m.add(
        SECTION,
        "import.ratio",
        "s3kv import time / aws s3 cp time",
        "x",
        cli / aws,
    );
    m.add(
        SECTION,
        "import.cli.rate",
        "s3kv import: items per second",
        "/s",
        items as f64 / cli,
    );
    drop(local);
    drop(valkey);
}
