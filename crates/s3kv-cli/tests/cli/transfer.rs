//! `import` and `export`: 1,000 files in and back out exactly, a dry run, and a bad file that stops it all;
//! `export --snapshot`: the snapshot file the TypeScript client serves from, values byte for byte with their ETags.

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

/// A snapshot holds each item under the prefix with the ETag a read answers and its text exactly as stored, says
/// when it was taken, and a failed write leaves the previous snapshot whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_holds_every_value_exactly_with_its_etag() {
    let local = Local::start("snapshot").await;
    let odd =
        r#"{"n": 1e400, "big": 123456789012345678901234567890, "z": -0,  "a" : "\u00e9\ud800"}"#;
    local.put("snap/odd", odd).await;
    local.put("snap/flag", "true").await;
    local.put("other/x", "1").await;
    local.settle().await;

    let run = local
        .s3kv(&["export", "snap/", "--snapshot", "snap.json"])
        .await
        .ok();
    assert_eq!(run.stdout, "", "a snapshot goes to its file only");
    assert!(
        run.stderr.contains("exported 2 items to snap.json"),
        "{}",
        run.stderr
    );
    let text = std::fs::read_to_string(local.dir.join("snap.json")).unwrap();
    // Byte for byte: the stored text sits in the file as it is, whitespace, -0 and 1e400 included.
    assert!(text.contains(&format!("\"value\": {odd}")), "{text}");

    // Typed, with each value raw: serde_json's Value cannot hold 1e400.
    let snapshot: Snapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            snapshot.format.as_str(),
            snapshot.version,
            snapshot.prefix.as_str()
        ),
        ("s3kv-snapshot", 1, "snap/")
    );
    let at = snapshot.exported_at.as_bytes();
    assert!(
        at.len() == 20 && at[10] == b'T' && at[19] == b'Z',
        "exportedAt {}",
        snapshot.exported_at
    );
    let items = snapshot.items;
    assert_eq!(items.keys().collect::<Vec<_>>(), ["snap/flag", "snap/odd"]);
    assert_eq!(items["snap/odd"].value.get(), odd);
    assert_eq!(items["snap/flag"].value.get(), "true");
    for (key, item) in &items {
        let read = local.s3kv(&["get", key, "--output", "json"]).await.ok();
        let read: Read = serde_json::from_str(&read.stdout).unwrap();
        assert_eq!(read.etag, item.etag, "{key}'s etag");
    }

    // A snapshot that cannot be written fails clearly and leaves the old one as it was.
    std::fs::create_dir(local.dir.join("dir.json")).unwrap();
    local
        .s3kv(&["export", "snap/", "--snapshot", "dir.json"])
        .await
        .fails(1, "dir.json");
    local
        .s3kv(&["export", "snap/", "--snapshot", "no/such/dir/snap.json"])
        .await
        .fails(1, "no/such/dir/snap.json");
    assert_eq!(
        std::fs::read_to_string(local.dir.join("snap.json")).unwrap(),
        text
    );
    let leftovers: Vec<_> = std::fs::read_dir(&local.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

/// `import` takes a snapshot too: its items, byte for byte, never its `format`, `version` or `items` members as
/// items of their own.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_imports_its_items() {
    let local = Local::start("snapshot-import").await;
    let odd = r#"{"n": 1e400,  "z": -0}"#;
    local.put("snapin/odd", odd).await;
    local.put("snapin/flag", "true").await;
    local.settle().await;
    local
        .s3kv(&["export", "snapin/", "--snapshot", "snap.json"])
        .await
        .ok();
    local.s3kv(&["rm", "snapin/odd"]).await.ok();
    local.s3kv(&["rm", "snapin/flag"]).await.ok();
    local.settle().await;

    local.s3kv(&["import", "snap.json"]).await.ok();
    local.settle().await;
    let raw = local.s3kv(&["get", "snapin/odd"]).await.ok();
    assert_eq!(raw.stdout.trim_end(), odd);
    let all = local.s3kv(&["ls", ""]).await.ok();
    assert_eq!(
        all.stdout.lines().collect::<Vec<_>>(),
        ["snapin/flag", "snapin/odd"],
        "{}",
        all.stdout
    );

    // A snapshot of another version is refused, and nothing is written.
    std::fs::write(
        local.dir.join("future.json"),
        r#"{"format":"s3kv-snapshot","version":2,"items":{"x/y":{"value":1}}}"#,
    )
    .unwrap();
    local
        .s3kv(&["import", "future.json"])
        .await
        .fails(2, "version 2");
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Snapshot {
    format: String,
    version: u32,
    exported_at: String,
    prefix: String,
    items: std::collections::BTreeMap<String, SnapshotItem>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotItem {
    etag: Option<String>,
    value: Box<serde_json::value::RawValue>,
}

/// What `get --output json` says of an item, its value passed over (it may not fit serde_json's Value).
#[derive(serde::Deserialize)]
struct Read {
    etag: Option<String>,
}
