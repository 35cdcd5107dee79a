//! `import` and `export`: 1,000 files in and back out exactly, a dry run, and a bad file that stops it all.

use std::path::PathBuf;

use crate::harness::Local;

/// 1,000 files under `seed/` (`bulk/NN/item-NNNN.json`), and what an export of them must hold.
fn seed(local: &Local) -> (PathBuf, serde_json::Map<String, serde_json::Value>) {
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
    (source, expected)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_checks_every_file_and_writes_nothing() {
    let local = Local::start("import-dry").await;
    let (source, _) = seed(&local);
    let dir = source.display().to_string();
    let dry = local.s3kv(&["import", &dir, "--dry-run"]).await.ok();
    assert!(
        dry.stdout.contains("would import 1000 items"),
        "{}",
        dry.stdout
    );
    let listed = local.s3kv(&["ls", "bulk/"]).await.ok();
    assert_eq!(listed.stdout, "", "a dry run writes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_files_import_and_export_back_exactly() {
    let local = Local::start("import").await;
    let (source, expected) = seed(&local);
    let dir = source.display().to_string();
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
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_file_stops_the_whole_import_before_anything_is_written() {
    let local = Local::start("import-bad").await;
    let (source, _) = seed(&local);
    let dir = source.display().to_string();
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
