//! `edit`: an item in `$EDITOR`, written back only if nobody changed it meanwhile.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use s3kv::key::ItemKey;
use serde_json::json;

use super::{item_key, valid_json};
use crate::api::{Api, Condition};
use crate::output::{print, Failure, Output};

#[derive(Debug, Args)]
pub struct EditArgs {
    key: String,
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
pub(super) async fn exec(api: &Api, out: Output, args: EditArgs) -> Result<(), Failure> {
    let key = item_key(&args.key)?;
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
    match api.put(&key, edited, condition, None).await {
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
