//! `s3kv`, the command-line client of the s3kv HTTP API: for people (edit a flag in `$EDITOR`, see its history)
//! and for CI (exit codes, `--output json`, export and import).
//!
//! The endpoint and key come from `--endpoint` / `--api-key`, then `S3KV_ENDPOINT` / `S3KV_API_KEY`, then the
//! profile (`--profile`, default `default`) that `s3kv configure` wrote, and the endpoint falls back to
//! s3kv-local's `http://127.0.0.1:3000`. Exit codes: 0 success, 2 usage (including a key or JSON value refused
//! before anything is sent), 3 not found, 4 precondition failed (412), 1 anything else: `validate` finding an item
//! that breaks its schema, or a schema that does not compile, is 1 too, as `import` with failed items is (a count
//! of bad items, not one request's answer as 3 and 4 are).

pub mod api;
mod commands;
pub mod profile;

use clap::{Parser, Subcommand, ValueEnum};
use thiserror::Error;

pub use commands::run;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an item's JSON, exactly as stored
    Get {
        key: String,
        /// Also print its ETag (on stderr, so stdout stays the value)
        #[arg(long)]
        etag: bool,
        /// An older version (from `s3kv history`)
        #[arg(long)]
        version: Option<String>,
    },
    /// Write an item from a file, or stdin (no FILE, or -)
    Put {
        key: String,
        file: Option<String>,
        /// Only if the item does not exist (If-None-Match: *)
        #[arg(long, conflicts_with = "if_match")]
        create: bool,
        /// Only if the item still has this ETag (compare-and-swap)
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete an item
    Rm {
        key: String,
        /// Only if the item still has this ETag
        #[arg(long)]
        if_match: Option<String>,
    },
    /// List item keys (every page)
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        /// With ETag, size and last modification
        #[arg(long, short)]
        long: bool,
    },
    /// Read several items at once; prints {"key": value or null, ...}
    BatchGet {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Edit an item in $EDITOR; written back only if nobody changed it meanwhile
    Edit { key: String },
    /// Print every item under a prefix as one JSON object {"key": value, ...}
    Export {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Write the items of an export file, or of a directory of KEY.json files
    Import {
        source: String,
        /// Check every key and value, write nothing
        #[arg(long)]
        dry_run: bool,
        /// Skip items that already exist instead of replacing them
        #[arg(long)]
        create_only: bool,
        /// Writes in flight at once
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
    },
    /// An item's versions, newest first
    History {
        key: String,
        /// Most versions to show (all when not given)
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Make an older version the item again
    Restore {
        key: String,
        version: String,
        /// Only if the item still has this ETag
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Print changes as they happen, one JSON line each, until stopped: an item's values (KEY), or what changes
    /// under a prefix (--prefix)
    ///
    /// KEY: its current state first, then each new version as {"key","etag","writer","value"}, or
    /// {"key","deleted":true}; a deleted item is watched until it comes back. --prefix: each changed item as
    /// {"key","etag","deleted"} (its state now, not its value); the cursor to resume from (--after) goes to
    /// stderr as "cursor: C" after each batch, and to --cursor-file. Waits ride out outages (retried with backoff).
    // `conflicts_with = "key"` below, not `requires = "prefix"`: clap lets any member of a required group satisfy
    // a `requires` on another (clap#4707), so `watch KEY --after C` would run with --after ignored.
    #[command(group(clap::ArgGroup::new("watched").required(true).args(["key", "prefix"])))]
    Watch {
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
    },
    /// Check the stored items under PREFIX against their schemas; prints each violation of each invalid item
    ///
    /// For what the API's writes cannot catch: items uploaded straight to S3, and items written before their
    /// schema changed. Each item is checked against the schema of the longest prefix it starts with; items under no
    /// schema are counted, not checked. One line per violation on stdout ("KEY: PATH: MESSAGE (schema S, at
    /// SCHEMA_PATH)"), or with --output json one line per invalid item {"key","schema","violations":[{"path",
    /// "schemaPath","message"}]}, and a schema that does not compile as {"schema","problem"}; the counts go to
    /// stderr. Needs a write key (schemas are visible to write keys only). Reads through the cache, as
    /// export does.
    #[command(
        after_help = "Exit codes: 0 every item checked meets its schema, 1 an item breaks its schema or a \
schema does not compile (or any other failure: unreachable, forbidden), 2 usage."
    )]
    Validate {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// The JSON Schemas that writes under a key prefix must meet: ls, get, put, rm (write keys only)
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Save an endpoint and its API key (read from stdin) as a profile (--profile)
    Configure {
        /// The API's base URL
        endpoint: String,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
}

/// `s3kv schema ...`: the `/schemas` routes, shaped as `get`, `put`, `rm` and `ls` are for items. A PREFIX is taken
/// as typed (`flags/` and `flags` are different prefixes: `flags` also covers `flagship`).
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Every schema, in prefix order, with whether it compiles
    Ls {
        /// With ETag, size and last modification
        #[arg(long, short)]
        long: bool,
    },
    /// Print a prefix's schema exactly as stored
    Get {
        prefix: String,
        /// Also print its ETag (on stderr, so stdout stays the schema)
        #[arg(long)]
        etag: bool,
    },
    /// Set a prefix's schema from a file, or stdin (no FILE, or -); one that does not compile is refused with why
    Put {
        prefix: String,
        file: Option<String>,
        /// Only if the prefix has no schema yet (If-None-Match: *)
        #[arg(long, conflicts_with = "if_match")]
        create: bool,
        /// Only if the schema still has this ETag
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete a prefix's schema; its keys fall to the next shorter prefix's schema, if any
    Rm {
        prefix: String,
        /// Only if the schema still has this ETag
        #[arg(long)]
        if_match: Option<String>,
    },
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
}
