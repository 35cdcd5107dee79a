//! `export` and `import`: every item under a prefix as one JSON object, and back (from such an object, or from a
//! directory of `KEY.json` files). Values go through as `RawValue`s: exported and imported byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use futures::StreamExt;
use s3kv::key::ItemKey;
use serde_json::json;
use serde_json::value::RawValue;

use super::{fetch, item_key, valid_json};
use crate::api::{Api, ApiError, Condition};
use crate::output::{print, Failure, Output};

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(default_value = "")]
    prefix: String,
}

pub(super) async fn export(api: &Api, args: ExportArgs) -> Result<(), Failure> {
    let listed = api.list(&args.prefix).await?;
    let keys = listed
        .iter()
        .map(|i| item_key(&i.key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut values: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
    for item in fetch(api, &keys).await? {
        {
            // Deleted since the listing: not in the export.
            if let (true, Some(value)) = (item.found, item.value) {
                values.insert(item.key, value);
            }
        }
    }
    let text = serde_json::to_string_pretty(&values).map_err(|e| Failure::Other(e.to_string()))?;
    println!("{text}");
    eprintln!("exported {} items", values.len());
    Ok(())
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
                    .put(&key, body, condition)
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
