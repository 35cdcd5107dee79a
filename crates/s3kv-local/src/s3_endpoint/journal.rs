//! Every change to an object is all or nothing on disk, across a crash (`kill -9`, power loss).
//!
//! s3s-fs keeps one object in three files, each written to a temporary file and renamed into place in turn: the
//! bytes (`<bucket>/<key>`), the attributes (`.bucket-….object-….metadata.json`) and the ETag and checksums
//! (`.bucket-….object-….internal.json`); and the endpoint then adds a version record ([`crate::versions`]). A
//! crash between two of those steps left new bytes under the old ETag and checksums: HEAD and listings named the
//! old version, every GET failed its checksum, and reconcile could never load the key. s3s-fs offers no hook to
//! write the three together, so each change runs as an undo-logged transaction instead:
//!
//! 1. [`Journal::begin`], with the mutation lock held: hard links to the key's current three files (the renames
//!    that follow replace names, not the linked inodes, so the links keep the old contents) in a fresh directory
//!    of `<data dir>/.journal/`, then `intent.json` naming the key and its newest version, each made durable.
//! 2. The change itself (s3s-fs, then the version record).
//! 3. [`Txn::commit`]: the new files and their directories are fsync'd, then `intent.json` is removed (the commit
//!    point) and the links with it. Only then is the client answered.
//!
//! [`Journal::recover`], before the endpoint serves, rolls back every transaction whose intent is still there: the
//! linked files are renamed back over whatever the change left (or the change's new files removed, when the key
//! had none), and versions recorded after the intent's are discarded. A change is then either complete and
//! acknowledged-or-not, or never happened; it was never acknowledged in the second case.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use s3s::S3Result;
use serde::{Deserialize, Serialize};

use super::{internal_error, NotifyingFs};
use crate::versions::Versions;

const INTENT: &str = "intent.json";

/// The three files s3s-fs keeps for an object, by the name of their link in a transaction's directory.
const PARTS: [&str; 3] = ["object", "metadata", "internal"];

#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    bucket: String,
    key: String,
    /// The key's newest version when the change began: every later one is the change's.
    newest_version: Option<String>,
}

pub struct Journal {
    root: PathBuf,
    dir: PathBuf,
    next: AtomicU64,
}

/// One change in progress: dropped without [`Txn::commit`] (the change failed), it is rolled back at once.
pub struct Txn {
    dir: PathBuf,
    intent: Intent,
    targets: [PathBuf; 3],
    root: PathBuf,
    done: bool,
}

/// The paths s3s-fs keeps `bucket`/`key` in (see `s3s_fs::FileSystem::get_metadata_path`), in [`PARTS`] order.
fn targets(root: &Path, bucket: &str, key: &str) -> [PathBuf; 3] {
    let stem = format!(
        ".bucket-{}.object-{}",
        URL_SAFE_NO_PAD.encode(bucket),
        URL_SAFE_NO_PAD.encode(key)
    );
    [
        root.join(bucket).join(key),
        root.join(format!("{stem}.metadata.json")),
        root.join(format!("{stem}.internal.json")),
    ]
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    match File::open(path) {
        Ok(file) => file.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Journal {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            dir: root.join(".journal"),
            next: AtomicU64::new(0),
        }
    }

    /// Saves what `key` is now and records the intent to change it. Blocking (fsync): call it off the runtime.
    pub fn begin(
        &self,
        bucket: &str,
        key: &str,
        newest_version: Option<String>,
    ) -> std::io::Result<Txn> {
        let dir = self.dir.join(format!(
            "{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let targets = targets(&self.root, bucket, key);
        for (part, target) in PARTS.iter().zip(&targets) {
            if target.is_file() {
                std::fs::hard_link(target, dir.join(part))?;
            }
        }
        let intent = Intent {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            newest_version,
        };
        let partial = dir.join("intent.partial");
        let mut file = File::create(&partial)?;
        file.write_all(&serde_json::to_vec(&intent).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&partial, dir.join(INTENT))?;
        sync_dir(&dir)?;
        sync_dir(&self.dir)?;
        Ok(Txn {
            dir,
            intent,
            targets,
            root: self.root.clone(),
            done: false,
        })
    }

    /// Rolls back every change a crash interrupted, and says which keys it restored. Call it before anything reads
    /// the data directory.
    pub fn recover(&self, versions: &Versions) -> std::io::Result<Vec<(String, String)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut restored = Vec::new();
        for entry in entries {
            let dir = entry?.path();
            let intent = match std::fs::read(dir.join(INTENT)) {
                Ok(bytes) => Some(serde_json::from_slice::<Intent>(&bytes).map_err(|e| {
                    std::io::Error::other(format!("{}: {e}", dir.join(INTENT).display()))
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            // No intent: the change had not begun (or had committed); its links are all that is left.
            if let Some(intent) = intent {
                let targets = targets(&self.root, &intent.bucket, &intent.key);
                roll_back(&dir, &targets)?;
                versions.discard_after(
                    &intent.bucket,
                    &intent.key,
                    intent.newest_version.as_deref(),
                )?;
                restored.push((intent.bucket, intent.key));
            }
            std::fs::remove_dir_all(&dir)?;
        }
        sync_dir(&self.root)?;
        Ok(restored)
    }
}

/// Puts each of `targets` back as its link in `dir` has it, or removes it when there is no link (the key had no
/// such file before the change).
fn roll_back(dir: &Path, targets: &[PathBuf; 3]) -> std::io::Result<()> {
    for (part, target) in PARTS.iter().zip(targets) {
        let saved = dir.join(part);
        if saved.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&saved, target)?;
        } else if target.is_file() {
            std::fs::remove_file(target)?;
        }
        if let Some(parent) = target.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

impl Txn {
    /// Makes the change durable, then drops the intent: from here on a crash keeps the change. Blocking (fsync).
    pub fn commit(mut self) -> std::io::Result<()> {
        for target in &self.targets {
            sync_file(target)?;
        }
        if let Some(parent) = self.targets[0].parent().filter(|p| p.is_dir()) {
            sync_dir(parent)?;
        }
        sync_dir(&self.root)?;
        std::fs::remove_file(self.dir.join(INTENT))?;
        sync_dir(&self.dir)?;
        self.done = true;
        std::fs::remove_dir_all(&self.dir)
    }
}

impl Drop for Txn {
    /// A change that failed may have done part of its work (s3s-fs renames the bytes before it checks a
    /// Content-MD5): undone here as a restart would, so that the key is what it was. Its versions, if any were
    /// recorded, stay: the endpoint records them only after the change succeeded, and commits right after.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Err(error) = roll_back(&self.dir, &self.targets) {
            tracing::error!(bucket = %self.intent.bucket, key = %self.intent.key, %error, "a failed change could not be undone; the next start undoes it");
            return;
        }
        if let Err(error) = std::fs::remove_file(self.dir.join(INTENT))
            .and_then(|()| std::fs::remove_dir_all(&self.dir))
        {
            tracing::warn!(dir = %self.dir.display(), %error, "journal entry left behind; the next start removes it");
        }
    }
}

impl NotifyingFs {
    /// Starts an all-or-nothing change of `key` ([`Journal::begin`]); called with the mutation lock held.
    pub(super) async fn begin(&self, bucket: &str, key: &str) -> S3Result<Txn> {
        let newest = self
            .versions
            .newest(bucket, key)
            .map_err(internal_error)?
            .map(|v| v.id);
        let journal = self.journal.clone();
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        tokio::task::spawn_blocking(move || journal.begin(&bucket, &key, newest))
            .await
            .map_err(internal_error)?
            .map_err(internal_error)
    }

    /// Commits `txn` when the change succeeded, undoes it otherwise, and indexes what is on disk afterwards.
    pub(super) async fn finish<T>(
        &self,
        txn: Txn,
        (bucket, key): (&str, &str),
        result: S3Result<T>,
    ) -> S3Result<T> {
        let outcome = match result {
            Ok(value) => tokio::task::spawn_blocking(move || txn.commit())
                .await
                .map_err(internal_error)
                .and_then(|r| r.map_err(internal_error))
                .map(|()| value),
            Err(error) => {
                drop(txn);
                Err(error)
            }
        };
        self.keys.refresh(bucket, key);
        outcome
    }
}
