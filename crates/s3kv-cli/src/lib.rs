//! `s3kv`, the command-line client of the s3kv HTTP API: for people (edit a flag in `$EDITOR`, see its history)
//! and for CI (exit codes, `--output json`, export and import).
//!
//! The endpoint and key come from `--endpoint` / `--api-key`, then `S3KV_ENDPOINT` / `S3KV_API_KEY`, then the
//! profile (`--profile`, default `default`) that `s3kv configure` wrote, and the endpoint falls back to
//! s3kv-local's `http://127.0.0.1:3000`. Exit codes: 0 success, 2 usage (including a key or JSON value refused
//! before anything is sent), 3 not found, 4 precondition failed (412), 1 anything else: `validate` finding an item
//! that breaks its schema, or a schema that does not compile, is 1 too, as `import` with failed items is (a count
//! of bad items, not one request's answer as 3 and 4 are).
//!
//! The modules, from the command line in:
//! - here: [`Cli`], the global flags (endpoint, key, profile, `--output`);
//! - `commands`: the [`Command`] list and [`run`], which sends each command to its module (one per command group:
//!   `items` for get/put/rm/ls/batch-get, `edit`, `transfer` for export/import, `history` for history/restore,
//!   `schema`, `validate`, `watch`, `console` (the web app, served on 127.0.0.1, its API calls forwarded with the
//!   key), `doctor` (a stack checked end to end), `redrive` (the failure queue replayed to the syncer, over SQS and
//!   Lambda with SigV4), `configure`, `completions`), each owning its flags beside the code that uses them, and
//!   the helpers several share (key parsing, conditions, batch reads);
//! - `output`: text or JSON on stdout, notes on stderr, stored values byte for byte, and [`Failure`], a failed
//!   command's message and exit code;
//! - [`api`]: the HTTP client of the s3kv API; [`profile`]: the saved profiles `configure` writes.

pub mod api;
mod commands;
mod output;
pub mod profile;

use clap::Parser;

pub use commands::{run, Command};
pub use output::{Failure, Output};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:3000";

#[derive(Debug, Parser)]
#[command(
    name = "s3kv",
    version,
    about = "The s3kv JSON key-value store from the command line",
    after_help = "Exit codes: 0 success, 2 usage, 3 not found, 4 precondition failed, 1 anything else."
)]
pub struct Cli {
    /// The API's base URL (s3kv-local: http://127.0.0.1:3000; AWS: the stage URL, without /items)
    #[arg(long, global = true, env = "S3KV_ENDPOINT")]
    pub endpoint: Option<String>,
    /// The API key (x-api-key)
    #[arg(long, global = true, env = "S3KV_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The profile to read endpoint and key from when not given otherwise
    #[arg(long, global = true, env = "S3KV_PROFILE", default_value = "default")]
    pub profile: String,
    /// text for people, json for programs
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}
