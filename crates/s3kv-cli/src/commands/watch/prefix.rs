//! `watch --prefix PREFIX`: what changes under a prefix, from the change feed, resumable from a cursor.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::{pace, Backoff};
use crate::api::{Api, ApiError, MAX_WAIT_SECS};
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
/// closes is printed: resuming from it never skips a change that was not printed.
pub(super) async fn watch_prefix(
    api: &Api,
    out: Output,
    follow: Follow<'_>,
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
    let mut backoff = Backoff::new();
    let mut cursor = match after.or(saved) {
        Some(cursor) => cursor,
        None => loop {
            match api.changes(prefix, None, 0).await {
                Ok(page) => break page.cursor,
                Err(e) => backoff.retry(out, e).await?,
            }
        },
    };
    let tell = |cursor: &str| -> Result<(), Failure> {
        note(
            out,
            &format!("cursor: {cursor}"),
            json!({ "cursor": cursor }),
        );
        cursor_file.map_or(Ok(()), |path| write_cursor(path, cursor))
    };
    tell(&cursor)?;
    loop {
        let started = Instant::now();
        match api.changes(prefix, Some(&cursor), MAX_WAIT_SECS).await {
            Ok(page) if page.changes.is_empty() => {
                backoff.reset();
                // Nothing here, though the feed may have moved on elsewhere: a later start need not reread that.
                if let (Some(path), true) = (cursor_file, page.cursor != cursor) {
                    write_cursor(path, &page.cursor)?;
                }
                cursor = page.cursor;
                pace(started).await;
            }
            Ok(page) => {
                backoff.reset();
                for change in &page.changes {
                    let line =
                        serde_json::to_string(change).map_err(|e| Failure::Other(e.to_string()))?;
                    if !emit(&line)? {
                        return Ok(());
                    }
                }
                cursor = page.cursor;
                tell(&cursor)?;
                if once {
                    return Ok(());
                }
            }
            Err(ApiError::Status {
                status: 410,
                restart: Some(restart),
                message,
                ..
            }) => {
                let (under, ls) = match prefix {
                    "" => (String::new(), "s3kv ls".to_owned()),
                    prefix => (format!(" under {prefix}"), format!("s3kv ls {prefix}")),
                };
                note(
                    out,
                    &format!(
                        "s3kv: the feed no longer holds the changes after the cursor, so changes{under} were missed: list the items again ({ls}) to catch up; following on from the oldest change it holds"
                    ),
                    json!({ "warning": "cursor_expired", "message": message, "cursor": restart }),
                );
                cursor = restart;
                tell(&cursor)?;
            }
            Err(e) => backoff.retry(out, e).await?,
        }
    }
}
