//! Item keys, and the one mapping between an item key, its S3 object key and its Valkey key.
//!
//! Rules (also in docs/src/http-api/keys-and-limits.md): 1–512 bytes of UTF-8, no control characters and no U+FFFE
//! or U+FFFF, no leading `/`, and no empty, `.` or `..` segments. They keep object keys unambiguous (`a//b` and
//! `a/./b` would name different objects that look like the same path), keep every item addressable through the REST
//! API and listable (S3's listings are XML 1.0, which cannot carry control characters or U+FFFE/U+FFFF), and leave
//! room under S3's 1,024-byte object key limit for the prefix and the `.json` suffix. Keys under `.s3kv/` are
//! reserved for s3kv's own objects (the schemas today), so that nothing s3kv adds there later can meet an item.

use std::fmt;

use thiserror::Error;

use crate::percent::{self, Encoding, PercentError};

pub const MAX_KEY_BYTES: usize = 512;

/// Whether S3 can return `c` in an XML listing: XML 1.0 has no control characters but tab and line breaks, and
/// no U+FFFE or U+FFFF; we refuse the line breaks too.
pub fn xml_safe(c: char) -> bool {
    !c.is_control() && c != '\u{FFFE}' && c != '\u{FFFF}'
}
const SUFFIX: &str = ".json";
/// The part of the key space s3kv keeps for its own objects: no item key or schema prefix starts with it.
pub const RESERVED: &str = ".s3kv/";
/// Schema objects: under the item prefix, in the reserved part, never ending in [`SUFFIX`] (see
/// [`KeyMap::schema_root`]).
const SCHEMA_DIR: &str = ".s3kv/schemas/";
const SCHEMA_SUFFIX: &str = ".schema";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is {len} bytes long; the limit is {MAX_KEY_BYTES} bytes of UTF-8")]
    TooLong { len: usize },
    #[error("the key contains a control character (or U+FFFE/U+FFFF) at byte {position}")]
    ControlChar { position: usize },
    #[error("the key starts with '/'")]
    LeadingSlash,
    #[error("the key has an empty, '.' or '..' segment ({segment:?}); use single '/' between plain names")]
    BadSegment { segment: String },
    #[error(
        "keys under '{RESERVED}' are reserved for s3kv's own objects (schemas); use another prefix"
    )]
    Reserved,
    #[error("the key is not correctly percent-encoded: {0}")]
    Encoding(#[from] PercentError),
}

/// The key rules: `segments` are the ones that must be whole names (not empty, `.` or `..`).
fn check<'a>(raw: &str, mut segments: impl Iterator<Item = &'a str>) -> Result<(), KeyError> {
    if raw.is_empty() {
        return Err(KeyError::Empty);
    }
    if raw.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong { len: raw.len() });
    }
    if let Some((position, _)) = raw.char_indices().find(|(_, c)| !xml_safe(*c)) {
        return Err(KeyError::ControlChar { position });
    }
    if raw.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    if raw.starts_with(RESERVED) {
        return Err(KeyError::Reserved);
    }
    if let Some(segment) = segments.find(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(KeyError::BadSegment {
            segment: segment.to_owned(),
        });
    }
    Ok(())
}

/// A key that has passed every rule. The only way to get one is [`ItemKey::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey(String);

impl ItemKey {
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        check(raw, raw.split('/'))?;
        Ok(Self(raw.to_owned()))
    }

    /// Parses a key from an API Gateway REST path parameter, which arrives percent-encoded.
    pub fn from_path_param(encoded: &str) -> Result<Self, KeyError> {
        Self::parse(&percent::decode(encoded, Encoding::Path)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A prefix of item keys, as a schema is attached to (`flags/`, `config/ui`): the key rules, except that the last
/// segment may be empty (a trailing `/`) or part of a name. A prefix no valid key can start with (`a//`) is
/// refused, so every prefix governs something.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        // Every segment but the last, which a key under the prefix completes.
        let complete = raw.rsplit_once('/').map_or("", |(head, _)| head);
        check(raw, complete.split('/').filter(|_| raw.contains('/')))?;
        Ok(Self(raw.to_owned()))
    }

    /// Parses a prefix from a REST path parameter (percent-encoded; a trailing `/` may come as `%2F`).
    pub fn from_path_param(encoded: &str) -> Result<Self, KeyError> {
        Self::parse(&percent::decode(encoded, Encoding::Path)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `key` starts with this prefix.
    pub fn covers(&self, key: &str) -> bool {
        key.starts_with(&self.0)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an S3 object key means to s3kv.
#[derive(Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Item(ItemKey),
    /// Outside the prefix or without the `.json` suffix: not ours, ignore it.
    Foreign,
    /// Looks like ours but breaks the key rules (a manual upload of `a//b.json`, say).
    Invalid(KeyError),
}

/// The mapping item key ↔ `{object_prefix}{key}.json` ↔ `{cache_prefix}{key}`.
///
/// ```
/// use s3kv::key::{ItemKey, KeyMap, ObjectKind};
///
/// let map = KeyMap::new("items/", "s3kv:");
/// let key = ItemKey::parse("flags/checkout v2").unwrap();
/// assert_eq!(map.object_key(&key), "items/flags/checkout v2.json");
/// assert_eq!(map.cache_key(&key), "s3kv:flags/checkout v2");
/// assert_eq!(map.classify("items/flags/checkout v2.json"), ObjectKind::Item(key));
/// assert_eq!(map.classify("items/notes.txt"), ObjectKind::Foreign);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    object_prefix: String,
    cache_prefix: String,
}

impl KeyMap {
    pub fn new(object_prefix: impl Into<String>, cache_prefix: impl Into<String>) -> Self {
        Self {
            object_prefix: object_prefix.into(),
            cache_prefix: cache_prefix.into(),
        }
    }

    pub fn object_prefix(&self) -> &str {
        &self.object_prefix
    }

    pub fn object_key(&self, key: &ItemKey) -> String {
        format!("{}{}{SUFFIX}", self.object_prefix, key.0)
    }

    /// One Valkey key per item: every script touches exactly this key, so any cluster slot works.
    pub fn cache_key(&self, key: &ItemKey) -> String {
        format!("{}{}", self.cache_prefix, key.0)
    }

    /// The change feed's stream (see [`crate::ports::Feed`]). A control character keeps it outside every item's
    /// cache key, as no item key may hold one.
    pub fn feed_key(&self) -> String {
        format!("{}\u{1}feed", self.cache_prefix)
    }

    /// The reaper's index of expiring items ([`crate::ports::ExpiryIndex`]): one key, outside every item's cache
    /// key like the feed's, under the same prefix so an ACL on the prefix covers it.
    pub fn expiry_key(&self) -> String {
        format!("{}\u{1}expiry", self.cache_prefix)
    }

    /// Where the schemas live: beside the items, under the same prefix (so the functions' S3 permissions cover
    /// them and the bucket versions them), but outside the item key space, because no item's object key ends in
    /// anything but `.json`.
    pub fn schema_root(&self) -> String {
        format!("{}{SCHEMA_DIR}", self.object_prefix)
    }

    /// One flat object per schema: the prefix with `%` and `/` percent-encoded, so `a` and `a/` are two names
    /// and no prefix becomes a folder of another (which a filesystem-backed S3 could not store).
    ///
    /// ```
    /// use s3kv::key::{KeyMap, KeyPrefix};
    ///
    /// let map = KeyMap::new("items/", "s3kv:");
    /// let prefix = KeyPrefix::parse("flags/").unwrap();
    /// assert_eq!(map.schema_object_key(&prefix), "items/.s3kv/schemas/flags%2F.schema");
    /// assert_eq!(map.schema_prefix("items/.s3kv/schemas/flags%2F.schema"), Some(prefix));
    /// ```
    pub fn schema_object_key(&self, prefix: &KeyPrefix) -> String {
        let flat = prefix.0.replace('%', "%25").replace('/', "%2F");
        format!("{}{flat}{SCHEMA_SUFFIX}", self.schema_root())
    }

    /// The prefix a schema object is for, if `object_key` is one.
    pub fn schema_prefix(&self, object_key: &str) -> Option<KeyPrefix> {
        let flat = object_key
            .strip_prefix(&self.object_prefix)?
            .strip_prefix(SCHEMA_DIR)?
            .strip_suffix(SCHEMA_SUFFIX)?;
        if flat.contains('/') {
            return None;
        }
        KeyPrefix::parse(&percent::decode(flat, Encoding::Path).ok()?).ok()
    }

    /// The item a cache key belongs to, if it is one of ours.
    pub fn item_from_cache_key(&self, cache_key: &str) -> Option<ItemKey> {
        ItemKey::parse(cache_key.strip_prefix(&self.cache_prefix)?).ok()
    }

    /// Classifies a decoded S3 object key.
    pub fn classify(&self, object_key: &str) -> ObjectKind {
        let Some(inner) = object_key
            .strip_prefix(&self.object_prefix)
            .and_then(|k| k.strip_suffix(SUFFIX))
        else {
            return ObjectKind::Foreign;
        };
        match ItemKey::parse(inner) {
            Ok(key) => ObjectKind::Item(key),
            Err(err) => ObjectKind::Invalid(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "maintenance",
            "flags/checkout",
            "a b+c",
            "café/✓",
            "v1.2/config.json",
            "x".repeat(512).as_str(),
        ] {
            assert_eq!(ItemKey::parse(k).unwrap().as_str(), k);
        }
    }

    #[test]
    fn rejects_each_rule_with_its_own_error() {
        assert_eq!(ItemKey::parse(""), Err(KeyError::Empty));
        assert_eq!(
            ItemKey::parse(&"x".repeat(513)),
            Err(KeyError::TooLong { len: 513 })
        );
        assert_eq!(
            ItemKey::parse("a\nb"),
            Err(KeyError::ControlChar { position: 1 })
        );
        assert_eq!(
            ItemKey::parse("a\u{7f}"),
            Err(KeyError::ControlChar { position: 1 })
        );
        assert_eq!(
            ItemKey::parse("ab\u{FFFE}"),
            Err(KeyError::ControlChar { position: 2 })
        );
        assert_eq!(ItemKey::parse("/a"), Err(KeyError::LeadingSlash));
        for k in [".s3kv/x", ".s3kv/schemas/flags%2F.schema", ".s3kv/"] {
            assert_eq!(ItemKey::parse(k), Err(KeyError::Reserved), "{k}");
        }
        // Only the folder: a name that merely starts the same way is an ordinary key.
        for k in [".s3kv", ".s3kvx/a", "a/.s3kv/b", ".s3k"] {
            assert!(ItemKey::parse(k).is_ok(), "{k}");
        }
        for (k, seg) in [("a//b", ""), ("a/./b", "."), ("../a", ".."), ("a/", "")] {
            assert_eq!(
                ItemKey::parse(k),
                Err(KeyError::BadSegment {
                    segment: seg.into()
                }),
                "{k}"
            );
        }
    }

    #[test]
    fn length_limit_counts_bytes_not_chars() {
        let k = "é".repeat(257); // 514 bytes
        assert_eq!(ItemKey::parse(&k), Err(KeyError::TooLong { len: 514 }));
    }

    #[test]
    fn path_params_are_percent_decoded_with_plus_kept() {
        assert_eq!(
            ItemKey::from_path_param("a+b%20c%2Fd").unwrap().as_str(),
            "a+b c/d"
        );
        assert_eq!(
            ItemKey::from_path_param("%2E%2E"),
            Err(KeyError::BadSegment {
                segment: "..".into()
            })
        );
        assert!(matches!(
            ItemKey::from_path_param("50%"),
            Err(KeyError::Encoding(_))
        ));
    }

    #[test]
    fn mapping_round_trips_through_object_keys() {
        let map = KeyMap::new("items/", "s3kv:");
        let key = ItemKey::parse("flags/a b").unwrap();
        assert_eq!(map.object_key(&key), "items/flags/a b.json");
        assert_eq!(map.cache_key(&key), "s3kv:flags/a b");
        assert_eq!(
            map.item_from_cache_key(&map.cache_key(&key)),
            Some(key.clone())
        );
        assert_eq!(map.classify(&map.object_key(&key)), ObjectKind::Item(key));
        assert_eq!(map.item_from_cache_key("other:flags/a b"), None);
    }

    #[test]
    fn objects_outside_the_prefix_or_without_suffix_are_foreign() {
        let map = KeyMap::new("items/", "s3kv:");
        assert_eq!(map.classify("other/a.json"), ObjectKind::Foreign);
        assert_eq!(map.classify("items/a.txt"), ObjectKind::Foreign);
        assert_eq!(map.classify("items/a.json.bak"), ObjectKind::Foreign);
        assert!(matches!(
            map.classify("items/a//b.json"),
            ObjectKind::Invalid(_)
        ));
        assert!(matches!(
            map.classify("items/.json"),
            ObjectKind::Invalid(KeyError::Empty)
        ));
    }

    #[test]
    fn prefixes_follow_the_key_rules_but_may_end_anywhere() {
        for p in ["flags/", "flags", "a/b/", "a/.", "café/✓ x"] {
            assert_eq!(KeyPrefix::parse(p).unwrap().as_str(), p);
        }
        assert_eq!(KeyPrefix::parse(""), Err(KeyError::Empty));
        assert_eq!(KeyPrefix::parse("/a"), Err(KeyError::LeadingSlash));
        assert_eq!(KeyPrefix::parse(".s3kv/"), Err(KeyError::Reserved));
        assert_eq!(KeyPrefix::parse(".s3kv/schemas"), Err(KeyError::Reserved));
        assert!(KeyPrefix::parse(".s3kv").is_ok());
        assert!(matches!(
            KeyPrefix::parse("a//"),
            Err(KeyError::BadSegment { .. })
        ));
        assert!(matches!(
            KeyPrefix::parse("a/../b"),
            Err(KeyError::BadSegment { .. })
        ));
        assert_eq!(
            KeyPrefix::from_path_param("flags%2F").unwrap().as_str(),
            "flags/"
        );
    }

    #[test]
    fn schema_objects_are_outside_the_item_key_space_and_round_trip() {
        for object_prefix in ["", "items/"] {
            let map = KeyMap::new(object_prefix, "s3kv:");
            for p in ["flags/", "flags", "100%/x", "a/b.json"] {
                let prefix = KeyPrefix::parse(p).unwrap();
                let object_key = map.schema_object_key(&prefix);
                assert_eq!(
                    map.classify(&object_key),
                    ObjectKind::Foreign,
                    "{object_key}"
                );
                assert_eq!(map.schema_prefix(&object_key), Some(prefix));
            }
            // An upload that looks like an item there is not one, nor a schema.
            let upload = format!("{object_prefix}.s3kv/schemas/flags.json");
            assert_eq!(
                map.classify(&upload),
                ObjectKind::Invalid(KeyError::Reserved)
            );
            assert_eq!(map.schema_prefix(&upload), None);
        }
        let map = KeyMap::new("", "s3kv:");
        assert_ne!(
            map.schema_object_key(&KeyPrefix::parse("a").unwrap()),
            map.schema_object_key(&KeyPrefix::parse("a/").unwrap())
        );
    }

    #[test]
    fn empty_prefix_maps_every_json_object() {
        let map = KeyMap::new("", "s3kv:");
        assert_eq!(
            map.classify("a.json.json"),
            ObjectKind::Item(ItemKey::parse("a.json").unwrap())
        );
    }
}
