//! [`Feed`] over one Valkey stream: XADD with `MAXLEN ~` to append, XRANGE to read, and one blocking XREAD per
//! process to wait.
//!
//! Why a stream: ElastiCache Serverless has no keyspace notifications and restricts CONFIG, and PUBLISH fans out
//! over the cluster bus to every node. A stream is one key, so it works on any node of a cluster, keeps what a
//! consumer missed (a cursor is an entry id, a 410 says when it is too old), and `XREAD BLOCK` wakes a waiter the
//! moment an entry lands, at no cost while nothing changes. Polling each item's header instead would cost a
//! command per waiter per poll and add half the poll interval to every wake.
//!
//! A blocked connection holds up every command queued behind it, so the blocking read has a connection of its
//! own, and all waiters of the process share it: a hub task reads and publishes the newest entry id on a
//! `watch` channel, and stops when nobody is waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::WithOptions;
use fred::prelude::*;
use fred::types::config::Options;
use fred::types::streams::XReadResponse;
use tokio::sync::watch;

use crate::ports::{CacheError, Cursor, Feed, FeedEntry, FeedError, FeedPage};

use super::{cache_error, drive, ValkeyCache};

/// The entry field holding the item key.
const KEY_FIELD: &str = "k";
/// How long one blocking read waits before the hub checks whether anyone still waits.
const BLOCK: Duration = Duration::from_secs(5);
/// How long a feed read may take before it fails.
const FEED_TIMEOUT: Duration = Duration::from_secs(1);
/// Entries one blocking read returns at most; a full batch makes the hub jump to the stream's end.
const BLOCK_COUNT: u64 = 100;

pub(crate) struct FeedState {
    key: String,
    retention: usize,
    /// The blocking read's own connection, connected when the first waiter comes.
    blocking: Client,
    connected: AtomicBool,
    hub: Mutex<Option<Arc<watch::Sender<Seen>>>>,
}

/// What the hub last saw of the feed.
#[derive(Debug, Clone)]
enum Seen {
    Starting,
    At(Cursor),
    Failed(String),
}

impl FeedState {
    pub(crate) fn new(client: &Client, key: String, retention: usize) -> Self {
        // The main client's settings (URL, TLS, IAM credentials, reconnect policy), but a command timeout above
        // the block: fred's periodic re-AUTH queues behind the blocked read and must not time out there.
        let mut performance = client.perf_config();
        performance.default_command_timeout = BLOCK + Duration::from_secs(2);
        let blocking = Client::new(
            client.client_config(),
            Some(performance),
            Some(client.connection_config().clone()),
            client.client_reconnect_policy(),
        );
        Self {
            key,
            retention: retention.max(1),
            blocking,
            connected: AtomicBool::new(false),
            hub: Mutex::new(None),
        }
    }

    /// A receiver of the hub's news, starting the hub if none runs.
    fn subscribe(self: &Arc<Self>) -> watch::Receiver<Seen> {
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = hub.as_ref() {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(Seen::Starting);
        let sender = Arc::new(sender);
        *hub = Some(sender.clone());
        tokio::spawn(run_hub(self.clone(), sender));
        receiver
    }
}

/// The hub: the feed's end first, then blocking reads after it, each newest id published; ends when the last
/// waiter is gone (decided under the lock, so a new waiter either finds this hub or starts the next one).
async fn run_hub(state: Arc<FeedState>, sender: Arc<watch::Sender<Seen>>) {
    if !state.connected.swap(true, Ordering::SeqCst) {
        drive(&state.blocking, Duration::from_secs(2)).await;
    }
    let blocking = state.blocking.with_options(&Options {
        timeout: Some(BLOCK + Duration::from_secs(2)),
        ..Options::default()
    });
    let mut last: Option<Cursor> = None;
    loop {
        {
            let mut hub = state.hub.lock().unwrap_or_else(|p| p.into_inner());
            if sender.receiver_count() == 0 {
                *hub = None;
                return;
            }
        }
        let seen = match last {
            None => tail(&blocking, &state.key).await,
            Some(after) => {
                // A block that ends with nothing new answers nil, which is no map: read a value, and take nil
                // as nothing new.
                let read = blocking
                    .xread::<Value, _, _>(
                        Some(BLOCK_COUNT),
                        Some(BLOCK.as_millis() as u64),
                        state.key.as_str(),
                        after.to_string(),
                    )
                    .await
                    .and_then(|answer| match answer {
                        Value::Null => Ok(XReadResponse::new()),
                        answer => answer.into_xread_response::<String, String, String, String>(),
                    })
                    .map_err(cache_error);
                match read {
                    // Nothing new, or a full batch (a backlog after a freeze): the stream's end, read afresh, is
                    // where to go on. It may even be behind `after` when the stream was lost and created again,
                    // and a hub ahead of the stream would wake waiters for entries that never come.
                    Ok(streams) => {
                        let ids: Vec<Cursor> = streams
                            .into_values()
                            .flatten()
                            .filter_map(|(id, _)| Cursor::parse(&id))
                            .collect();
                        match ids.iter().max() {
                            Some(newest) if ids.len() < BLOCK_COUNT as usize => Ok(*newest),
                            _ => tail(&blocking, &state.key).await,
                        }
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match seen {
            Ok(cursor) => {
                last = Some(cursor);
                sender.send_replace(Seen::At(cursor));
            }
            Err(error) => {
                sender.send_replace(Seen::Failed(error.to_string()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The newest entry's id (XREVRANGE + - COUNT 1), [`Cursor::START`] when the stream is empty or absent.
async fn tail<C: StreamsInterface + Sync>(client: &C, key: &str) -> Result<Cursor, CacheError> {
    let newest: Vec<(String, HashMap<String, String>)> = client
        .xrevrange_values(key, "+", "-", Some(1))
        .await
        .map_err(cache_error)?;
    Ok(newest
        .first()
        .and_then(|(id, _)| Cursor::parse(id))
        .unwrap_or(Cursor::START))
}

/// The reader's cache timeout (50 ms by default) is for the fast path, where S3 stands in; the feed has no
/// stand-in, so its reads may take longer before they fail.
fn feed_client(client: &Client) -> WithOptions<Client> {
    client.with_options(&Options {
        timeout: Some(FEED_TIMEOUT),
        ..Options::default()
    })
}

/// An entry id field of XINFO STREAM.
fn stream_id(info: &HashMap<String, Value>, field: &str) -> Cursor {
    info.get(field)
        .and_then(|v| v.as_str())
        .and_then(|id| Cursor::parse(&id))
        .unwrap_or(Cursor::START)
}

impl Feed for ValkeyCache {
    async fn announce(&self, key: &str) -> Result<(), CacheError> {
        let cap = ("MAXLEN", "~", self.feed.retention as i64);
        let _: String = self
            .client()
            .xadd(
                self.feed.key.as_str(),
                false,
                cap,
                "*",
                vec![(KEY_FIELD, key)],
            )
            .await
            .map_err(cache_error)?;
        Ok(())
    }

    async fn tail(&self) -> Result<Cursor, CacheError> {
        tail(&feed_client(self.client()), &self.feed.key).await
    }

    /// XRANGE, then XINFO STREAM, whose `entries-added` and `recorded-first-entry-id` (Valkey, and Redis 7+) say
    /// whether the cursor is older than what is kept. In this order a trim between the two can only make the
    /// answer a needless 410, never a page with a silent gap.
    async fn read(&self, after: Cursor, count: usize) -> Result<FeedPage, FeedError> {
        let key = self.feed.key.as_str();
        let client = feed_client(self.client());
        // Valkey refuses an exclusive range after the largest id; no stream can have entries after it anyway.
        let entries: Vec<(String, HashMap<String, String>)> = if after == Cursor::MAX {
            Vec::new()
        } else {
            client
                .xrange_values(key, format!("({after}"), "+", Some(count.max(1) as u64))
                .await
                .map_err(cache_error)?
        };
        let info: HashMap<String, Value> = match client.xinfo_stream(key, false, None).await {
            Ok(info) => info,
            // No stream: nothing was ever announced, or the cache lost it; a cursor from before the loss cannot
            // be trusted to have seen everything.
            Err(error) if error.details().contains("no such key") => {
                return match after {
                    Cursor::START => Ok(FeedPage::default()),
                    _ => Err(FeedError::Expired {
                        restart: Cursor::START,
                    }),
                };
            }
            Err(error) => return Err(cache_error(error).into()),
        };
        let last = stream_id(&info, "last-generated-id");
        let count = |field: &str| info.get(field).and_then(Value::as_u64).unwrap_or(0);
        // Trimming moves the first entry and leaves entries-added above the length (max-deleted-entry-id counts
        // XDEL only): a cursor before the first entry may have missed trimmed entries. Untrimmed, every cursor this
        // feed hands out is START or an entry's id, so one before the first entry is from a stream that was lost
        // and created again. Either way: expired, conservatively.
        let trimmed = count("entries-added") > count("length");
        let first = stream_id(&info, "recorded-first-entry-id");
        if (after < first && (trimmed || after != Cursor::START)) || after > last {
            return Err(FeedError::Expired { restart: last });
        }
        let mut page = FeedPage {
            entries: Vec::with_capacity(entries.len()),
            cursor: after,
            scanned: entries.len(),
        };
        for (id, mut fields) in entries {
            let Some(cursor) = Cursor::parse(&id) else {
                continue;
            };
            page.cursor = page.cursor.max(cursor);
            if let Some(key) = fields.remove(KEY_FIELD) {
                page.entries.push(FeedEntry { cursor, key });
            }
        }
        Ok(page)
    }

    async fn wait(&self, after: Cursor, timeout: Duration) -> Result<bool, CacheError> {
        let until = tokio::time::Instant::now() + timeout;
        let mut news = self.feed.subscribe();
        // A failure the hub saw before this waiter came may be over (its next read is under way): only a failure
        // reported while this one waits counts.
        let mut fresh = false;
        loop {
            match &*news.borrow_and_update() {
                Seen::At(cursor) if *cursor > after => return Ok(true),
                Seen::Failed(error) if fresh => {
                    return Err(CacheError::Unavailable(error.clone().into()))
                }
                Seen::At(_) | Seen::Starting | Seen::Failed(_) => {}
            }
            fresh = true;
            match tokio::time::timeout_at(until, news.changed()).await {
                Err(_) => return Ok(false),
                // The hub ended (it only does once nobody listens, so not while this waits): start another.
                Ok(Err(_)) => news = self.feed.subscribe(),
                Ok(Ok(())) => {}
            }
        }
    }
}
