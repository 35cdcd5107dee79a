//! `export` and `import`: every item under a prefix as one JSON object, and back (from such an object, or from a
//! directory of `KEY.json` files). Values go through as `RawValue`s: exported and imported byte for byte.
//! `export --snapshot FILE` writes the same items with their ETags as a last-known-good snapshot, the file the
//! TypeScript client (clients/js) serves from when the API cannot be reached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use futures::StreamExt;
use s3kv::key::ItemKey;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{fetch, item_key, valid_json};
use crate::api::{Api, ApiError, Condition};
use crate::output::{print, Failure, Output};

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(default_value = "")]
    prefix: String,
    /// Write a snapshot to FILE instead of printing: {"format": "s3kv-snapshot", "version": 1, "exportedAt",
    /// "prefix", "items": {"KEY": {"etag", "value"}}}, values byte for byte. Replaced whole, never half-written.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
}

/// One item of a snapshot: the ETag lets a client that loaded it revalidate (`If-None-Match`) instead of
/// downloading what it already has.
#[derive(Serialize)]
struct SnapshotItem {
    etag: Option<String>,
    value: Box<RawValue>,
}

/// The snapshot file's format, version 1 (clients/js/src/snapshot.ts reads it; docs/src/clients/typescript.md
/// documents it). `format` and `version` let a reader refuse a file that is not one, or a newer one.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot<'a> {
    format: &'static str,
    version: u32,
    exported_at: String,
    prefix: &'a str,
    items: BTreeMap<String, SnapshotItem>,
}

pub(super) async fn export(api: &Api, args: ExportArgs) -> Result<(), Failure> {
    let listed = api.list(&args.prefix).await?;
    let keys = listed
        .iter()
        .map(|i| item_key(&i.key))
        .collect::<Result<Vec<_>, _>>()?;
    // The time before the reads: every value is at least as new as the snapshot says.
    let exported_at = rfc3339_utc(std::time::SystemTime::now());
    let mut items: BTreeMap<String, SnapshotItem> = BTreeMap::new();
    for item in fetch(api, &keys).await? {
        // Deleted since the listing: not in the export.
        if let (true, Some(value)) = (item.found, item.value) {
            items.insert(
                item.key,
                SnapshotItem {
                    etag: item.etag,
                    value,
                },
            );
        }
    }
    let count = items.len();
    let Some(file) = args.snapshot else {
        let values: BTreeMap<String, Box<RawValue>> =
            items.into_iter().map(|(k, i)| (k, i.value)).collect();
        let text =
            serde_json::to_string_pretty(&values).map_err(|e| Failure::Other(e.to_string()))?;
        println!("{text}");
        eprintln!("exported {count} items");
        return Ok(());
    };
    let snapshot = Snapshot {
        format: "s3kv-snapshot",
        version: 1,
        exported_at,
        prefix: &args.prefix,
        items,
    };
    // Pretty-printed for review in a diff; RawValue keeps each value's own text inside the indentation.
    let mut text =
        serde_json::to_string_pretty(&snapshot).map_err(|e| Failure::Other(e.to_string()))?;
    text.push('\n');
    write_whole(&file, text.as_bytes())
        .map_err(|e| Failure::Other(format!("{}: {e}", file.display())))?;
    eprintln!(
        "exported {count} items to {} (snapshot, {})",
        file.display(),
        snapshot.exported_at
    );
    Ok(())
}

/// Writes beside the target, then renames over it: a build that ships the file never ships half of one, and a
/// failed export leaves the previous snapshot in place.
fn write_whole(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut partial = name.to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = file.with_file_name(partial);
    let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// `2026-12-07T22:30:00Z`: seconds are enough to say how old a snapshot is, and a clock before 1970 reads as 1970.
fn rfc3339_utc(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm, for days since 1970-01-01; no era before it here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    source: String,
    /// Check every key and value, write nothing
    #[arg(long)]
    dry_run: bool,
    /// Skip items that already exist instead of replacing them
    #[arg(long)]
    create_only: bool,
    /// Writes in flight at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
}

/// The items to import: an export file (one JSON object), or every `*.json` file under a directory (the key is
/// the file's path under it, without `.json`). All are checked before anything is written.
fn import_items(source: &Path) -> Result<Vec<(ItemKey, String)>, Failure> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    if source.is_dir() {
        let mut files = Vec::new();
        collect_json_files(source, &mut files)
            .map_err(|e| Failure::Usage(format!("{}: {e}", source.display())))?;
        files.sort();
        for file in files {
            let relative = file.strip_prefix(source).unwrap_or(&file);
            let Some(key) = relative.to_str().map(|k| k.replace('\\', "/")) else {
                problems.push(format!("{}: the file name is not UTF-8", file.display()));
                continue;
            };
            let key = key.strip_suffix(".json").unwrap_or(&key).to_owned();
            let body = std::fs::read_to_string(&file);
            match (ItemKey::parse(&key), body) {
                (Ok(item), Ok(body)) => match valid_json(&body, &file.display().to_string()) {
                    Ok(()) => items.push((item, body)),
                    Err(e) => problems.push(e.to_string()),
                },
                (Err(e), _) => {
                    problems.push(format!("{}: invalid key {key:?}: {e}", file.display()))
                }
                (_, Err(e)) => problems.push(format!("{}: {e}", file.display())),
            }
        }
    } else {
        let text = std::fs::read_to_string(source)
            .map_err(|e| Failure::Usage(format!("{}: {e}", source.display())))?;
        let all: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&text).map_err(|e| {
            Failure::Usage(format!(
                "{}: not an export (a JSON object of key to value): {e}",
                source.display()
            ))
        })?;
        let all = snapshot_items(all, source)?;
        for (key, value) in all {
            match ItemKey::parse(&key) {
                Ok(item) => items.push((item, value.get().to_owned())),
                Err(e) => problems.push(format!("invalid key {key:?}: {e}")),
            }
        }
    }
    if !problems.is_empty() {
        return Err(Failure::Usage(format!(
            "nothing imported; fix these first:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(items)
}

/// A snapshot (`export --snapshot`) imports its items: read as an export, its `format`, `version` and `items`
/// members would become items themselves. An export is recognised as a snapshot by all three members, `format`
/// being `"s3kv-snapshot"`.
fn snapshot_items(
    all: BTreeMap<String, Box<RawValue>>,
    source: &Path,
) -> Result<BTreeMap<String, Box<RawValue>>, Failure> {
    let is_snapshot = all.get("format").map(|f| f.get()) == Some("\"s3kv-snapshot\"")
        && all.contains_key("version")
        && all.contains_key("items");
    if !is_snapshot {
        return Ok(all);
    }
    #[derive(serde::Deserialize)]
    struct Item {
        value: Box<RawValue>,
    }
    let bad = |why: String| Failure::Usage(format!("{}: a snapshot, but {why}", source.display()));
    match all.get("version").map(|v| v.get()) {
        Some("1") => {}
        other => {
            return Err(bad(format!(
                "of version {}, which this s3kv cannot read",
                other.unwrap_or("?")
            )))
        }
    }
    let items: BTreeMap<String, Item> = all
        .get("items")
        .map(|items| serde_json::from_str(items.get()))
        .transpose()
        .map_err(|e| {
            bad(format!(
                "its items are not {{\"KEY\": {{\"value\": ...}}}}: {e}"
            ))
        })?
        .unwrap_or_default();
    Ok(items
        .into_iter()
        .map(|(key, item)| (key, item.value))
        .collect())
}

/// Directories are walked without following links to directories (a link loop would never end); links to
/// files are read.
fn collect_json_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_json_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

pub(super) async fn import(api: &Api, out: Output, args: ImportArgs) -> Result<(), Failure> {
    let ImportArgs {
        source,
        dry_run,
        create_only,
        concurrency,
    } = args;
    let items = import_items(Path::new(&source))?;
    if dry_run {
        print(
            out,
            &format!(
                "would import {} items (dry run: nothing written)",
                items.len()
            ),
            json!({ "items": items.len(), "dryRun": true }),
        );
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let condition = if create_only {
        Condition::Absent
    } else {
        Condition::None
    };
    let results: Vec<(ItemKey, Result<bool, ApiError>)> = futures::stream::iter(items)
        .map(|(key, body)| {
            let bar = bar.clone();
            async move {
                let result = api
                    .put(&key, body, condition, None)
                    .await
                    .map(|(_, created)| created);
                bar.inc(1);
                (key, result)
            }
        })
        .buffer_unordered(concurrency.into())
        .collect()
        .await;
    bar.finish_and_clear();
    let (mut created, mut replaced, mut skipped, mut failed) = (0, 0, 0, 0);
    for (key, result) in &results {
        match result {
            Ok(true) => created += 1,
            Ok(false) => replaced += 1,
            Err(e) if create_only && e.status() == Some(412) => skipped += 1,
            Err(e) => {
                failed += 1;
                eprintln!("{key}: {e}");
            }
        }
    }
    print(
        out,
        &format!("imported {} items: {created} created, {replaced} replaced, {skipped} skipped (exist), {failed} failed", created + replaced),
        json!({ "created": created, "replaced": replaced, "skipped": skipped, "failed": failed }),
    );
    if failed > 0 {
        return Err(Failure::Other(format!("{failed} items failed")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_utc_formats_civil_dates() {
        let at = |secs| super::rfc3339_utc(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_684_645), "2026-12-07T23:04:05Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
