//! `validate [PREFIX]`: the stored items under PREFIX checked against the schemas that govern them.

use std::io::Write;

use clap::Args;
use s3kv::key::KeyPrefix;
use s3kv::schema::{Schema, Violation};
use serde_json::json;

use super::schema::schema_access;
use super::{fetch, item_key};
use crate::api::{Api, ApiError};
use crate::output::{note, Failure, Output};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(default_value = "")]
    prefix: String,
}

/// Whether a schema's prefix governs some key under `prefix`: it covers them all (`flags/` for `flags/beta/`) or
/// lies inside (`flags/beta/` for `flags/`). Two prefixes share keys exactly when one starts with the other.
fn overlaps(schema: &str, prefix: &str) -> bool {
    schema.starts_with(prefix) || prefix.starts_with(schema)
}

/// A schema that may govern keys under the prefix being validated: compiled, or why it does not compile.
struct Governing {
    prefix: String,
    schema: Result<Schema, String>,
}

/// The schema governing `key`: the longest prefix it starts with, compiled or not, as the writer picks it (a
/// broken schema does not hand its keys to a shorter one). `schemas` is longest first.
fn governing<'a>(schemas: &'a [Governing], key: &str) -> Option<&'a Governing> {
    schemas.iter().find(|g| key.starts_with(g.prefix.as_str()))
}

/// `validate --output json`'s line for an invalid item, with the key first.
#[derive(serde::Serialize)]
struct InvalidLine<'a> {
    key: &'a str,
    schema: &'a str,
    violations: &'a [Violation],
}

/// "1 item", "2 items".
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What `validate` found, for its summary and exit code.
#[derive(Default)]
struct Tally {
    checked: usize,
    invalid: usize,
    no_schema: usize,
    /// Under a schema that does not compile.
    not_checked: usize,
    /// Answered with an error by the batch read.
    unreadable: usize,
}

/// `s3kv validate [PREFIX]`: what writes through the API cannot catch (uploads straight to S3, items written
/// before their schema changed), found by checking every stored item under PREFIX against the schema that governs
/// it, compiled here with the API's own code ([`Schema::compile`]). Only items under a schema are read, in batches
/// of 1,000 keys (batch gets of 100): the listed keys are held for the whole run, values one batch at a time.
pub(super) async fn exec(api: &Api, out: Output, args: ValidateArgs) -> Result<(), Failure> {
    let prefix = args.prefix.as_str();
    let listed = api.schemas().await.map_err(|e| {
        // A scoped write key is answered with the schemas it may see; only a key that sees none is refused.
        if e.status() == Some(403) {
            Failure::Other(format!(
                "s3kv validate needs a write key: schemas are visible to write keys only ({e})"
            ))
        } else {
            e.into()
        }
    })?;
    let mut schemas = Vec::new();
    for entry in listed.into_iter().filter(|s| overlaps(&s.prefix, prefix)) {
        let key_prefix = KeyPrefix::parse(&entry.prefix).map_err(|e| {
            ApiError::Unexpected(format!("a schema prefix {:?}: {e}", entry.prefix))
        })?;
        let document = match api.schema(&key_prefix).await {
            Ok(item) => item.body,
            // Deleted since the listing: it governs nothing now.
            Err(e) if e.status() == Some(404) => continue,
            Err(e) => return Err(schema_access(e, "s3kv validate")),
        };
        let schema = Schema::compile(document.as_bytes()).map_err(|e| e.to_string());
        schemas.push(Governing {
            prefix: entry.prefix,
            schema,
        });
    }
    // The listing is in prefix order, so the problems print in it; then longest first, for `governing`.
    let mut stdout = std::io::stdout().lock();
    let mut broken = 0;
    for governing in &schemas {
        if let Err(problem) = &governing.schema {
            broken += 1;
            let line = match out {
                Output::Text => format!("schema {}: does not compile: {problem}", governing.prefix),
                Output::Json => {
                    json!({ "schema": governing.prefix, "problem": problem }).to_string()
                }
            };
            let _ = writeln!(stdout, "{line}");
        }
    }
    schemas.sort_by_key(|g| std::cmp::Reverse(g.prefix.len()));

    let mut tally = Tally::default();
    let mut wanted = Vec::new();
    for item in api.list(prefix).await? {
        match governing(&schemas, &item.key).map(|g| g.schema.is_ok()) {
            None => tally.no_schema += 1,
            Some(false) => tally.not_checked += 1,
            Some(true) => wanted.push(item_key(&item.key)?),
        }
    }
    for keys in wanted.chunks(1000) {
        for answer in fetch(api, keys).await? {
            if let Some(error) = &answer.error {
                tally.unreadable += 1;
                note(
                    out,
                    &format!("{}: not read: {error}", answer.key),
                    json!({ "key": answer.key, "error": error }),
                );
                continue;
            }
            // Deleted since the listing: nothing to check.
            let (true, Some(value)) = (answer.found, &answer.value) else {
                continue;
            };
            let Some(Governing {
                prefix: schema_prefix,
                schema: Ok(schema),
            }) = governing(&schemas, &answer.key)
            else {
                continue;
            };
            let document: serde_json::Value = match serde_json::from_str(value.get()) {
                Ok(document) => document,
                Err(e) => {
                    tally.unreadable += 1;
                    note(
                        out,
                        &format!("{}: not read: {e}", answer.key),
                        json!({ "key": answer.key, "error": e.to_string() }),
                    );
                    continue;
                }
            };
            tally.checked += 1;
            let violations = schema.check(&document);
            if violations.is_empty() {
                continue;
            }
            tally.invalid += 1;
            match out {
                Output::Json => {
                    let line = InvalidLine {
                        key: &answer.key,
                        schema: schema_prefix,
                        violations: &violations,
                    };
                    let line =
                        serde_json::to_string(&line).map_err(|e| Failure::Other(e.to_string()))?;
                    let _ = writeln!(stdout, "{line}");
                }
                Output::Text => {
                    for v in &violations {
                        // The document itself (a missing required property) has the empty pointer: no path then.
                        let at = if v.path.is_empty() {
                            String::new()
                        } else {
                            format!("{}: ", v.path)
                        };
                        let _ = writeln!(
                            stdout,
                            "{}: {at}{} (schema {schema_prefix}, at {})",
                            answer.key, v.message, v.schema_path
                        );
                    }
                }
            }
        }
    }
    drop(stdout);

    let compiled = schemas.len() - broken;
    let mut summary = format!(
        "checked {} under {}: {} invalid, {} under no schema",
        counted(tally.checked, "item", "items"),
        counted(compiled, "schema", "schemas"),
        tally.invalid,
        tally.no_schema
    );
    if tally.not_checked > 0 {
        summary.push_str(&format!(
            ", {} not checked (their schema does not compile)",
            tally.not_checked
        ));
    }
    if tally.unreadable > 0 {
        summary.push_str(&format!(", {} not read", tally.unreadable));
    }
    note(
        out,
        &summary,
        json!({
            "checked": tally.checked,
            "schemas": compiled,
            "invalid": tally.invalid,
            "noSchema": tally.no_schema,
            "notChecked": tally.not_checked,
            "unreadable": tally.unreadable,
            "brokenSchemas": broken,
        }),
    );
    let mut problems = Vec::new();
    if tally.invalid > 0 {
        problems.push(counted(
            tally.invalid,
            "item breaks its schema",
            "items break their schemas",
        ));
    }
    if broken > 0 {
        problems.push(format!(
            "{} not compile",
            counted(broken, "schema does", "schemas do")
        ));
    }
    if tally.unreadable > 0 {
        problems.push(format!(
            "{} not be read",
            counted(tally.unreadable, "item could", "items could")
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Failure::Other(problems.join("; ")))
}
