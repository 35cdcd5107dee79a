//! Objects torn before writes were journaled ([`super::journal`]): an earlier s3kv-local killed between renaming
//! an object's new bytes into place and writing their ETag left the old ETag and checksums on the new bytes. Every
//! GET of such an object fails its checksum, and a start-up reconcile would retry it until its deadline and then
//! refuse to start, on every start. Each one is found, fixed or set aside, and named in the log at start-up.
//!
//! s3s-fs writes an object's bytes before its `internal.json` (ETag, checksums), so a torn object's bytes are newer
//! than its `internal.json`; only those objects are read and hashed, not the whole bucket. A torn object whose
//! recorded ETag is its newest version's is restored from that version (the new bytes were never acknowledged);
//! one without such a version is moved, with its two metadata files, to `<data dir>/.quarantine/`, and the key
//! is served as absent.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use s3s::crypto::{Checksum, Md5};

use crate::versions::Versions;

/// One object's files, from the name of its `internal.json`.
struct Stored {
    bucket: String,
    key: String,
    object: PathBuf,
    internal: PathBuf,
    metadata: PathBuf,
}

fn decode(part: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fn parse(root: &Path, name: &str) -> Option<Stored> {
    let stem = name
        .strip_prefix(".bucket-")?
        .strip_suffix(".internal.json")?;
    let (bucket, key) = stem.split_once(".object-")?;
    let (bucket, key) = (decode(bucket)?, decode(key)?);
    Some(Stored {
        object: root.join(&bucket).join(&key),
        internal: root.join(name),
        metadata: root.join(format!(".bucket-{stem}.metadata.json")),
        bucket,
        key,
    })
}

fn md5_hex(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut md5 = Md5::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
    }
    Ok(hex(&md5.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ETag S3 gives `bytes` uploaded in one part (their MD5, in hex, unquoted), for checking what is stored.
pub fn etag_of(bytes: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update(bytes);
    hex(&md5.finalize())
}

fn recorded_etag(internal: &Path) -> Option<String> {
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(internal).ok()?).ok()?;
    info.get("e_tag")?.as_str().map(str::to_owned)
}

/// Whether `stored` is torn: its bytes are newer than its ETag, and hash to another one.
fn torn(stored: &Stored) -> std::io::Result<Option<String>> {
    let (object, internal) = match (
        std::fs::metadata(&stored.object),
        std::fs::metadata(&stored.internal),
    ) {
        (Ok(object), Ok(internal)) if object.is_file() => (object, internal),
        _ => return Ok(None),
    };
    if object.modified()? <= internal.modified()? {
        return Ok(None);
    }
    let Some(recorded) = recorded_etag(&stored.internal) else {
        return Ok(None);
    };
    // A multipart ETag is no MD5 of the bytes; those were written after the journal existed, or never torn.
    if recorded.contains('-') {
        return Ok(None);
    }
    let hashed = md5_hex(&stored.object)?;
    Ok((hashed != recorded).then_some(recorded))
}

/// Finds, fixes or sets aside every torn object under `root`, logging each one.
pub fn torn_objects(root: &Path, versions: &Versions) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stored) = name.to_str().and_then(|name| parse(root, name)) else {
            continue;
        };
        match torn(&stored).and_then(|torn| match torn {
            Some(recorded) => fix(root, &stored, &recorded, versions).map(Some),
            None => Ok(None),
        }) {
            Ok(None) => {}
            Ok(Some(done)) => {
                tracing::error!(bucket = %stored.bucket, key = %stored.key, "torn object (its bytes did not match its ETag): {done}")
            }
            Err(error) => {
                tracing::error!(bucket = %stored.bucket, key = %stored.key, %error, "torn object could not be repaired")
            }
        }
    }
}

fn fix(
    root: &Path,
    stored: &Stored,
    recorded: &str,
    versions: &Versions,
) -> std::io::Result<String> {
    let newest = versions.newest(&stored.bucket, &stored.key)?;
    if let Some(version) =
        newest.filter(|v| !v.delete_marker && v.etag.as_deref() == Some(recorded))
    {
        let partial = root.join(format!(".repair-{}.part", std::process::id()));
        std::fs::copy(
            versions.body_path(&stored.bucket, &stored.key, &version.id),
            &partial,
        )?;
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &stored.object)?;
        return Ok(format!("restored version {} (ETag {recorded})", version.id));
    }
    let dir = root.join(".quarantine").join(format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        URL_SAFE_NO_PAD.encode(&stored.key)
    ));
    std::fs::create_dir_all(&dir)?;
    std::fs::rename(&stored.object, dir.join("object"))?;
    std::fs::rename(&stored.internal, dir.join("internal.json"))?;
    let _ = std::fs::rename(&stored.metadata, dir.join("metadata.json"));
    Ok(format!(
        "no version holds ETag {recorded}; moved to {} and served as absent",
        dir.display()
    ))
}
