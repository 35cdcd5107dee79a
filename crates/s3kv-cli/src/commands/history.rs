//! `history` and `restore`: an item's versions, and an older one made the item again.

use std::io::Write;

use clap::Args;
use serde_json::json;

use super::{condition, item_key};
use crate::api::Api;
use crate::output::{print, Failure, Output};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    key: String,
    /// Most versions to show (all when not given)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
}

pub(super) async fn history(api: &Api, out: Output, args: HistoryArgs) -> Result<(), Failure> {
    let key = item_key(&args.key)?;
    let versions = api.history(&key, args.limit.map(|l| l as usize)).await?;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string(&versions).map_err(|e| Failure::Other(e.to_string()))?
        ),
        Output::Text => {
            let mut stdout = std::io::stdout().lock();
            for v in &versions {
                let mark = if v.current { "*" } else { " " };
                let when = v.last_modified.as_deref().unwrap_or("-");
                let what = if v.deleted {
                    "(deleted)".to_owned()
                } else {
                    format!("{} bytes  {}", v.size, v.writer.as_deref().unwrap_or("-"))
                };
                let _ = writeln!(stdout, "{mark} {}  {when}  {what}", v.version);
            }
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    key: String,
    version: String,
    /// Only if the item still has this ETag
    #[arg(long)]
    if_match: Option<String>,
}

pub(super) async fn restore(api: &Api, out: Output, args: RestoreArgs) -> Result<(), Failure> {
    let RestoreArgs {
        key,
        version,
        if_match,
    } = args;
    let key = item_key(&key)?;
    let (written, created) = api
        .restore(&key, &version, condition(false, if_match.as_deref()))
        .await?;
    let what = if created { "undeleted" } else { "restored" };
    print(
        out,
        &format!("{what} {key} from {version} (etag {})", written.etag),
        json!({ "key": key.as_str(), "etag": written.etag, "restoredFrom": version, "created": created }),
    );
    Ok(())
}
