//! Each bucket's keys in order, so that ListObjectsV2 reads a range of them instead of walking the bucket's
//! directory: s3s-fs walks and sorts the whole directory for every page, O(N) a page and O(N²) a full listing
//! (BENCHMARKS.md, "Reconcile at scale").
//!
//! s3s-fs keeps each object in a file at `<root>/<bucket>/<key>`, its metadata, upload parts and temporary files
//! in dot-files directly under `<root>`, and our versions under `<root>/.versions` ([`crate::versions`]); so the
//! keys of a bucket are exactly the paths of the files (not directories) under its directory, as s3s-fs lists
//! them. The index is built by walking those directories once, when the endpoint starts, and kept current by
//! [`KeyIndex::refresh`] after every change the endpoint makes, which looks at the file on disk: a change that
//! failed half-way is indexed as what it left behind. A bucket directory the index has not seen (made by hand after
//! the start) is walked when it is first listed; files added or removed by hand while the endpoint runs are
//! not seen (a removed one is left out of listings, its file being gone), until the next start.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// What a ListObjectsV2 request asks for, already checked.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub prefix: &'a str,
    /// Only what sorts after this: the later of `start-after` and the continuation token.
    pub after: Option<&'a str>,
    /// Keys holding it past the prefix are rolled up into one common prefix each; never empty.
    pub delimiter: Option<&'a str>,
    /// The most objects and common prefixes together in one page; 0 answers nothing (and not truncated).
    pub max_keys: usize,
}

/// One entry of a page, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Object(String),
    CommonPrefix(String),
}

impl Entry {
    pub fn as_str(&self) -> &str {
        match self {
            Entry::Object(key) | Entry::CommonPrefix(key) => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// More entries follow the last one.
    pub truncated: bool,
}

impl Page {
    /// The continuation token of a truncated page: its last entry (what `after` takes to go on).
    pub fn next_token(&self) -> Option<&str> {
        self.entries
            .last()
            .filter(|_| self.truncated)
            .map(Entry::as_str)
    }
}

/// One page of `keys` for `query`: a range read from the first key after the marker (or the prefix), each
/// common prefix taken once and its keys skipped at once.
pub fn page(keys: &BTreeSet<String>, query: &Query) -> Page {
    let Query {
        prefix,
        after,
        delimiter,
        max_keys,
    } = *query;
    let mut entries = Vec::new();
    if max_keys == 0 {
        return Page {
            entries,
            truncated: false,
        };
    }
    let start = match after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut range = keys.range::<str, _>((start, Bound::Unbounded));
    while let Some(key) = range.next() {
        if !key.starts_with(prefix) {
            break;
        }
        let rest = &key[prefix.len()..];
        let group =
            delimiter.and_then(|d| rest.find(d).map(|at| &key[..prefix.len() + at + d.len()]));
        let mut last = false;
        let entry = match group {
            Some(group) => {
                // Every key under the common prefix sorts before its successor: skip them all.
                match successor(group) {
                    Some(next) => {
                        range =
                            keys.range::<str, _>((Bound::Included(next.as_str()), Bound::Unbounded))
                    }
                    None => last = true,
                }
                // A common prefix at or before the marker was answered on an earlier page.
                if after.is_some_and(|after| group <= after) {
                    if last {
                        break;
                    }
                    continue;
                }
                Entry::CommonPrefix(group.to_owned())
            }
            None => Entry::Object(key.clone()),
        };
        if entries.len() == max_keys {
            return Page {
                entries,
                truncated: true,
            };
        }
        entries.push(entry);
        if last {
            break;
        }
    }
    Page {
        entries,
        truncated: false,
    }
}

/// The least string after every string that starts with `prefix`, or `None` if there is none (`prefix` is empty
/// or all `char::MAX`). Strings order as their UTF-8 bytes, which order as their code points.
fn successor(prefix: &str) -> Option<String> {
    let mut s = prefix.to_owned();
    while let Some(c) = s.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            s.push(next);
            return Some(s);
        }
    }
    None
}

/// The key s3s-fs lists for the file a request's `key` names: its path components joined by `/` (so `a//b`
/// is `a/b`), or `None` when the key has `.`, `..` or a leading `/`, whose file is not simply below the bucket.
fn listed_key(key: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(key).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The keys s3s-fs lists for the bucket directory `dir`: every file below it, by its path from `dir`.
pub fn scan_bucket(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(next) = dirs.pop() {
        let entries = match std::fs::read_dir(&next) {
            Ok(entries) => entries,
            // Removed while walking (an object's directory emptied by a delete): nothing under it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && next != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(dir) else {
                continue;
            };
            // s3s-fs leaves out names that are not UTF-8 too.
            if let Some(key) = relative.to_str().and_then(listed_key) {
                keys.insert(key);
            }
        }
    }
    Ok(keys)
}

/// The sorted keys of every bucket under the data directory the endpoint serves.
pub struct KeyIndex {
    root: PathBuf,
    buckets: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl KeyIndex {
    /// Walks every bucket directory under `root` (those s3s-fs lists as buckets); one it cannot read is left
    /// out, to be walked when it is first listed.
    pub fn build(root: &Path) -> Self {
        let mut buckets = HashMap::new();
        match std::fs::read_dir(root) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    let name = entry.file_name();
                    let Some(name) = name
                        .to_str()
                        .filter(|n| is_dir && s3s::path::check_bucket_name(n))
                    else {
                        continue;
                    };
                    match scan_bucket(&entry.path()) {
                        Ok(keys) => {
                            buckets.insert(name.to_owned(), keys);
                        }
                        Err(error) => {
                            tracing::warn!(bucket = name, %error, "bucket not indexed; it is walked when listed")
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(root = %root.display(), %error, "data directory not indexed")
            }
        }
        Self {
            root: root.to_path_buf(),
            buckets: Mutex::new(buckets),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, BTreeSet<String>>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One page of `bucket`, or `None` when the index does not know the bucket (see [`KeyIndex::insert_bucket`]).
    pub fn page(&self, bucket: &str, query: &Query) -> Option<Page> {
        self.lock().get(bucket).map(|keys| page(keys, query))
    }

    pub fn knows(&self, bucket: &str) -> bool {
        self.lock().contains_key(bucket)
    }

    /// A bucket's keys, as [`scan_bucket`] found them or empty for a new bucket; one already indexed is kept.
    pub fn insert_bucket(&self, bucket: &str, keys: BTreeSet<String>) {
        self.lock().entry(bucket.to_owned()).or_insert(keys);
    }

    /// The bucket is gone, or must be walked again when next listed.
    pub fn forget_bucket(&self, bucket: &str) {
        self.lock().remove(bucket);
    }

    /// Indexes `key` as what is on disk now: listed if its file exists, not if it does not. Called after every
    /// change to the key, with the endpoint's mutation lock held.
    pub fn refresh(&self, bucket: &str, key: &str) {
        let Some(key) = listed_key(key) else {
            // Some other file may have changed: walk the bucket again when it is next listed.
            self.forget_bucket(bucket);
            return;
        };
        let is_file = std::fs::symlink_metadata(self.root.join(bucket).join(&key))
            .is_ok_and(|m| !m.file_type().is_dir());
        if let Some(keys) = self.lock().get_mut(bucket) {
            if is_file {
                keys.insert(key);
            } else {
                keys.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What s3s-fs does for a listing: every matching object and common prefix, sorted, filtered by the marker,
    /// the first `max_keys` of them.
    fn naive(keys: &[&str], query: &Query) -> Page {
        let mut all = std::collections::BTreeMap::new();
        for key in keys.iter().filter(|k| k.starts_with(query.prefix)) {
            let rest = &key[query.prefix.len()..];
            let entry = match query.delimiter.and_then(|d| rest.find(d).map(|at| (at, d))) {
                Some((at, d)) => {
                    Entry::CommonPrefix(key[..query.prefix.len() + at + d.len()].to_owned())
                }
                None => Entry::Object((*key).to_owned()),
            };
            all.insert(entry.as_str().to_owned(), entry);
        }
        let mut entries: Vec<Entry> = all
            .into_values()
            .filter(|e| query.after.is_none_or(|after| e.as_str() > after))
            .collect();
        let truncated = query.max_keys > 0 && entries.len() > query.max_keys;
        entries.truncate(query.max_keys);
        Page { entries, truncated }
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    const KEYS: &[&str] = &[
        "a",
        "a/",
        "a/b",
        "a/b/c",
        "a/b/d",
        "a/c",
        "a//x",
        "a0",
        "ab",
        "b/1",
        "b/2/3",
        "b/2/4",
        "b/20",
        "b/é/1",
        "b/é",
        "b/日本/語",
        "b/日本語",
        "b/\u{10FFFF}/z",
        "b/\u{10FFFF}\u{10FFFF}",
        "c-d-e",
        "c-d",
        "c--",
        "é",
        "éa/b",
        "z",
        "\u{10FFFF}",
        "\u{10FFFF}/x",
    ];

    /// Every page of a listing, following the continuation token like a client does.
    fn walk(keys: &BTreeSet<String>, query: Query) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let after = match (token.as_deref(), query.after) {
                (Some(t), Some(a)) => Some(t.max(a)),
                (t, a) => t.or(a),
            };
            let p = page(keys, &Query { after, ..query });
            token = p.next_token().map(str::to_owned);
            pages.push(p);
            if token.is_none() {
                return pages;
            }
        }
    }

    #[test]
    fn pages_match_a_sort_and_filter_of_every_key() {
        let keys = set(KEYS);
        let prefixes = [
            "",
            "a",
            "a/",
            "a/b",
            "b/",
            "b/2",
            "b/日",
            "c",
            "é",
            "\u{10FFFF}",
            "nothing",
            "zz",
        ];
        let afters = [
            None,
            Some(""),
            Some("a"),
            Some("a/"),
            Some("a/b"),
            Some("a/b/c"),
            Some("a0"),
            Some("b/2/"),
            Some("b/2/3"),
            Some("b/日本"),
            Some("c-"),
            Some("é"),
            Some("zzz"),
            Some("\u{10FFFF}"),
        ];
        let delimiters = [
            None,
            Some("/"),
            Some("-"),
            Some("--"),
            Some("日本"),
            Some("\u{10FFFF}"),
        ];
        let mut checked = 0;
        for prefix in prefixes {
            for after in afters {
                for delimiter in delimiters {
                    for max_keys in [0, 1, 2, 3, 5, 1000] {
                        let query = Query {
                            prefix,
                            after,
                            delimiter,
                            max_keys,
                        };
                        assert_eq!(page(&keys, &query), naive(KEYS, &query), "{query:?}");
                        checked += 1;
                        // Following the pages gives what one page of everything gives, each entry once.
                        if max_keys > 0 {
                            let everything = naive(
                                KEYS,
                                &Query {
                                    max_keys: usize::MAX,
                                    ..query
                                },
                            );
                            let walked: Vec<Entry> = walk(&keys, query)
                                .into_iter()
                                .flat_map(|p| p.entries)
                                .collect();
                            assert_eq!(walked, everything.entries, "{query:?}");
                        }
                    }
                }
            }
        }
        assert!(checked > 5000);
    }

    #[test]
    fn pages_of_a_thousand_from_many_keys() {
        let owned: Vec<String> = (0..5_500)
            .map(|i| format!("items/{}/{i:05}.json", ["x", "y", "ü"][i % 3]))
            .collect();
        let all: Vec<&str> = owned.iter().map(String::as_str).collect();
        let keys = set(&all);
        let query = Query {
            prefix: "items/",
            after: None,
            delimiter: None,
            max_keys: 1000,
        };
        let pages = walk(&keys, query);
        assert_eq!(
            pages.iter().map(|p| p.entries.len()).collect::<Vec<_>>(),
            [1000, 1000, 1000, 1000, 1000, 500]
        );
        assert_eq!(pages.iter().filter(|p| p.truncated).count(), 5);
        let walked: Vec<&str> = pages
            .iter()
            .flat_map(|p| p.entries.iter().map(Entry::as_str))
            .collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(walked, sorted);

        let prefixes = page(
            &keys,
            &Query {
                delimiter: Some("/"),
                ..query
            },
        );
        assert_eq!(
            prefixes.entries,
            ["items/x/", "items/y/", "items/ü/"].map(|p| Entry::CommonPrefix(p.into()))
        );
        assert!(!prefixes.truncated);
        let started = page(
            &keys,
            &Query {
                after: Some("items/y/05498.json"),
                ..query
            },
        );
        assert_eq!(started.entries.len(), 1000);
        assert_eq!(
            started.entries[..2],
            ["items/ü/00002.json", "items/ü/00005.json"].map(|k| Entry::Object(k.into()))
        );
        assert!(started.truncated);
    }

    #[test]
    fn successors_bound_every_string_with_the_prefix() {
        assert_eq!(successor("a/").as_deref(), Some("a0"));
        assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10FFFF}"), None);
        assert_eq!(successor(""), None);
    }

    #[test]
    fn keys_are_the_paths_s3s_fs_lists() {
        assert_eq!(listed_key("a/b.json").as_deref(), Some("a/b.json"));
        assert_eq!(listed_key("a//b/").as_deref(), Some("a/b"));
        assert_eq!(listed_key("日本/語").as_deref(), Some("日本/語"));
        for odd in ["", "/", "/a", "../a", "a/../b", "./a"] {
            assert_eq!(listed_key(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn the_index_follows_the_files() {
        let root = std::env::temp_dir().join(format!("s3kv-key-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let bucket = root.join("bucket");
        std::fs::create_dir_all(bucket.join("a/b")).unwrap();
        std::fs::create_dir_all(bucket.join("empty/dir")).unwrap();
        std::fs::create_dir_all(root.join(".versions/bucket/YQ")).unwrap();
        for file in ["a/b/c.json", "a/x", "é.json"] {
            std::fs::write(bucket.join(file), "{}").unwrap();
        }
        // s3s-fs's own files, beside the buckets.
        std::fs::write(root.join(".bucket-YnVja2V0.object-YQ.metadata.json"), "{}").unwrap();
        std::fs::write(root.join(".tmp.0.internal.part"), "").unwrap();
        std::fs::write(root.join(".versions/bucket/YQ/1.json"), "{}").unwrap();

        let index = KeyIndex::build(&root);
        let all = Query {
            prefix: "",
            after: None,
            delimiter: None,
            max_keys: 1000,
        };
        let keys = |index: &KeyIndex| -> Vec<String> {
            let page = index.page("bucket", &all).unwrap();
            page.entries.iter().map(|e| e.as_str().to_owned()).collect()
        };
        assert_eq!(keys(&index), ["a/b/c.json", "a/x", "é.json"]);
        assert!(!index.knows(".versions"), "not a bucket");

        std::fs::write(bucket.join("a/new"), "{}").unwrap();
        index.refresh("bucket", "a//new");
        std::fs::remove_file(bucket.join("a/x")).unwrap();
        index.refresh("bucket", "a/x");
        index.refresh("bucket", "empty/dir/");
        assert_eq!(keys(&index), ["a/b/c.json", "a/new", "é.json"]);

        // A key that is not a plain path: the bucket is walked again.
        index.refresh("bucket", "a/../x");
        assert!(!index.knows("bucket"));
        index.insert_bucket("bucket", scan_bucket(&bucket).unwrap());
        assert_eq!(keys(&index), ["a/b/c.json", "a/new", "é.json"]);
        // Changes to a bucket the index does not know wait for its walk.
        index.refresh("other", "k");
        assert!(index.page("other", &all).is_none());
        let _ = std::fs::remove_dir_all(&root);
    }
}
