//! `watch KEY` ([`item`]) and `watch --prefix PREFIX` ([`prefix`]): changes printed as they happen, one JSON line
//! each, until stopped. What both share is here: their flags, which transport (push, [`push`], or long-poll) and
//! where push is, and how they ride out an outage.
//!
//! Push is the default: a WebSocket subscription to the key's or prefix's channel says when something changed,
//! and the API says what it changed to (a consistent read of the item, or the change feed under the prefix), so a
//! line is the same whichever transport woke the watch. Long-poll (`--transport poll`, or when push cannot be
//! reached at all) holds a `?wait=` request open instead.

mod item;
mod prefix;
mod push;

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::api::{Api, ApiError};
use crate::output::{note, Failure, Output};
use crate::profile::Profile;
use push::Push;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// A WebSocket subscription (AppSync Events; s3kv-local serves it too); long-poll when it cannot connect
    Push,
    /// `?wait=` long-polls on the item or the change feed
    Poll,
}

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
    /// How changes are learnt of
    #[arg(long, value_enum, default_value_t = Transport::Push)]
    transport: Transport,
    /// The push endpoint (AWS: the Event API's wss://ID.appsync-realtime-api.REGION.amazonaws.com/event/realtime;
    /// default: the profile's, or ws://HOST:PORT/event/realtime for an endpoint on 127.0.0.1 or localhost)
    #[arg(long, env = "S3KV_PUSH_URL", value_name = "URL")]
    push_url: Option<String>,
    /// The host push credentials name (default: the profile's, or the push URL's with appsync-realtime-api read
    /// as appsync-api)
    #[arg(long, env = "S3KV_PUSH_HOST", value_name = "HOST")]
    push_host: Option<String>,
}

/// A push URL is a WebSocket URL.
pub(super) fn check_push_url(url: &str) -> Result<(), Failure> {
    match push::auth_host(url) {
        Some(_) => Ok(()),
        None => Err(Failure::Usage(format!(
            "push URL {url:?} must start with wss:// or ws:// and name a host"
        ))),
    }
}

/// Where push is: flag or environment, then the profile (when the endpoint is its own), then s3kv-local's on an
/// endpoint on this machine; `None` when nothing says.
fn push_settings(
    api: &Api,
    url: Option<String>,
    host: Option<String>,
    own: Option<&Profile>,
) -> Result<Option<Push>, Failure> {
    let saved = own.filter(|_| url.is_none());
    let Some(url) = url
        .or_else(|| saved.and_then(|p| p.push_url.clone()))
        .or_else(|| push::local_url(api.endpoint()))
    else {
        return Ok(None);
    };
    check_push_url(&url)?;
    let host = host
        .or_else(|| saved.and_then(|p| p.push_host.clone()))
        .or_else(|| push::auth_host(&url))
        .unwrap_or_default();
    Ok(Some(Push {
        url,
        host,
        api_key: api.api_key().map(str::to_owned),
    }))
}

/// Push could not be used: said on stderr, and the watch goes on by long-poll.
fn fall_back(out: Output, why: &str) {
    note(
        out,
        &format!("s3kv: push unavailable ({why}); watching by long-poll"),
        json!({ "warning": "push_unavailable", "message": why, "transport": "poll" }),
    );
}

pub(super) async fn exec(
    api: &Api,
    out: Output,
    args: WatchArgs,
    own: Option<&Profile>,
) -> Result<(), Failure> {
    let WatchArgs {
        key,
        prefix,
        after,
        cursor_file,
        once,
        transport,
        push_url,
        push_host,
    } = args;
    let push = match transport {
        Transport::Push => {
            let push = push_settings(api, push_url, push_host, own)?;
            if push.is_none() {
                fall_back(
                    out,
                    "no push endpoint for this API: give --push-url, S3KV_PUSH_URL or configure --push-url",
                );
            }
            push
        }
        Transport::Poll => None,
    };
    match (key, prefix) {
        (Some(key), _) => item::watch_item(api, out, &key, once, push.as_ref()).await,
        (None, Some(prefix)) => {
            let follow = prefix::Follow {
                prefix: &prefix,
                after,
                cursor_file: cursor_file.as_deref(),
                once,
            };
            prefix::watch_prefix(api, out, follow, push.as_ref()).await
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
