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
                if let Some(at) = &item.expires_at {
                    eprintln!("Expires: {at}");
                }
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
                expires_at: item.expires_at.as_deref(),
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
    /// Expire the item after this long: seconds, or a number with s, m, h or d (90s, 15m, 1h, 2d)
    #[arg(long, conflicts_with = "expires_at", value_parser = parse_ttl)]
    ttl: Option<u64>,
    /// Expire the item at this time: RFC 3339 (2026-12-31T18:00:00Z) or Unix seconds
    #[arg(long)]
    expires_at: Option<String>,
}

/// `--ttl`'s value in seconds; the API checks the range (at least 1 s, at most 10 years).
fn parse_ttl(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => raw.split_at(at),
        None => (raw, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{raw:?}: a number of seconds, or with s, m, h or d (1h)"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{raw:?}: a whole number, at least 1 second (90s, 15m, 1h, 2d)"))
}

pub(super) async fn put(api: &Api, out: Output, args: PutArgs) -> Result<(), Failure> {
    let condition = condition(args.create, args.if_match.as_deref());
    let key = item_key(&args.key)?;
    let body = read_source(args.file.as_deref()).await?;
    valid_json(&body, "the value")?;
    let expiry = match (args.ttl, args.expires_at) {
        (Some(ttl), _) => Some(("ttl", ttl.to_string())),
        (None, Some(at)) => Some(("expiresAt", at)),
        (None, None) => None,
    };
    let (written, created) = api.put(&key, body, condition, expiry).await?;
    let what = if created { "created" } else { "replaced" };
    let expires = match &written.expires_at {
        Some(at) => format!(", expires {at}"),
        None => String::new(),
    };
    print(
        out,
        &format!("{what} {key} (etag {}{expires})", written.etag),
        json!({
            "key": key.as_str(),
            "etag": written.etag,
            "created": created,
            "expiresAt": written.expires_at,
        }),
    );
    Ok(())
}

#[cfg(test)]
mod ttl_tests {
    use super::parse_ttl;

    #[test]
    fn ttls_take_seconds_or_a_unit() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        for bad in ["", "0", "0s", "1.5h", "h", "1w", "-1", "1 h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
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
