//! What every command shares about output: text for people or JSON for programs (`--output`), results on stdout
//! and what a person needs to know besides (an ETag with `get --etag`, progress, warnings, summaries) on stderr,
//! so stdout can be piped; stored values written byte for byte; and a failure's message and exit code.
//!
//! Stored values never pass through `serde_json::Value` (`json!`): that would reorder their members and round
//! their numbers. They are `&RawValue`s in `#[derive(Serialize)]` structs such as [`ItemLine`]; `json!` is only
//! for lines made of s3kv's own fields.

use std::io::Write;

use clap::ValueEnum;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::api;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Why a command failed, and so its exit code.
#[derive(Debug, Error)]
pub enum Failure {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Api(#[from] api::ApiError),
    #[error("{0}")]
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Api(e) if e.status() == Some(404) => 3,
            Failure::Api(e) if e.status() == Some(412) => 4,
            _ => 1,
        }
    }

    /// Says why on stderr, as text or as `{"error","exit"}`, and gives the exit code.
    pub fn report(&self, out: Output) -> u8 {
        match out {
            Output::Json => eprintln!(
                "{}",
                serde_json::json!({ "error": self.to_string(), "exit": self.exit_code() })
            ),
            Output::Text => eprintln!("s3kv: {self}"),
        }
        self.exit_code()
    }
}

/// Text for people, or the JSON value for programs.
pub(crate) fn print(out: Output, text: &str, value: serde_json::Value) {
    match out {
        Output::Text => println!("{text}"),
        Output::Json => println!("{value}"),
    }
}

/// What a watch says besides the changes goes to stderr, so stdout stays one kind of line.
pub(crate) fn note(out: Output, text: &str, value: serde_json::Value) {
    match out {
        Output::Text => eprintln!("{text}"),
        Output::Json => eprintln!("{value}"),
    }
}

/// One line on stdout, at once (stdout is line-buffered even into a pipe); `false` once nobody reads it any
/// more (`s3kv watch ... | head -n 1`), which ends the watch quietly rather than with a panic.
pub(crate) fn emit(line: &str) -> Result<bool, Failure> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Other(format!("writing to stdout: {e}"))),
    }
}

/// Exactly the stored bytes into a pipe or file; a newline for a person's prompt.
pub(crate) fn write_exact(body: &str) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(body.as_bytes());
    if terminal && !body.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
}

/// `get --output json`'s shape, with the value as stored (a `json!` value would reorder its keys and round its
/// numbers).
#[derive(serde::Serialize)]
pub(crate) struct ItemLine<'a> {
    pub key: &'a str,
    pub etag: &'a str,
    pub writer: Option<&'a str>,
    pub value: &'a RawValue,
    /// When the item expires (`X-S3kv-Expires-At`), only when it does.
    #[serde(rename = "expiresAt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<&'a str>,
}
