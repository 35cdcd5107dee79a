//! One function per command. Results go to stdout (the value, a listing, a summary); what a person needs to
//! know besides (an ETag with `get --etag`, progress) goes to stderr, so stdout can be piped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use s3kv::key::{ItemKey, KeyPrefix};
use s3kv::schema::{Schema, Violation};
use serde_json::json;
use serde_json::value::RawValue;

use crate::api::{Api, ApiError, Condition, Item, Watched, MAX_WAIT_SECS};
use crate::{profile, Cli, Command, Failure, Output, SchemaCommand, DEFAULT_ENDPOINT};

pub async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "s3kv", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Configure { endpoint } = &cli.command {
        return configure(&cli, endpoint).await;
    }
    let api = client(&cli)?;
    let out = cli.output;
    match cli.command {
        Command::Get { key, etag, version } => get(&api, out, &key, etag, version.as_deref()).await,
        Command::Put {
            key,
            file,
            create,
            if_match,
        } => {
            let condition = condition(create, if_match.as_deref());
            put(&api, out, &key, file.as_deref(), condition).await
        }
        Command::Rm { key, if_match } => {
            let key = item_key(&key)?;
            api.delete(&key, condition(false, if_match.as_deref()))
                .await?;
            print(
                out,
                &format!("deleted {key}"),
                json!({ "key": key.as_str(), "deleted": true }),
            );
            Ok(())
        }
        Command::Ls { prefix, long } => ls(&api, out, &prefix, long).await,
        Command::BatchGet { keys } => batch_get(&api, out, &keys).await,
        Command::Edit { key } => edit(&api, out, &key).await,
        Command::Export { prefix } => export(&api, &prefix).await,
        Command::Import {
            source,
            dry_run,
            create_only,
            concurrency,
        } => {
            import(
                &api,
                out,
                Path::new(&source),
                dry_run,
                create_only,
                concurrency.into(),
            )
            .await
        }
        Command::History { key, limit } => {
            history(&api, out, &key, limit.map(|l| l as usize)).await
        }
        Command::Restore {
            key,
            version,
            if_match,
        } => {
            let key = item_key(&key)?;
            let (written, created) = api
                .restore(&key, &version, condition(false, if_match.as_deref()))
                .await?;
            let what = if created { "undeleted" } else { "restored" };
            print(
                out,
                &format!("{what} {key} from {version} (etag {})", written.etag),
                json!({ "key": key.as_str(), "etag": written.etag, "restoredFrom": version, "created": created }),
            );
            Ok(())
        }
        Command::Watch {
            key,
            prefix,
            after,
            cursor_file,
            once,
        } => match (key, prefix) {
            (Some(key), _) => watch_item(&api, out, &key, once).await,
            (None, Some(prefix)) => {
                let follow = Follow {
                    prefix: &prefix,
                    after,
                    cursor_file: cursor_file.as_deref(),
                    once,
                };
                watch_prefix(&api, out, follow).await
            }
            (None, None) => Err(Failure::Usage("watch KEY, or watch --prefix PREFIX".into())),
        },
        Command::Validate { prefix } => validate(&api, out, &prefix).await,
        Command::Schema(command) => schema(&api, out, command).await,
        Command::Configure { .. } | Command::Completions { .. } => unreachable!("handled above"),
    }
}

/// Flags and environment first (clap read both), then the profile, then s3kv-local's address.
fn client(cli: &Cli) -> Result<Api, Failure> {
    let profiles = profile::load().map_err(Failure::Usage)?;
    let saved = profiles.get(&cli.profile).cloned().unwrap_or_default();
    if cli.profile != "default" && !profiles.contains_key(&cli.profile) {
        return Err(Failure::Usage(format!(
            "no profile {:?}; create it with `s3kv configure --profile {} --endpoint URL --api-key KEY`",
            cli.profile, cli.profile
        )));
    }
    let endpoint = cli
        .endpoint
        .clone()
        .or(saved.endpoint.clone())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(Failure::Usage(format!(
            "endpoint {endpoint:?} must start with http:// or https://"
        )));
    }
    // A profile's key goes to the profile's own endpoint only, never to one given by flag or environment.
    let api_key = cli.api_key.clone().or_else(|| {
        (saved.endpoint.as_deref() == Some(endpoint.as_str()))
            .then_some(saved.api_key)
            .flatten()
    });
    Ok(Api::new(&endpoint, api_key))
}

/// The key is read from stdin, never from a flag or the environment: a flag shows in `ps` and the shell's
/// history, and an exported S3KV_API_KEY (the quick start's) must not become another profile's key unnoticed.
async fn configure(cli: &Cli, endpoint: &str) -> Result<(), Failure> {
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(Failure::Usage(format!(
            "endpoint {endpoint:?} must start with http:// or https://"
        )));
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("API key for {endpoint}: ");
    }
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    tokio::io::AsyncBufReadExt::read_line(&mut stdin, &mut line)
        .await
        .map_err(|e| Failure::Other(format!("reading the key from stdin: {e}")))?;
    let api_key = line.trim();
    if api_key.is_empty() {
        return Err(Failure::Usage(
            "no API key on stdin: echo \"$KEY\" | s3kv configure [--profile NAME] URL".into(),
        ));
    }
    let saved = profile::Profile {
        endpoint: Some(endpoint.to_owned()),
        api_key: Some(api_key.to_owned()),
    };
    let path = profile::save(&cli.profile, saved).map_err(Failure::Other)?;
    print(
        cli.output,
        &format!("profile {} saved in {}", cli.profile, path.display()),
        json!({ "profile": cli.profile, "path": path }),
    );
    Ok(())
}

fn item_key(raw: &str) -> Result<ItemKey, Failure> {
    ItemKey::parse(raw).map_err(|e| Failure::Usage(format!("invalid key {raw:?}: {e}")))
}

fn condition(create: bool, if_match: Option<&str>) -> Condition<'_> {
    match (create, if_match) {
        (true, _) => Condition::Absent,
        (false, Some(etag)) => Condition::Matches(etag),
        (false, None) => Condition::None,
    }
}

fn valid_json(text: &str, what: &str) -> Result<(), Failure> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(drop)
        .map_err(|e| Failure::Usage(format!("{what} is not valid JSON: {e}")))
}

/// Text for people, or the JSON value for programs.
fn print(out: Output, text: &str, value: serde_json::Value) {
    match out {
        Output::Text => println!("{text}"),
        Output::Json => println!("{value}"),
    }
}

async fn get(
    api: &Api,
    out: Output,
    key: &str,
    show_etag: bool,
    version: Option<&str>,
) -> Result<(), Failure> {
    let key = item_key(key)?;
    let item = api.get(&key, version, false).await?;
    match out {
        Output::Text => {
            if show_etag {
                eprintln!("ETag: {}", item.etag);
            }
            write_exact(&item.body);
        }
        Output::Json => {
            let value = serde_json::from_str::<&RawValue>(&item.body).map_err(|e| {
                Failure::Other(format!("the API sent a value that is not JSON: {e}"))
            })?;
            let line = ItemLine {
                key: key.as_str(),
                etag: &item.etag,
                writer: item.writer.as_deref(),
                value,
            };
            let answer = serde_json::to_string(&line).map_err(|e| Failure::Other(e.to_string()))?;
            println!("{answer}");
        }
    }
    Ok(())
}

/// Exactly the stored bytes into a pipe or file; a newline for a person's prompt.
fn write_exact(body: &str) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(body.as_bytes());
    if terminal && !body.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
}

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

async fn put(
    api: &Api,
    out: Output,
    key: &str,
    file: Option<&str>,
    condition: Condition<'_>,
) -> Result<(), Failure> {
    let key = item_key(key)?;
    let body = read_source(file).await?;
    valid_json(&body, "the value")?;
    let (written, created) = api.put(&key, body, condition).await?;
    let what = if created { "created" } else { "replaced" };
    print(
        out,
        &format!("{what} {key} (etag {})", written.etag),
        json!({ "key": key.as_str(), "etag": written.etag, "created": created }),
    );
    Ok(())
}

async fn ls(api: &Api, out: Output, prefix: &str, long: bool) -> Result<(), Failure> {
    let items = api.list(prefix).await?;
    match out {
        Output::Json => {
            let items: Vec<_> = items
                .iter()
                .map(|i| json!({ "key": i.key, "etag": i.etag, "size": i.size, "lastModified": i.last_modified }))
                .collect();
            println!("{}", serde_json::Value::Array(items));
        }
        Output::Text => {
            let mut stdout = std::io::stdout().lock();
            for item in &items {
                let line = if long {
                    let when = item.last_modified.as_deref().unwrap_or("-");
                    format!("{}  {:>8}  {when}  {}", item.etag, item.size, item.key)
                } else {
                    item.key.clone()
                };
                let _ = writeln!(stdout, "{line}");
            }
        }
    }
    Ok(())
}

async fn batch_get(api: &Api, out: Output, raw_keys: &[String]) -> Result<(), Failure> {
    let keys = raw_keys
        .iter()
        .map(|k| item_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let mut values: BTreeMap<String, Option<Box<RawValue>>> = BTreeMap::new();
    let mut answers = Vec::new();
    for item in fetch(api, &keys).await? {
        {
            if let Some(error) = &item.error {
                eprintln!("{}: {error}", item.key);
            }
            answers.push(json!({ "key": item.key, "found": item.found, "etag": item.etag }));
            values.insert(item.key, item.value.filter(|_| item.found));
        }
    }
    let text = serde_json::to_string_pretty(&values).map_err(|e| Failure::Other(e.to_string()))?;
    match out {
        Output::Text => println!("{text}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string(&values).map_err(|e| Failure::Other(e.to_string()))?
        ),
    }
    drop(answers);
    Ok(())
}

/// A new directory only the user may enter, holding a new file with the value: nobody else can read the value
/// or plant a link where it is written.
fn private_file(key: &ItemKey, value: &str) -> Result<(PathBuf, PathBuf), Failure> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("s3kv-edit-{}-{nanos}", std::process::id()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .map_err(|e| Failure::Other(format!("{}: {e}", dir.display())))?;
    let file = dir.join(format!("{}.json", key.as_str().replace('/', "_")));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| Failure::Other(format!("{}: {e}", file.display())))?;
    Ok((dir, file))
}

/// `$EDITOR` (then `$VISUAL`, then `vi`) on the current value; the result is validated and written back with
/// `If-Match` on the version that was opened, so a change made meanwhile is never overwritten.
async fn edit(api: &Api, out: Output, raw_key: &str) -> Result<(), Failure> {
    let key = item_key(raw_key)?;
    // From S3, not the cache: the edit must start from the latest version, or its If-Match fails for nothing.
    let current = match api.get(&key, None, true).await {
        Ok(item) => Some(item),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e.into()),
    };
    let original = current.as_ref().map(|i| i.body.clone()).unwrap_or_default();
    let (dir, file) = private_file(&key, &original)?;
    let editor = std::env::var("EDITOR")
        .or_else(|_| std::env::var("VISUAL"))
        .unwrap_or_else(|_| "vi".to_owned());
    // Through the shell, as git does: EDITOR may carry arguments ("code --wait").
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("s3kv-edit")
        .arg(&file)
        .status()
        .await
        .map_err(|e| Failure::Other(format!("cannot run the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(Failure::Other(format!(
            "the editor exited with {status}; nothing written (your text is in {})",
            file.display()
        )));
    }
    let edited = std::fs::read_to_string(&file)
        .map_err(|e| Failure::Other(format!("{}: {e}", file.display())))?;
    if edited == original {
        eprintln!("no change; nothing written");
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    valid_json(
        &edited,
        &format!("the edited value (kept in {})", file.display()),
    )?;
    let condition = match &current {
        Some(item) => Condition::Matches(&item.etag),
        None => Condition::Absent,
    };
    match api.put(&key, edited, condition).await {
        Ok((written, created)) => {
            let _ = std::fs::remove_dir_all(&dir);
            let what = if created { "created" } else { "replaced" };
            print(
                out,
                &format!("{what} {key} (etag {})", written.etag),
                json!({ "key": key.as_str(), "etag": written.etag, "created": created }),
            );
            Ok(())
        }
        Err(e) if e.status() == Some(412) => {
            let now = api.get(&key, None, true).await;
            eprintln!(
                "{key} changed while you were editing; nothing written. Your text is in {}.",
                file.display()
            );
            match now {
                Ok(item) => eprintln!("The current version (etag {}):\n{}", item.etag, item.body),
                Err(e) if e.status() == Some(404) => eprintln!("It has been deleted since."),
                Err(e) => eprintln!("(The current version could not be read: {e}.)"),
            }
            eprintln!("Run `s3kv edit {key}` again to edit the current version.");
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Batch gets of up to 100 keys; a batch whose answer would pass Lambda's 6 MB response limit is split in two
/// until it fits.
async fn fetch(api: &Api, keys: &[ItemKey]) -> Result<Vec<crate::api::BatchItem>, Failure> {
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

async fn export(api: &Api, prefix: &str) -> Result<(), Failure> {
    let listed = api.list(prefix).await?;
    let keys = listed
        .iter()
        .map(|i| item_key(&i.key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut values: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
    for item in fetch(api, &keys).await? {
        {
            // Deleted since the listing: not in the export.
            if let (true, Some(value)) = (item.found, item.value) {
                values.insert(item.key, value);
            }
        }
    }
    let text = serde_json::to_string_pretty(&values).map_err(|e| Failure::Other(e.to_string()))?;
    println!("{text}");
    eprintln!("exported {} items", values.len());
    Ok(())
}

/// The items to import: an export file (one JSON object), or every `*.json` file under a directory (the key is
/// the file's path under it, without `.json`). All are checked before anything is written.
fn import_items(source: &Path) -> Result<Vec<(ItemKey, String)>, Failure> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    if source.is_dir() {
        let mut files = Vec::new();
        collect_json_files(source, &mut files)
            .map_err(|e| Failure::Usage(format!("{}: {e}", source.display())))?;
        files.sort();
        for file in files {
            let relative = file.strip_prefix(source).unwrap_or(&file);
            let Some(key) = relative.to_str().map(|k| k.replace('\\', "/")) else {
                problems.push(format!("{}: the file name is not UTF-8", file.display()));
                continue;
            };
            let key = key.strip_suffix(".json").unwrap_or(&key).to_owned();
            let body = std::fs::read_to_string(&file);
            match (ItemKey::parse(&key), body) {
                (Ok(item), Ok(body)) => match valid_json(&body, &file.display().to_string()) {
                    Ok(()) => items.push((item, body)),
                    Err(e) => problems.push(e.to_string()),
                },
                (Err(e), _) => {
                    problems.push(format!("{}: invalid key {key:?}: {e}", file.display()))
                }
                (_, Err(e)) => problems.push(format!("{}: {e}", file.display())),
            }
        }
    } else {
        let text = std::fs::read_to_string(source)
            .map_err(|e| Failure::Usage(format!("{}: {e}", source.display())))?;
        let all: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&text).map_err(|e| {
            Failure::Usage(format!(
                "{}: not an export (a JSON object of key to value): {e}",
                source.display()
            ))
        })?;
        for (key, value) in all {
            match ItemKey::parse(&key) {
                Ok(item) => items.push((item, value.get().to_owned())),
                Err(e) => problems.push(format!("invalid key {key:?}: {e}")),
            }
        }
    }
    if !problems.is_empty() {
        return Err(Failure::Usage(format!(
            "nothing imported; fix these first:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(items)
}

/// Directories are walked without following links to directories (a link loop would never end); links to
/// files are read.
fn collect_json_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_json_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

async fn import(
    api: &Api,
    out: Output,
    source: &Path,
    dry_run: bool,
    create_only: bool,
    concurrency: usize,
) -> Result<(), Failure> {
    let items = import_items(source)?;
    if dry_run {
        print(
            out,
            &format!(
                "would import {} items (dry run: nothing written)",
                items.len()
            ),
            json!({ "items": items.len(), "dryRun": true }),
        );
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let condition = if create_only {
        Condition::Absent
    } else {
        Condition::None
    };
    let results: Vec<(ItemKey, Result<bool, ApiError>)> = futures::stream::iter(items)
        .map(|(key, body)| {
            let bar = bar.clone();
            async move {
                let result = api
                    .put(&key, body, condition)
                    .await
                    .map(|(_, created)| created);
                bar.inc(1);
                (key, result)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    let (mut created, mut replaced, mut skipped, mut failed) = (0, 0, 0, 0);
    for (key, result) in &results {
        match result {
            Ok(true) => created += 1,
            Ok(false) => replaced += 1,
            Err(e) if create_only && e.status() == Some(412) => skipped += 1,
            Err(e) => {
                failed += 1;
                eprintln!("{key}: {e}");
            }
        }
    }
    print(
        out,
        &format!("imported {} items: {created} created, {replaced} replaced, {skipped} skipped (exist), {failed} failed", created + replaced),
        json!({ "created": created, "replaced": replaced, "skipped": skipped, "failed": failed }),
    );
    if failed > 0 {
        return Err(Failure::Other(format!("{failed} items failed")));
    }
    Ok(())
}

async fn history(api: &Api, out: Output, key: &str, limit: Option<usize>) -> Result<(), Failure> {
    let key = item_key(key)?;
    let versions = api.history(&key, limit).await?;
    match out {
        Output::Json => println!(
            "{}",
            serde_json::to_string(&versions).map_err(|e| Failure::Other(e.to_string()))?
        ),
        Output::Text => {
            let mut stdout = std::io::stdout().lock();
            for v in &versions {
                let mark = if v.current { "*" } else { " " };
                let when = v.last_modified.as_deref().unwrap_or("-");
                let what = if v.deleted {
                    "(deleted)".to_owned()
                } else {
                    format!("{} bytes  {}", v.size, v.writer.as_deref().unwrap_or("-"))
                };
                let _ = writeln!(stdout, "{mark} {}  {when}  {what}", v.version);
            }
        }
    }
    Ok(())
}

fn key_prefix(raw: &str) -> Result<KeyPrefix, Failure> {
    KeyPrefix::parse(raw).map_err(|e| Failure::Usage(format!("invalid prefix {raw:?}: {e}")))
}

/// Only write keys reach the schema routes: a read key's refusal says which key to use, rather than leave the
/// user to guess from "may not write" on a command that only reads.
fn schema_access(error: ApiError, command: &str) -> Failure {
    if error.is_read_only_refusal() {
        return Failure::Other(format!(
            "{command} needs a write key: schemas are visible to write keys only ({error})"
        ));
    }
    error.into()
}

/// `s3kv schema ...`: thin over the `/schemas` routes, printing as `ls`, `get`, `put` and `rm` do for items.
async fn schema(api: &Api, out: Output, command: SchemaCommand) -> Result<(), Failure> {
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
async fn validate(api: &Api, out: Output, prefix: &str) -> Result<(), Failure> {
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

/// Failures that may pass (see [`ApiError::is_transient`]) are asked again after 1 s, doubling to 30 s, and back
/// to 1 s after an answer: a watch outlives an outage without hammering the API, and notices its end within
/// half a minute.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MOST: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The pause, said on stderr, when `error` may pass; the error itself when it would only repeat.
    async fn retry(&mut self, out: Output, error: ApiError) -> Result<(), Failure> {
        if !error.is_transient() {
            return Err(error.into());
        }
        let secs = self.next.as_secs();
        note(
            out,
            &format!("s3kv: {error}; retrying in {secs}s"),
            json!({ "warning": error.to_string(), "retryIn": secs }),
        );
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MOST);
        Ok(())
    }
}

/// The API answers every wait at once when its operator turned waiting off (S3KV_MAX_WAIT_SECS=0): a look that
/// found nothing is then repeated about once a second, not as fast as the network allows.
async fn pace(started: Instant) {
    if let Some(left) = Duration::from_secs(1).checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
}

/// What a watch says besides the changes goes to stderr, so stdout stays one kind of line.
fn note(out: Output, text: &str, value: serde_json::Value) {
    match out {
        Output::Text => eprintln!("{text}"),
        Output::Json => eprintln!("{value}"),
    }
}

/// One line on stdout, at once (stdout is line-buffered even into a pipe); `false` once nobody reads it any
/// more (`s3kv watch ... | head -n 1`), which ends the watch quietly rather than with a panic.
fn emit(line: &str) -> Result<bool, Failure> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Other(format!("writing to stdout: {e}"))),
    }
}

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

/// `get --output json`'s shape, with the value as stored (a `json!` value would reorder its keys and round its
/// numbers).
#[derive(serde::Serialize)]
struct ItemLine<'a> {
    key: &'a str,
    etag: &'a str,
    writer: Option<&'a str>,
    value: &'a RawValue,
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
    };
    serde_json::to_string(&line).map_err(|e| Failure::Other(e.to_string()))
}

/// `watch KEY`: the item's state now, then each state it changes to, every line JSON whatever `--output` says
/// (a stream of values is only usable with the key and ETag on each). The first line tells a script what the
/// watch started from, and that it is watching.
async fn watch_item(api: &Api, out: Output, raw_key: &str, once: bool) -> Result<(), Failure> {
    let key = item_key(raw_key)?;
    let mut backoff = Backoff::new();
    let mut state = loop {
        match api.look(&key).await {
            Ok(item) => break Some(item),
            Err(e) if e.status() == Some(404) => break None,
            Err(e) => backoff.retry(out, e).await?,
        }
    };
    let mut printed = 0;
    loop {
        if !emit(&state_line(&key, state.as_ref())?)? {
            return Ok(());
        }
        printed += 1;
        // The state it started from, then the first change.
        if once && printed == 2 {
            return Ok(());
        }
        state = match &state {
            Some(item) => changed_from(api, out, &key, &item.etag).await?,
            None => back(api, out, &key).await.map(Some)?,
        };
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

/// `watch --prefix`'s settings.
struct Follow<'a> {
    prefix: &'a str,
    after: Option<String>,
    cursor_file: Option<&'a Path>,
    once: bool,
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
async fn watch_prefix(api: &Api, out: Output, follow: Follow<'_>) -> Result<(), Failure> {
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
