//! The commands: [`Command`] lists them (each variant's doc comment is its `--help` summary), [`run`] sends each
//! to its module, and the helpers below are the ones several modules share (key and prefix parsing, conditions,
//! reading a value, batch reads). Each module owns its command's flags (a clap `Args` struct) beside the function
//! that uses them, as cargo's `src/bin/cargo/commands/` does. Printing is in [`crate::output`].

mod aws;
mod completions;
mod configure;
mod console;
mod doctor;
mod edit;
mod history;
mod items;
mod redrive;
mod schema;
mod transfer;
mod validate;
mod watch;

use clap::Subcommand;
use s3kv::key::{ItemKey, KeyPrefix};

use crate::api::{Api, ApiError, BatchItem, Condition};
use crate::output::Failure;
use crate::{profile, Cli, DEFAULT_ENDPOINT};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an item's JSON, exactly as stored
    Get(items::GetArgs),
    /// Write an item from a file, or stdin (no FILE, or -)
    Put(items::PutArgs),
    /// Delete an item
    Rm(items::RmArgs),
    /// List item keys (every page)
    Ls(items::LsArgs),
    /// Read several items at once; prints {"key": value or null, ...}
    BatchGet(items::BatchGetArgs),
    /// Edit an item in $EDITOR; written back only if nobody changed it meanwhile
    Edit(edit::EditArgs),
    /// Print every item under a prefix as one JSON object {"key": value, ...}
    Export(transfer::ExportArgs),
    /// Write the items of an export file, or of a directory of KEY.json files
    Import(transfer::ImportArgs),
    /// An item's versions, newest first
    History(history::HistoryArgs),
    /// Make an older version the item again
    Restore(history::RestoreArgs),
    /// Print changes as they happen, one JSON line each, until stopped: an item's values (KEY), or what changes
    /// under a prefix (--prefix)
    ///
    /// KEY: its current state first, then each new version as {"key","etag","writer","value"}, or
    /// {"key","deleted":true}; a deleted item is watched until it comes back. --prefix: each changed item as
    /// {"key","etag","deleted"} (its state now, not its value); the cursor to resume from (--after) goes to
    /// stderr as "cursor: C" after each batch, and to --cursor-file. Waits ride out outages (retried with backoff).
    /// Changes are learnt of over push (a WebSocket subscription; after a lost connection it reconnects and
    /// catches up) unless --transport poll, or push cannot be reached, when it long-polls.
    Watch(watch::WatchArgs),
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
    Validate(validate::ValidateArgs),
    /// The JSON Schemas that writes under a key prefix must meet: ls, get, put, rm (write keys only)
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Check a stack end to end: the API and the key, and a write reaching the cache (OK or FAIL with the fix)
    ///
    /// Run it first after a deploy. Checks that the API answers and refuses a wrong key, that the key reads, and
    /// for a write key that a scratch item written under --scratch-prefix is served from the cache (X-Cache: HIT)
    /// within --within seconds, then deletes it (always). A read key's write checks are skipped. With
    /// --queue-url, that the syncer's failure queue is empty (AWS credentials).
    #[command(after_help = "Exit codes: 0 every check passed, 1 a check failed, 2 usage.")]
    Doctor(doctor::DoctorArgs),
    /// Replay the syncs that failed after retries: each failure-queue record's S3 event is sent to the syncer
    /// again (an asynchronous Lambda invoke), then the message is deleted
    ///
    /// Talks to SQS and Lambda with the standard AWS credentials (environment, profile, SSO); needs
    /// sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility and lambda:InvokeFunction on the
    /// syncer. Replays are safe: the syncer keeps only changes newer than what the cache holds. --dry-run lists the
    /// messages' keys and leaves them in the queue.
    #[command(
        after_help = "Exit codes: 0 every message replayed (or listed), 1 a message could not be, 2 usage."
    )]
    Redrive(redrive::RedriveArgs),
    /// Serve the console, a web app to browse, edit, diff and roll back items, on 127.0.0.1 (prints its URL)
    ///
    /// Its API calls go through this process to the endpoint with the key (flag, environment or profile), so the
    /// key never reaches the browser. The URL holds a token made for this run; other web pages cannot use the
    /// console. Runs until stopped (Ctrl-C).
    Console(console::ConsoleArgs),
    /// Save an endpoint and its API key (read from stdin) as a profile (--profile)
    Configure(configure::ConfigureArgs),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    // Neither needs an endpoint or a key: no profile is read for them.
    match &cli.command {
        Command::Completions(args) => return completions::exec(args),
        Command::Configure(args) => return configure::exec(&cli, args).await,
        _ => {}
    }
    // Needs AWS credentials, not the API.
    if let Command::Redrive(args) = cli.command {
        return redrive::exec(cli.output, args).await;
    }
    let (api, own) = client(&cli)?;
    let out = cli.output;
    match cli.command {
        Command::Get(args) => items::get(&api, out, args).await,
        Command::Put(args) => items::put(&api, out, args).await,
        Command::Rm(args) => items::rm(&api, out, args).await,
        Command::Ls(args) => items::ls(&api, out, args).await,
        Command::BatchGet(args) => items::batch_get(&api, out, args).await,
        Command::Edit(args) => edit::exec(&api, out, args).await,
        Command::Export(args) => transfer::export(&api, args).await,
        Command::Import(args) => transfer::import(&api, out, args).await,
        Command::History(args) => history::history(&api, out, args).await,
        Command::Restore(args) => history::restore(&api, out, args).await,
        Command::Watch(args) => watch::exec(&api, out, args, own.as_ref()).await,
        Command::Validate(args) => validate::exec(&api, out, args).await,
        Command::Schema(command) => schema::exec(&api, out, command).await,
        Command::Doctor(args) => doctor::exec(&api, out, args).await,
        Command::Console(args) => console::exec(&api, out, args).await,
        Command::Configure(_) | Command::Completions(_) | Command::Redrive(_) => {
            unreachable!("handled above")
        }
    }
}

/// An endpoint is a base URL the HTTP client can call.
fn check_endpoint(endpoint: &str) -> Result<(), Failure> {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "endpoint {endpoint:?} must start with http:// or https://"
    )))
}

/// Flags and environment first (clap read both), then the profile, then s3kv-local's address; with the profile
/// when the endpoint is its own (its other settings, as its key, go to that endpoint only).
fn client(cli: &Cli) -> Result<(Api, Option<profile::Profile>), Failure> {
    let profiles = profile::load().map_err(Failure::Usage)?;
    let saved = profiles.get(&cli.profile).cloned().unwrap_or_default();
    if cli.profile != "default" && !profiles.contains_key(&cli.profile) {
        return Err(Failure::Usage(format!(
            "no profile {:?}; create it with `echo \"$KEY\" | s3kv configure --profile {} URL`",
            cli.profile, cli.profile
        )));
    }
    let endpoint = cli
        .endpoint
        .clone()
        .or(saved.endpoint.clone())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    check_endpoint(&endpoint)?;
    // A profile's key goes to the profile's own endpoint only, never to one given by flag or environment.
    let own = (saved.endpoint.as_deref() == Some(endpoint.as_str())).then_some(saved);
    let api_key = cli
        .api_key
        .clone()
        .or_else(|| own.as_ref().and_then(|p| p.api_key.clone()));
    Ok((Api::new(&endpoint, api_key), own))
}

fn item_key(raw: &str) -> Result<ItemKey, Failure> {
    ItemKey::parse(raw).map_err(|e| Failure::Usage(format!("invalid key {raw:?}: {e}")))
}

fn key_prefix(raw: &str) -> Result<KeyPrefix, Failure> {
    KeyPrefix::parse(raw).map_err(|e| Failure::Usage(format!("invalid prefix {raw:?}: {e}")))
}

fn condition(create: bool, if_match: Option<&str>) -> Condition<'_> {
    match (create, if_match) {
        (true, _) => Condition::Absent,
        (false, Some(etag)) => Condition::Matches(etag),
        (false, None) => Condition::None,
    }
}

/// The API's own document rules (JSON, nesting, unique member names), checked before anything is sent.
fn valid_json(text: &str, what: &str) -> Result<(), Failure> {
    s3kv::document::validate(text.as_bytes())
        .map_err(|e| Failure::Usage(format!("{what} is not a document the API accepts: {e}")))
}

/// A value or schema to write: from a file, or stdin (no FILE, or `-`).
async fn read_source(file: Option<&str>) -> Result<String, Failure> {
    let bytes = match file {
        None | Some("-") => {
            let mut buffer = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut buffer)
                .await
                .map_err(|e| Failure::Other(format!("reading stdin: {e}")))?;
            buffer
        }
        Some(path) => tokio::fs::read(path)
            .await
            .map_err(|e| Failure::Usage(format!("{path}: {e}")))?,
    };
    String::from_utf8(bytes).map_err(|_| Failure::Usage("the value is not UTF-8 text".into()))
}

/// Batch gets of up to 100 keys; a batch whose answer would pass Lambda's 6 MB response limit is split in two
/// until it fits.
async fn fetch(api: &Api, keys: &[ItemKey]) -> Result<Vec<BatchItem>, Failure> {
    let mut pending: Vec<&[ItemKey]> = keys.chunks(100).rev().collect();
    let mut items = Vec::with_capacity(keys.len());
    while let Some(batch) = pending.pop() {
        match api.batch_get(batch).await {
            Ok(answers) => items.extend(answers),
            Err(ApiError::Status {
                code: Some(code), ..
            }) if code == "response_too_large" && batch.len() > 1 => {
                let (first, second) = batch.split_at(batch.len() / 2);
                pending.push(second);
                pending.push(first);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(items)
}
