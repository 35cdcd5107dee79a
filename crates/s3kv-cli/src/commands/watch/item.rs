//! `watch KEY`: the item's state now, then each state it changes to.

use std::time::Instant;

use s3kv::key::ItemKey;
use s3kv::push::Topic;
use serde_json::value::RawValue;

use super::push::{newer, Push, Subscription};
use super::{fall_back, pace, Backoff};
use crate::api::{Api, ApiError, Item, Watched, MAX_WAIT_SECS};
use crate::commands::item_key;
use crate::output::{emit, Failure, ItemLine, Output};

/// The value byte for byte but for the whitespace between its tokens: a stored document may be pretty-printed,
/// and a watch prints one line per change for `while read` and `jq`. JSON strings hold no raw line breaks, so
/// only whitespace outside strings goes.
fn one_line(json: &str) -> String {
    let mut line = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            line.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            line.push(c);
        }
    }
    line
}

fn state_line(key: &ItemKey, item: Option<&Item>) -> Result<String, Failure> {
    let Some(item) = item else {
        // Not `json!`, which sorts the fields: the key first, as on every other line.
        return Ok(format!(
            "{{\"key\":{},\"deleted\":true}}",
            serde_json::Value::from(key.as_str())
        ));
    };
    let not_json = |e: serde_json::Error| {
        Failure::Other(format!(
            "the API sent a value for {key} that is not JSON: {e}"
        ))
    };
    // Checked as sent: squeezing out whitespace could make something that is not JSON ("1 2") look like it.
    serde_json::from_str::<&RawValue>(&item.body).map_err(not_json)?;
    let value = RawValue::from_string(one_line(&item.body)).map_err(not_json)?;
    let line = ItemLine {
        key: key.as_str(),
        etag: &item.etag,
        writer: item.writer.as_deref(),
        value: &value,
        expires_at: item.expires_at.as_deref(),
    };
    serde_json::to_string(&line).map_err(|e| Failure::Other(e.to_string()))
}

/// `watch KEY`: the item's state now, then each state it changes to, every line JSON whatever `--output` says
/// (a stream of values is only usable with the key and ETag on each). The first line tells a script what the
/// watch started from, and that it is watching. Over push when `push` says where (and it connects), else by
/// long-poll.
pub(super) async fn watch_item(
    api: &Api,
    out: Output,
    raw_key: &str,
    once: bool,
    push: Option<&Push>,
) -> Result<(), Failure> {
    let key = item_key(raw_key)?;
    // Subscribed before the state is read: a change after the read is pushed, so none falls in between.
    let topic = Topic::Key(key.clone());
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
    let mut backoff = Backoff::new();
    let state = loop {
        match api.look(&key).await {
            Ok(item) => break Some(item),
            Err(e) if e.status() == Some(404) => break None,
            Err(e) => backoff.retry(out, e).await?,
        }
    };
    if !emit(&state_line(&key, state.as_ref())?)? {
        return Ok(());
    }
    match subscription {
        Some((push, subscription)) => {
            let shown = state.map(|item| item.etag);
            pushed(api, out, &key, once, shown, (push, subscription)).await
        }
        None => polled(api, out, &key, once, state).await,
    }
}

/// Long-poll: a wait on the item's ETag, or on the feed while it is deleted, and the state it ended with.
async fn polled(
    api: &Api,
    out: Output,
    key: &ItemKey,
    once: bool,
    mut state: Option<Item>,
) -> Result<(), Failure> {
    loop {
        state = match &state {
            Some(item) => changed_from(api, out, key, &item.etag).await?,
            None => back(api, out, key).await.map(Some)?,
        };
        // The state it started from, then the first change.
        if !emit(&state_line(key, state.as_ref())?)? || once {
            return Ok(());
        }
    }
}

/// Push: each change delivered says the item changed, and a consistent read says to what, so a line carries the
/// writer as a long-poll's does and never states what S3 no longer holds: a change delivered late or twice (push
/// is at least once, in no particular order) is dropped by its sequencer, or found to be the state shown already.
/// After the connection is lost, the read on subscribing again catches up with whatever changed meanwhile.
async fn pushed(
    api: &Api,
    out: Output,
    key: &ItemKey,
    once: bool,
    mut shown: Option<String>,
    (push, mut subscription): (&Push, Subscription),
) -> Result<(), Failure> {
    let topic = Topic::Key(key.clone());
    let mut newest: Option<String> = None;
    loop {
        match subscription.next().await {
            Ok(change) => {
                if change.key != key.as_str() || !newer(&change.sequencer, newest.as_deref()) {
                    continue;
                }
                let pushed_etag = if change.deleted { None } else { change.etag };
                newest = Some(change.sequencer);
                if pushed_etag == shown {
                    continue;
                }
            }
            Err(why) => subscription = push.resubscribe(&topic, out, &why).await,
        }
        let Some(now) = read_now(api, out, key).await? else {
            continue;
        };
        if now.as_ref().map(|item| &item.etag) == shown.as_ref() {
            continue;
        }
        if !emit(&state_line(key, now.as_ref())?)? || once {
            return Ok(());
        }
        shown = now.map(|item| item.etag);
    }
}

/// The item as S3 holds it now (`Some(None)`: deleted), retried through outages; `None` when it is no document
/// the API serves (uploaded around it), which is no state to print: the next change may be.
async fn read_now(api: &Api, out: Output, key: &ItemKey) -> Result<Option<Option<Item>>, Failure> {
    let mut backoff = Backoff::new();
    loop {
        match api.look_consistent(key).await {
            Ok(item) => return Ok(Some(Some(item))),
            Err(e) if e.status() == Some(404) => return Ok(Some(None)),
            Err(e) if e.status() == Some(409) => return Ok(None),
            Err(e) => backoff.retry(out, e).await?,
        }
    }
}

/// Waits on the item itself (`?wait=` with its ETag) until it is another version (`Some`) or deleted (`None`).
async fn changed_from(
    api: &Api,
    out: Output,
    key: &ItemKey,
    etag: &str,
) -> Result<Option<Item>, Failure> {
    let mut backoff = Backoff::new();
    loop {
        let started = Instant::now();
        match api.wait_for_change(key, etag, MAX_WAIT_SECS).await {
            Ok(Watched::Changed(item)) => return Ok(Some(item)),
            Ok(Watched::Deleted) => return Ok(None),
            Ok(Watched::Unchanged) => {
                backoff.reset();
                pace(started).await;
            }
            Err(e) => backoff.retry(out, e).await?,
        }
    }
}

/// A deleted item has no ETag to wait on: the change feed under its key says when it may be back. The feed's
/// place is taken before the item is looked at, so a write that lands between the two is in the feed after
/// that place, and not missed.
async fn back(api: &Api, out: Output, key: &ItemKey) -> Result<Item, Failure> {
    let mut backoff = Backoff::new();
    let mut cursor = None;
    let mut look = true;
    loop {
        match back_step(api, key, &mut cursor, &mut look).await {
            Ok(Some(item)) => return Ok(item),
            Ok(None) => backoff.reset(),
            Err(e) => backoff.retry(out, e).await?,
        }
    }
}

/// One request of [`back`]: the feed's place when it has none, a look at the item when `look` says the feed
/// announced it, else one wait on the feed. Kept in `cursor` and `look`, so a failed request is simply repeated.
async fn back_step(
    api: &Api,
    key: &ItemKey,
    cursor: &mut Option<String>,
    look: &mut bool,
) -> Result<Option<Item>, ApiError> {
    let after = match cursor {
        Some(after) => after.clone(),
        None => cursor
            .insert(api.changes(key.as_str(), None, 0).await?.cursor)
            .clone(),
    };
    if *look {
        match api.look(key).await {
            Ok(item) => return Ok(Some(item)),
            Err(e) if e.status() == Some(404) => *look = false,
            Err(e) => return Err(e),
        }
    }
    let started = Instant::now();
    match api.changes(key.as_str(), Some(&after), MAX_WAIT_SECS).await {
        Ok(page) => {
            // The prefix also covers longer keys ("flag" covers "flags/x"): only this one's entries count.
            *look = page
                .changes
                .iter()
                .any(|c| c.key == key.as_str() && !c.deleted);
            if page.changes.is_empty() {
                pace(started).await;
            }
            *cursor = Some(page.cursor);
            Ok(None)
        }
        Err(ApiError::Status {
            status: 410,
            restart: Some(restart),
            ..
        }) => {
            // Too far behind for the feed to say what happened meanwhile: the item itself says.
            *cursor = Some(restart);
            *look = true;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn one_line_drops_only_the_whitespace_between_tokens() {
        let pretty = "{\n  \"a b\": [1, 2],\r\n\t\"q\": \"say \\\"hi\\\" \\\\\",  \"n\": 1.50 }\n";
        assert_eq!(
            one_line(pretty),
            r#"{"a b":[1,2],"q":"say \"hi\" \\","n":1.50}"#
        );
        assert_eq!(one_line(r#""  \\""#), r#""  \\""#);
    }
}
