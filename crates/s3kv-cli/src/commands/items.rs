//! `get`, `put`, `rm`, `ls` and `batch-get`: one item, or several, through the `/items` routes.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use serde_json::json;
use serde_json::value::RawValue;

use super::{condition, fetch, item_key, read_source, valid_json};
use crate::api::Api;
use crate::output::{print, write_exact, Failure, ItemLine, Output};

#[derive(Debug, Args)]
pub struct GetArgs {
    key: String,
    /// Also print its ETag (on stderr, so stdout stays the value)
    #[arg(long)]
    etag: bool,
    /// An older version (from `s3kv history`)
    #[arg(long)]
    version: Option<String>,
}

pub(super) async fn get(api: &Api, out: Output, args: GetArgs) -> Result<(), Failure> {
    let key = item_key(&args.key)?;
    let item = api.get(&key, args.version.as_deref(), false).await?;
    match out {
        Output::Text => {
            if args.etag {
                eprintln!("ETag: {}", item.etag);
            }
            write_exact(&item.body);
        }
        Output::Json => {
            let value = serde_json::from_str::<&RawValue>(&item.body).map_err(|e| {
                Failure::Other(format!("the API sent a value that is not JSON: {e}"))
            })?;
            let line = ItemLine {
                key: key.as_str(),
                etag: &item.etag,
                writer: item.writer.as_deref(),
                value,
            };
            let answer = serde_json::to_string(&line).map_err(|e| Failure::Other(e.to_string()))?;
            println!("{answer}");
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PutArgs {
    key: String,
    file: Option<String>,
    /// Only if the item does not exist (If-None-Match: *)
    #[arg(long, conflicts_with = "if_match")]
    create: bool,
    /// Only if the item still has this ETag (compare-and-swap)
    #[arg(long)]
    if_match: Option<String>,
}

pub(super) async fn put(api: &Api, out: Output, args: PutArgs) -> Result<(), Failure> {
    let condition = condition(args.create, args.if_match.as_deref());
    let key = item_key(&args.key)?;
    let body = read_source(args.file.as_deref()).await?;
    valid_json(&body, "the value")?;
    let (written, created) = api.put(&key, body, condition).await?;
    let what = if created { "created" } else { "replaced" };
    print(
        out,
        &format!("{what} {key} (etag {})", written.etag),
        json!({ "key": key.as_str(), "etag": written.etag, "created": created }),
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct RmArgs {
    key: String,
    /// Only if the item still has this ETag
    #[arg(long)]
    if_match: Option<String>,
}

pub(super) async fn rm(api: &Api, out: Output, args: RmArgs) -> Result<(), Failure> {
    let key = item_key(&args.key)?;
    api.delete(&key, condition(false, args.if_match.as_deref()))
        .await?;
    print(
        out,
        &format!("deleted {key}"),
        json!({ "key": key.as_str(), "deleted": true }),
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(default_value = "")]
    prefix: String,
    /// With ETag, size and last modification
    #[arg(long, short)]
    long: bool,
}

pub(super) async fn ls(api: &Api, out: Output, args: LsArgs) -> Result<(), Failure> {
    let items = api.list(&args.prefix).await?;
    match out {
        Output::Json => {
            let items: Vec<_> = items
                .iter()
                .map(|i| json!({ "key": i.key, "etag": i.etag, "size": i.size, "lastModified": i.last_modified }))
                .collect();
            println!("{}", serde_json::Value::Array(items));
        }
        Output::Text => {
            let mut stdout = std::io::stdout().lock();
            for item in &items {
                let line = if args.long {
                    let when = item.last_modified.as_deref().unwrap_or("-");
                    format!("{}  {:>8}  {when}  {}", item.etag, item.size, item.key)
                } else {
                    item.key.clone()
                };
                let _ = writeln!(stdout, "{line}");
            }
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BatchGetArgs {
    #[arg(required = true)]
    keys: Vec<String>,
}

pub(super) async fn batch_get(api: &Api, out: Output, args: BatchGetArgs) -> Result<(), Failure> {
    let keys = args
        .keys
        .iter()
        .map(|k| item_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let mut values: BTreeMap<String, Option<Box<RawValue>>> = BTreeMap::new();
    for item in fetch(api, &keys).await? {
        if let Some(error) = &item.error {
            eprintln!("{}: {error}", item.key);
        }
        values.insert(item.key, item.value.filter(|_| item.found));
    }
    let text = serde_json::to_string_pretty(&values).map_err(|e| Failure::Other(e.to_string()))?;
    match out {
        Output::Text => println!("{text}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string(&values).map_err(|e| Failure::Other(e.to_string()))?
        ),
    }
    Ok(())
}
