//! `s3kv schema ls|get|put|rm`: the `/schemas` routes, shaped as `ls`, `get`, `put` and `rm` are for items.

use std::io::Write;

use clap::Subcommand;
use serde_json::json;
use serde_json::value::RawValue;

use super::{condition, key_prefix, read_source, valid_json};
use crate::api::{Api, ApiError};
use crate::output::{print, write_exact, Failure, Output};

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

/// Only write keys reach the schema routes: a read key's refusal says which key to use, rather than leave the
/// user to guess from "may not write" on a command that only reads.
pub(super) fn schema_access(error: ApiError, command: &str) -> Failure {
    if error.is_read_only_refusal() {
        return Failure::Other(format!(
            "{command} needs a write key: schemas are visible to write keys only ({error})"
        ));
    }
    error.into()
}

/// `s3kv schema ...`: thin over the `/schemas` routes, printing as `ls`, `get`, `put` and `rm` do for items.
pub(super) async fn exec(api: &Api, out: Output, command: SchemaCommand) -> Result<(), Failure> {
    match command {
        SchemaCommand::Ls { long } => {
            let schemas = api
                .schemas()
                .await
                .map_err(|e| schema_access(e, "s3kv schema ls"))?;
            match out {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string(&schemas).map_err(|e| Failure::Other(e.to_string()))?
                ),
                Output::Text => {
                    let mut stdout = std::io::stdout().lock();
                    for schema in &schemas {
                        // A schema uploaded around the API may not compile; writes under it are refused until fixed.
                        let problem = match (&schema.problem, schema.valid) {
                            (_, true) => String::new(),
                            (Some(problem), false) => format!("  (does not compile: {problem})"),
                            (None, false) => "  (does not compile)".to_owned(),
                        };
                        let line = if long {
                            let when = schema.last_modified.as_deref().unwrap_or("-");
                            format!(
                                "{}  {:>8}  {when}  {}{problem}",
                                schema.etag, schema.size, schema.prefix
                            )
                        } else {
                            format!("{}{problem}", schema.prefix)
                        };
                        let _ = writeln!(stdout, "{line}");
                    }
                }
            }
            Ok(())
        }
        SchemaCommand::Get { prefix, etag } => {
            let prefix = key_prefix(&prefix)?;
            let item = api
                .schema(&prefix)
                .await
                .map_err(|e| schema_access(e, "s3kv schema get"))?;
            match out {
                Output::Text => {
                    if etag {
                        eprintln!("ETag: {}", item.etag);
                    }
                    write_exact(&item.body);
                }
                Output::Json => {
                    let schema = serde_json::from_str::<&RawValue>(&item.body).map_err(|e| {
                        Failure::Other(format!("the API sent a schema that is not JSON: {e}"))
                    })?;
                    // Not `json!`, which would re-read the schema as a `Value`: it is printed as stored.
                    #[derive(serde::Serialize)]
                    struct SchemaLine<'a> {
                        prefix: &'a str,
                        etag: &'a str,
                        schema: &'a RawValue,
                    }
                    let line = SchemaLine {
                        prefix: prefix.as_str(),
                        etag: &item.etag,
                        schema,
                    };
                    let answer =
                        serde_json::to_string(&line).map_err(|e| Failure::Other(e.to_string()))?;
                    println!("{answer}");
                }
            }
            Ok(())
        }
        SchemaCommand::Put {
            prefix,
            file,
            create,
            if_match,
        } => {
            let prefix = key_prefix(&prefix)?;
            let body = read_source(file.as_deref()).await?;
            // Only JSON is checked here; whether it compiles is the API's to say (its drafts are the ones that count).
            valid_json(&body, "the schema")?;
            let (written, created) = api
                .put_schema(&prefix, body, condition(create, if_match.as_deref()))
                .await
                .map_err(|e| schema_access(e, "s3kv schema put"))?;
            let what = if created { "created" } else { "replaced" };
            print(
                out,
                &format!("{what} schema {prefix} (etag {})", written.etag),
                json!({ "prefix": prefix.as_str(), "etag": written.etag, "created": created }),
            );
            Ok(())
        }
        SchemaCommand::Rm { prefix, if_match } => {
            let prefix = key_prefix(&prefix)?;
            api.delete_schema(&prefix, condition(false, if_match.as_deref()))
                .await
                .map_err(|e| schema_access(e, "s3kv schema rm"))?;
            print(
                out,
                &format!("deleted schema {prefix}"),
                json!({ "prefix": prefix.as_str(), "deleted": true }),
            );
            Ok(())
        }
    }
}
