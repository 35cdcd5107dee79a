//! `watch --prefix PREFIX`: what changes under a prefix, from the change feed, resumable from a cursor; woken by
//! push, or by long-polls of the feed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::push::{newer, prefix_topic, Push, Subscription};
use super::{fall_back, pace, Backoff};
use crate::api::{Api, ApiError, Change, MAX_WAIT_SECS};
use crate::output::{emit, note, Failure, Output};

/// `watch --prefix`'s settings.
pub(super) struct Follow<'a> {
    pub prefix: &'a str,
    pub after: Option<String>,
    pub cursor_file: Option<&'a Path>,
    pub once: bool,
}

fn read_cursor(path: &Path) -> Result<Option<String>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|c| !c.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

/// Whole or not at all (a new file, then a rename): a watch stopped mid-write must not leave half a cursor.
fn write_cursor(path: &Path, cursor: &str) -> Result<(), Failure> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, format!("{cursor}\n"))
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))
}

/// `watch --prefix`: the change feed from now (or `--after`, or the cursor file), each changed item as one line
/// on stdout, so the stream pipes as is. The cursor goes to stderr and the cursor file only once the batch it
/// closes is printed: resuming from it never skips a change that was not printed. Woken by push when `push` says
/// where (and it connects), else by long-polls of the feed.
pub(super) async fn watch_prefix(
    api: &Api,
    out: Output,
    follow: Follow<'_>,
    push: Option<&Push>,
) -> Result<(), Failure> {
    let Follow {
        prefix,
        after,
        cursor_file,
        once,
    } = follow;
    let saved = match (&after, cursor_file) {
        (None, Some(path)) => read_cursor(path)?,
        _ => None,
    };
    // Subscribed before the feed's place is taken: a change after that place is pushed, or read from the feed
    // by the next read a push (or a reconnection) sets off.
    let topic = prefix_topic(prefix);
    let subscription = match push {
        Some(push) => match push.subscribe(&topic).await {
            Ok(subscription) => Some((push, subscription)),
            Err(why) => {
                fall_back(out, &why);
                None
            }
        },
        None => None,
    };
    let resumed = after.or(saved);
    let catch_up = resumed.is_some();
    let mut backoff = Backoff::new();
    let cursor = match resumed {
        Some(cursor) => cursor,
        None => loop {
            match api.changes(prefix, None, 0).await {
                Ok(page) => break page.cursor,
                Err(e) => backoff.retry(out, e).await?,
            }
        },
    };
    let mut feed = Feed {
        api,
        out,
        prefix,
        cursor,
        cursor_file,
        once,
        backoff,
        shown: HashMap::new(),
    };
    feed.tell()?;
    match subscription {
        Some((push, subscription)) => pushed(feed, catch_up, (push, subscription)).await,
        None => loop {
            if let Read::Stop = feed.read(MAX_WAIT_SECS).await? {
                return Ok(());
            }
        },
    }
}

/// How long pushed changes may wait to show in the feed (in AWS the notifier may publish before the syncer has
/// announced them) before the watch stops looking for them.
const FEED_LAG: Duration = Duration::from_secs(10);

/// Push: each change delivered under the prefix sets off reads of the feed after the cursor until the feed holds
/// it, so the lines and the cursor are the feed's, as a long-poll's are. Pushed changes come at least once and in
/// no particular order: one whose sequencer is not after the last for its key, or whose state is the one printed
/// last, sets off nothing. After the connection is lost, the feed is read from the cursor on subscribing again.
async fn pushed(
    mut feed: Feed<'_>,
    mut catch_up: bool,
    (push, mut subscription): (&Push, Subscription),
) -> Result<(), Failure> {
    let topic = prefix_topic(feed.prefix);
    // Per key: the greatest sequencer pushed, and the state pushed that the feed has not shown yet.
    let mut newest: HashMap<String, String> = HashMap::new();
    let mut pending: HashMap<String, Option<String>> = HashMap::new();
    loop {
        if catch_up {
            catch_up = false;
            loop {
                match feed.read(0).await? {
                    Read::Stop => return Ok(()),
                    Read::Nothing => break,
                    Read::Printed(changes) => settle(&mut pending, &changes),
                    Read::Again => {}
                }
            }
        }
        let lost = match subscription.next().await {
            Ok(change) => {
                feed.note_pushed(change, &mut newest, &mut pending);
                drain(&mut feed, &mut subscription, &mut newest, &mut pending).await
            }
            Err(why) => Some(why),
        };
        if let Some(why) = lost {
            subscription = push.resubscribe(&topic, feed.out, &why).await;
            pending.clear();
            catch_up = true;
            continue;
        }
        let started = Instant::now();
        let mut wait = 0;
        while !pending.is_empty() {
            match feed.read(wait).await? {
                Read::Stop => return Ok(()),
                Read::Printed(changes) => settle(&mut pending, &changes),
                Read::Nothing | Read::Again => {}
            }
            if let Some(why) = drain(&mut feed, &mut subscription, &mut newest, &mut pending).await
            {
                subscription = push.resubscribe(&topic, feed.out, &why).await;
                pending.clear();
                catch_up = true;
            }
            if started.elapsed() > FEED_LAG {
                pending.clear();
            }
            wait = 1;
        }
    }
}

/// Takes in the changes already delivered, without waiting; why the connection was lost, if it was.
async fn drain(
    feed: &mut Feed<'_>,
    subscription: &mut Subscription,
    newest: &mut HashMap<String, String>,
    pending: &mut HashMap<String, Option<String>>,
) -> Option<String> {
    while let Some(next) = subscription.ready().await {
        match next {
            Ok(change) => feed.note_pushed(change, newest, pending),
            Err(why) => return Some(why),
        }
    }
    None
}

/// Pushed states the feed has now shown are no longer waited for.
fn settle(pending: &mut HashMap<String, Option<String>>, printed: &[Change]) {
    for change in printed {
        if pending.get(&change.key) == Some(&change.etag) {
            pending.remove(&change.key);
        }
    }
}

/// What one read of the feed did.
enum Read {
    /// Nothing after the cursor (yet).
    Nothing,
    /// These changes, printed, and the cursor after them told.
    Printed(Vec<Change>),
    /// Nothing printed, but worth reading again at once: the feed restarted, or a failure was waited out.
    Again,
    /// The watch is done: `--once` printed its batch, or nobody reads stdout any more.
    Stop,
}

/// The change feed under the prefix, from the cursor, and what was printed of it.
struct Feed<'a> {
    api: &'a Api,
    out: Output,
    prefix: &'a str,
    cursor: String,
    cursor_file: Option<&'a Path>,
    once: bool,
    backoff: Backoff,
    /// Per key, the state last printed (its ETag, `None` deleted).
    shown: HashMap<String, Option<String>>,
}

impl Feed<'_> {
    fn tell(&self) -> Result<(), Failure> {
        note(
            self.out,
            &format!("cursor: {}", self.cursor),
            json!({ "cursor": self.cursor }),
        );
        self.cursor_file
            .map_or(Ok(()), |path| write_cursor(path, &self.cursor))
    }

    /// One pushed change: waited for in the feed when it is under the prefix, after the last pushed for its key,
    /// and not the state printed last.
    fn note_pushed(
        &self,
        change: s3kv::push::Change,
        newest: &mut HashMap<String, String>,
        pending: &mut HashMap<String, Option<String>>,
    ) {
        if !change.key.starts_with(self.prefix)
            || !newer(
                &change.sequencer,
                newest.get(&change.key).map(String::as_str),
            )
        {
            return;
        }
        let state = if change.deleted { None } else { change.etag };
        newest.insert(change.key.clone(), change.sequencer);
        if self.shown.get(&change.key) == Some(&state) {
            pending.remove(&change.key);
        } else {
            pending.insert(change.key, state);
        }
    }

    /// One request of the feed after the cursor, waiting up to `wait` seconds when nothing is there yet.
    async fn read(&mut self, wait: u64) -> Result<Read, Failure> {
        let started = Instant::now();
        match self
            .api
            .changes(self.prefix, Some(&self.cursor), wait)
            .await
        {
            Ok(page) if page.changes.is_empty() => {
                self.backoff.reset();
                // Nothing here, though the feed may have moved on elsewhere: a later start need not reread that.
                if let (Some(path), true) = (self.cursor_file, page.cursor != self.cursor) {
                    write_cursor(path, &page.cursor)?;
                }
                self.cursor = page.cursor;
                if wait > 0 {
                    pace(started).await;
                }
                Ok(Read::Nothing)
            }
            Ok(page) => {
                self.backoff.reset();
                for change in &page.changes {
                    let line =
                        serde_json::to_string(change).map_err(|e| Failure::Other(e.to_string()))?;
                    if !emit(&line)? {
                        return Ok(Read::Stop);
                    }
                    self.shown.insert(change.key.clone(), change.etag.clone());
                }
                self.cursor = page.cursor;
                self.tell()?;
                if self.once {
                    return Ok(Read::Stop);
                }
                Ok(Read::Printed(page.changes))
            }
            Err(ApiError::Status {
                status: 410,
                restart: Some(restart),
                message,
                ..
            }) => {
                let (under, ls) = match self.prefix {
                    "" => (String::new(), "s3kv ls".to_owned()),
                    prefix => (format!(" under {prefix}"), format!("s3kv ls {prefix}")),
                };
                note(
                    self.out,
                    &format!(
                        "s3kv: the feed no longer holds the changes after the cursor, so changes{under} were missed: list the items again ({ls}) to catch up; following on from the oldest change it holds"
                    ),
                    json!({ "warning": "cursor_expired", "message": message, "cursor": restart }),
                );
                self.cursor = restart;
                self.tell()?;
                Ok(Read::Again)
            }
            Err(e) => {
                self.backoff.retry(self.out, e).await?;
                Ok(Read::Again)
            }
        }
    }
}
