//! The local bucket's versions, kept beside s3s-fs (which keeps only the current object) so that the local bucket
//! behaves like the deployed one, which is versioned: every write adds a version, a delete adds a delete marker,
//! and old versions can be listed, read and copied from.
//!
//! Each key has a directory under `<data dir>/.versions/<bucket>/` named after the base64url of the key (the
//! leading dot keeps s3s-fs from listing it as a bucket), holding `<version id>.json` (what S3 says about the
//! version) and, unless it is a delete marker, `<version id>.body`. Version ids are the wall-clock nanoseconds of
//! the change, zero-padded, so they sort in the order the changes happened; S3's ids are opaque, and nothing in
//! s3kv relies on their order. All writes happen under the endpoint's mutation lock.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// What S3 knows about one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub id: String,
    pub delete_marker: bool,
    /// The ETag's value, without quotes.
    pub etag: Option<String>,
    pub size: u64,
    /// Milliseconds since the epoch.
    pub modified_ms: i64,
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`, without the prefix).
    pub metadata: BTreeMap<String, String>,
}

impl Version {
    pub fn modified(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.modified_ms.max(0) as u64)
    }
}

/// One key's version in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub version: Version,
    pub latest: bool,
}

pub struct Versions {
    root: PathBuf,
    last_id: Mutex<u128>,
    /// Each key's newest version, once known: a GET answers its version id without reading the key's history.
    newest: Mutex<HashMap<(String, String), Option<Version>>>,
}

impl Versions {
    /// `data_dir` is the directory s3s-fs serves.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join(".versions"),
            last_id: Mutex::new(0),
            newest: Mutex::new(HashMap::new()),
        }
    }

    fn key_dir(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(URL_SAFE_NO_PAD.encode(key))
    }

    /// A new id, later than every id handed out before (also across restarts: the clock moves on).
    fn next_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut last = self.last_id.lock().unwrap_or_else(|e| e.into_inner());
        *last = now.max(*last + 1);
        format!("{:020}", *last)
    }

    /// Records the object now at `object_path` as the key's newest version, and returns its id.
    pub fn add_object(
        &self,
        bucket: &str,
        key: &str,
        object_path: &Path,
        etag: Option<String>,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
    ) -> std::io::Result<String> {
        let dir = self.key_dir(bucket, key);
        std::fs::create_dir_all(&dir)?;
        let id = self.next_id();
        let size = std::fs::copy(object_path, dir.join(format!("{id}.body")))?;
        let version = Version {
            id: id.clone(),
            delete_marker: false,
            etag,
            size,
            modified_ms: now_ms(),
            content_type,
            metadata,
        };
        write_json(&dir.join(format!("{id}.json")), &version)?;
        self.remember(bucket, key, Some(version));
        Ok(id)
    }

    fn remember(&self, bucket: &str, key: &str, version: Option<Version>) {
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        newest.insert((bucket.to_owned(), key.to_owned()), version);
    }

    /// The key's newest version (a delete marker included), from memory after the first look.
    pub fn newest(&self, bucket: &str, key: &str) -> std::io::Result<Option<Version>> {
        let cached = {
            let newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
            newest.get(&(bucket.to_owned(), key.to_owned())).cloned()
        };
        if let Some(known) = cached {
            return Ok(known);
        }
        let found = self.of_key(bucket, key)?.into_iter().next();
        self.remember(bucket, key, found.clone());
        Ok(found)
    }

    /// Records a delete marker as the key's newest version, and returns its id.
    pub fn add_delete_marker(&self, bucket: &str, key: &str) -> std::io::Result<String> {
        let dir = self.key_dir(bucket, key);
        std::fs::create_dir_all(&dir)?;
        let id = self.next_id();
        let version = Version {
            id: id.clone(),
            delete_marker: true,
            etag: None,
            size: 0,
            modified_ms: now_ms(),
            content_type: None,
            metadata: BTreeMap::new(),
        };
        write_json(&dir.join(format!("{id}.json")), &version)?;
        self.remember(bucket, key, Some(version));
        Ok(id)
    }

    /// Removes one version for good (S3's DeleteObject with a version id).
    pub fn remove(&self, bucket: &str, key: &str, id: &str) -> std::io::Result<()> {
        let dir = self.key_dir(bucket, key);
        for extension in ["json", "body"] {
            match std::fs::remove_file(dir.join(format!("{id}.{extension}"))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        newest.remove(&(bucket.to_owned(), key.to_owned()));
        Ok(())
    }

    /// Removes the key's versions newer than `after` (all of them when `None`): what a change rolled back by
    /// [`crate::s3_endpoint::Journal`] had recorded.
    pub fn discard_after(
        &self,
        bucket: &str,
        key: &str,
        after: Option<&str>,
    ) -> std::io::Result<()> {
        let dir = self.key_dir(bucket, key);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .unwrap_or_default()
                .to_owned();
            if valid_id(&id) && after.is_none_or(|after| id.as_str() > after) {
                std::fs::remove_file(&path)?;
            }
        }
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        newest.remove(&(bucket.to_owned(), key.to_owned()));
        Ok(())
    }

    /// The key's versions, newest first.
    pub fn of_key(&self, bucket: &str, key: &str) -> std::io::Result<Vec<Version>> {
        read_dir_versions(&self.key_dir(bucket, key))
    }

    pub fn get(&self, bucket: &str, key: &str, id: &str) -> std::io::Result<Option<Version>> {
        if !valid_id(id) {
            return Ok(None);
        }
        let path = self.key_dir(bucket, key).join(format!("{id}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn body_path(&self, bucket: &str, key: &str, id: &str) -> PathBuf {
        self.key_dir(bucket, key).join(format!("{id}.body"))
    }

    /// The bucket's versions of keys starting with `prefix`, by key and then newest first, after the position
    /// `(key_marker, version_id_marker)` as ListObjectVersions continues: with no version marker, after every
    /// version of `key_marker`. At most `max` entries, and whether more follow.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        max: usize,
    ) -> std::io::Result<(Vec<Listed>, bool)> {
        let mut keys = Vec::new();
        let dir = self.root.join(bucket);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(key) = entry
                .file_name()
                .to_str()
                .and_then(|name| URL_SAFE_NO_PAD.decode(name).ok())
                .and_then(|bytes| String::from_utf8(bytes).ok())
            else {
                continue;
            };
            if key.starts_with(prefix) && key_marker.is_none_or(|marker| key.as_str() >= marker) {
                keys.push(key);
            }
        }
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let versions = read_dir_versions(&self.key_dir(bucket, &key))?;
            for (index, version) in versions.into_iter().enumerate() {
                if key_marker == Some(key.as_str()) {
                    // Newest first, so "after the marker" means an older (smaller) id.
                    match version_id_marker.filter(|m| !m.is_empty()) {
                        Some(marker) if version.id.as_str() < marker => {}
                        _ => continue,
                    }
                }
                if out.len() == max {
                    return Ok((out, true));
                }
                out.push(Listed {
                    key: key.clone(),
                    version,
                    latest: index == 0,
                });
            }
        }
        Ok((out, false))
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 40 && id.bytes().all(|b| b.is_ascii_digit())
}

fn read_dir_versions(dir: &Path) -> std::io::Result<Vec<Version>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut versions: HashMap<String, Version> = HashMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let version: Version =
            serde_json::from_slice(&std::fs::read(&path)?).map_err(std::io::Error::other)?;
        versions.insert(version.id.clone(), version);
    }
    let mut versions: Vec<Version> = versions.into_values().collect();
    versions.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(versions)
}

fn write_json(path: &Path, version: &Version) -> std::io::Result<()> {
    // Written whole, then renamed, so a reader never sees half a record.
    let partial = path.with_extension("json.partial");
    std::fs::write(
        &partial,
        serde_json::to_vec(version).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(partial, path)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_list_by_key_then_newest_first_and_continue_after_a_marker() {
        let dir = testkit::temp_dir("versions-unit");
        let versions = Versions::new(&dir);
        let file = dir.join("object");
        let mut ids = HashMap::new();
        for (key, body) in [("a", "1"), ("b", "2"), ("a", "3"), ("ab", "4")] {
            std::fs::write(&file, body).unwrap();
            let id = versions
                .add_object("bk", key, &file, Some(body.into()), None, BTreeMap::new())
                .unwrap();
            ids.entry(key).or_insert_with(Vec::new).push(id);
        }
        let marker = versions.add_delete_marker("bk", "b").unwrap();

        let (all, more) = versions.list("bk", "", None, None, 100).unwrap();
        assert!(!more);
        let seen: Vec<(&str, Option<&str>, bool, bool)> = all
            .iter()
            .map(|l| {
                (
                    l.key.as_str(),
                    l.version.etag.as_deref(),
                    l.version.delete_marker,
                    l.latest,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a", Some("3"), false, true),
                ("a", Some("1"), false, false),
                ("ab", Some("4"), false, true),
                ("b", None, true, true),
                ("b", Some("2"), false, false),
            ]
        );
        assert_eq!(all[3].version.id, marker);

        // Pages of two, continued from each page's last entry, give the same list.
        let mut paged = Vec::new();
        let (mut key, mut version): (Option<String>, Option<String>) = (None, None);
        loop {
            let (page, more) = versions
                .list("bk", "", key.as_deref(), version.as_deref(), 2)
                .unwrap();
            let last = page.last().cloned();
            paged.extend(page);
            if !more {
                break;
            }
            let last = last.unwrap();
            (key, version) = (Some(last.key), Some(last.version.id));
        }
        assert_eq!(paged, all);

        // A prefix, a key marker alone (after all of its versions), and reads by id.
        let (a, _) = versions.list("bk", "a", None, None, 100).unwrap();
        assert_eq!(a.len(), 3);
        let (after_a, _) = versions.list("bk", "", Some("a"), None, 100).unwrap();
        assert_eq!(after_a[0].key, "ab");
        let first = versions.get("bk", "a", &ids["a"][0]).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(versions.body_path("bk", "a", &first.id)).unwrap(),
            "1"
        );
        assert_eq!(versions.get("bk", "a", "../../x").unwrap(), None);
        assert_eq!(versions.get("bk", "a", "123").unwrap(), None);
    }
}
