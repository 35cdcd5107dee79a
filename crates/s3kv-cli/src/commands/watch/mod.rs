//! `watch KEY` ([`item`]) and `watch --prefix PREFIX` ([`prefix`]): changes printed as they happen, one JSON line
//! each, until stopped. What both share is here: their flags, and how they ride out an outage.

mod item;
mod prefix;

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::api::{Api, ApiError};
use crate::output::{note, Failure, Output};

// `conflicts_with = "key"` below, not `requires = "prefix"`: clap lets any member of a required group satisfy
// a `requires` on another (clap#4707), so `watch KEY --after C` would run with --after ignored.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("watched").required(true).args(["key", "prefix"])))]
pub struct WatchArgs {
    key: Option<String>,
    /// Every item under this prefix ("" for all) instead of one item
    #[arg(long)]
    prefix: Option<String>,
    /// Resume after this cursor (printed by an earlier watch) instead of starting from now
    #[arg(long, conflicts_with = "key")]
    after: Option<String>,
    /// Resume from the cursor in this file if it exists (unless --after), and keep it there after each batch
    #[arg(long, conflicts_with = "key", value_name = "FILE")]
    cursor_file: Option<std::path::PathBuf>,
    /// Exit after the first change (with --prefix: the first batch of changes)
    #[arg(long)]
    once: bool,
}

pub(super) async fn exec(api: &Api, out: Output, args: WatchArgs) -> Result<(), Failure> {
    let WatchArgs {
        key,
        prefix,
        after,
        cursor_file,
        once,
    } = args;
    match (key, prefix) {
        (Some(key), _) => item::watch_item(api, out, &key, once).await,
        (None, Some(prefix)) => {
            let follow = prefix::Follow {
                prefix: &prefix,
                after,
                cursor_file: cursor_file.as_deref(),
                once,
            };
            prefix::watch_prefix(api, out, follow).await
        }
        (None, None) => Err(Failure::Usage("watch KEY, or watch --prefix PREFIX".into())),
    }
}

/// Failures that may pass (see [`ApiError::is_transient`]) are asked again after 1 s, doubling to 30 s, and back
/// to 1 s after an answer: a watch outlives an outage without hammering the API, and notices its end within
/// half a minute.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MOST: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The pause, said on stderr, when `error` may pass; the error itself when it would only repeat.
    async fn retry(&mut self, out: Output, error: ApiError) -> Result<(), Failure> {
        if !error.is_transient() {
            return Err(error.into());
        }
        let secs = self.next.as_secs();
        note(
            out,
            &format!("s3kv: {error}; retrying in {secs}s"),
            json!({ "warning": error.to_string(), "retryIn": secs }),
        );
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MOST);
        Ok(())
    }
}

/// The API answers every wait at once when its operator turned waiting off (S3KV_MAX_WAIT_SECS=0): a look that
/// found nothing is then repeated about once a second, not as fast as the network allows.
async fn pace(started: Instant) {
    if let Some(left) = Duration::from_secs(1).checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
}
