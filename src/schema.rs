//! JSON Schemas per key prefix: a write that breaks its prefix's schema is refused with every violation named.
//!
//! A schema is one object in the bucket ([`KeyMap::schema_object_key`]), so it is versioned and survives like
//! an item, and each function finds the current set with one listing. The longest prefix that a key starts with
//! governs it; keys under no schema take any JSON document.
//!
//! Compiling a schema costs far more than validating with it, so each function instance keeps what it compiled
//! ([`Schemas`]), keyed by the object's ETag: the listing a write makes anyway tells when a schema changed, and
//! only a changed schema is fetched and compiled again. The writer lists on every write, so a schema change
//! holds for the next write in every instance; the syncer and reconcile, which only count violations of manual
//! uploads, list once per invocation.
//!
//! Remote `$ref`s are refused, not fetched: the functions have no business calling arbitrary URLs (the writer is
//! outside the VPC, the others have no internet route), and a schema that depended on one would change under us.
//! Put referenced schemas under `$defs` and refer to them there. The `jsonschema` crate is built without its
//! HTTP and file retrievers, so it cannot fetch one even by mistake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::document::{self, DocumentError};
use crate::key::{KeyMap, KeyPrefix};
use crate::ports::{Etag, ObjectStore, StoreError};
use crate::retry::{self, Retryable};

/// The most violations one answer lists; the count says how many there were.
pub const MAX_LISTED_VIOLATIONS: usize = 100;
/// A violation's message is cut here: it quotes the offending value, which may be large.
const MAX_MESSAGE_CHARS: usize = 300;
/// The largest schema accepted or loaded.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// One way a document breaks its schema, as JSON Pointers into the document and into the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub path: String,
    #[serde(rename = "schemaPath")]
    pub schema_path: String,
    pub message: String,
}

/// Every violation of one document against the schema of `schema` (its prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations {
    pub schema: String,
    /// The first [`MAX_LISTED_VIOLATIONS`].
    pub listed: Vec<Violation>,
    pub count: usize,
}

#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("the schema is not a JSON document: {0}")]
    NotJson(#[source] DocumentError),
    #[error("the schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("not a valid JSON Schema: {0}")]
    Invalid(String),
    /// A schema in the bucket that does not compile (uploaded around the API). Writes under it are refused
    /// rather than let through unchecked: whoever put it there meant those documents to be checked.
    #[error("the schema for prefix {prefix:?} in the bucket is not a valid JSON Schema ({reason}); replace it with PUT /schemas/{prefix} or delete it")]
    Stored { prefix: String, reason: String },
    #[error("the document breaks the schema for prefix {:?} ({} violation{})", .0.schema, .0.count, if .0.count == 1 { "" } else { "s" })]
    Violated(Violations),
    #[error("no schema for prefix {0:?}")]
    NotFound(String),
    #[error("reading the schemas failed: {0}")]
    Store(#[from] StoreError),
}

impl Retryable for SchemaError {
    fn is_retryable(&self) -> bool {
        matches!(self, SchemaError::Store(e) if e.is_retryable())
    }
    fn deadline_reached() -> Self {
        SchemaError::Store(StoreError::deadline_reached())
    }
}

/// A schema as compiled once per instance, or why it did not compile; shared by every set that holds it.
type Compiled = Arc<Result<Schema, String>>;

/// A compiled schema.
pub struct Schema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl Schema {
    /// Compiles a schema document: draft 2020-12 unless its `$schema` names another (4, 6, 7, 2019-09), checked
    /// against its draft's meta-schema, every `$ref` resolved inside the document.
    pub fn compile(bytes: &[u8]) -> Result<Self, SchemaError> {
        if bytes.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge { size: bytes.len() });
        }
        document::validate(bytes).map_err(SchemaError::NotJson)?;
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| SchemaError::Invalid(format!("unreadable: {e}")))?;
        if !value.is_object() && !value.is_boolean() {
            return Err(SchemaError::Invalid(
                "a schema is a JSON object (or true/false)".into(),
            ));
        }
        let validator = jsonschema::validator_for(&value).map_err(|e| {
            let reason = match e.kind() {
                jsonschema::error::ValidationErrorKind::Referencing(_) => format!(
                    "{e}; remote $ref is not fetched: put the referenced schema under $defs and use \"$ref\": \"#/$defs/...\""
                ),
                _ if e.instance_path().as_str().is_empty() => e.to_string(),
                _ => format!("{e} (at {})", e.instance_path().as_str()),
            };
            SchemaError::Invalid(reason)
        })?;
        Ok(Self { validator })
    }

    /// Every violation of `document`, in the validator's order.
    pub fn check(&self, document: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(document)
            .map(|e| {
                let mut message = e.to_string();
                if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
                    message.truncate(cut);
                    message.push('…');
                }
                Violation {
                    path: e.instance_path().as_str().to_owned(),
                    schema_path: e.schema_path().as_str().to_owned(),
                    message,
                }
            })
            .collect()
    }
}

/// A schema as the bucket holds it, compiled or not.
#[derive(Debug, Clone)]
pub struct Stored {
    pub prefix: KeyPrefix,
    pub etag: Etag,
    pub size: u64,
    pub last_modified: Option<String>,
    compiled: Compiled,
}

impl Stored {
    /// Why the stored schema cannot be used, if it cannot.
    pub fn problem(&self) -> Option<&str> {
        self.compiled.as_ref().as_ref().err().map(String::as_str)
    }
}

/// The schemas at one moment, longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    schemas: Vec<Stored>,
}

impl SchemaSet {
    /// The schema that governs `key`: the longest prefix it starts with.
    pub fn governing(&self, key: &str) -> Option<&Stored> {
        self.schemas.iter().find(|s| s.prefix.covers(key))
    }

    /// How `body` breaks the schema that governs `key`, if it does: for documents that reached S3 around the
    /// writer, which are counted, not refused. A schema that cannot be used is reported where schemas are read
    /// (and the writer refuses writes under it), not as a document's violation.
    pub fn violations(&self, key: &str, body: &[u8]) -> Option<Violations> {
        match self.check(key, body) {
            Err(SchemaError::Violated(violations)) => Some(violations),
            _ => None,
        }
    }

    /// In prefix order, for listing.
    pub fn all(&self) -> Vec<&Stored> {
        let mut all: Vec<&Stored> = self.schemas.iter().collect();
        all.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        all
    }

    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }

    /// Checks `body` (already a valid JSON document) against the schema governing `key`; `Ok(None)` when no
    /// schema governs it, `Ok(Some(prefix))` when it conforms.
    pub fn check(&self, key: &str, body: &[u8]) -> Result<Option<&str>, SchemaError> {
        let Some(stored) = self.governing(key) else {
            return Ok(None);
        };
        let prefix = stored.prefix.as_str();
        let schema = stored
            .compiled
            .as_ref()
            .as_ref()
            .map_err(|reason| SchemaError::Stored {
                prefix: prefix.to_owned(),
                reason: reason.clone(),
            })?;
        // A document can be valid JSON and still not become a `Value`: a lone surrogate in a string, a number past
        // f64. Those are the document's to fix, like any other malformed body.
        let document: Value = serde_json::from_slice(body).map_err(|e| {
            let full = e.to_string();
            let reason = full.split(" at line ").next().unwrap_or(&full);
            SchemaError::NotJson(DocumentError::Malformed {
                message: format!(
                    "a document under a schema must hold only values a schema can check: {reason}"
                ),
                line: e.line(),
                column: e.column(),
            })
        })?;
        let violations = schema.check(&document);
        if violations.is_empty() {
            return Ok(Some(prefix));
        }
        let count = violations.len();
        Err(SchemaError::Violated(Violations {
            schema: prefix.to_owned(),
            listed: violations.into_iter().take(MAX_LISTED_VIOLATIONS).collect(),
            count,
        }))
    }
}

/// One function instance's compiled schemas, by prefix, each with the ETag it was compiled from.
pub struct Schemas {
    keys: KeyMap,
    compiled: Mutex<HashMap<KeyPrefix, (Etag, Compiled)>>,
}

impl Schemas {
    pub fn new(keys: KeyMap) -> Self {
        Self {
            keys,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// The schemas as the bucket holds them now: one listing, plus a fetch and a compile for each schema that is
    /// new or changed since this instance last looked.
    pub async fn current<S: ObjectStore>(
        &self,
        store: &S,
        deadline: Instant,
    ) -> Result<SchemaSet, StoreError> {
        let root = self.keys.schema_root();
        let mut listed = Vec::new();
        let mut next = None;
        loop {
            let page = retry::with_deadline(deadline, "s3 list schemas", || {
                store.list(&root, next.clone(), 1000)
            })
            .await?;
            listed.extend(page.objects);
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        let mut schemas = Vec::with_capacity(listed.len());
        for object in listed {
            let Some(prefix) = self.keys.schema_prefix(&object.key) else {
                tracing::warn!(object_key = %object.key, "not a schema object name; ignored");
                continue;
            };
            let known = self.cached(&prefix, &object.etag);
            let (etag, compiled) = match known {
                Some(compiled) => (object.etag.clone(), compiled),
                None => match self.load(store, &object.key, deadline).await {
                    Ok(Some(loaded)) => loaded,
                    // Deleted between the listing and the read.
                    Ok(None) => continue,
                    Err(e) => return Err(e),
                },
            };
            self.lock()
                .insert(prefix.clone(), (etag.clone(), compiled.clone()));
            schemas.push(Stored {
                prefix,
                etag,
                size: object.size,
                last_modified: object.last_modified,
                compiled,
            });
        }
        let present: std::collections::HashSet<&KeyPrefix> =
            schemas.iter().map(|s| &s.prefix).collect();
        self.lock().retain(|prefix, _| present.contains(prefix));
        schemas.sort_by_key(|s| std::cmp::Reverse(s.prefix.as_str().len()));
        Ok(SchemaSet { schemas })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyPrefix, (Etag, Compiled)>> {
        // A panic while holding the lock cannot leave the map half-changed (each change is one insert or
        // retain), so a poisoned lock is still a good map.
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, prefix: &KeyPrefix, etag: &Etag) -> Option<Compiled> {
        let map = self.lock();
        let (known, compiled) = map.get(prefix)?;
        (known == etag).then(|| compiled.clone())
    }

    /// Fetches and compiles one schema object; the ETag is the fetched object's, which may be newer than the
    /// listing's (S3 reads are strongly consistent).
    async fn load<S: ObjectStore>(
        &self,
        store: &S,
        object_key: &str,
        deadline: Instant,
    ) -> Result<Option<(Etag, Compiled)>, StoreError> {
        let fetched = retry::with_deadline(deadline, "s3 get schema", || {
            store.get(object_key, None, MAX_SCHEMA_BYTES as u64)
        })
        .await;
        let object = match fetched {
            Ok(object) => object,
            Err(StoreError::NotFound) => return Ok(None),
            Err(StoreError::TooLarge { size, .. }) => {
                let reason = SchemaError::TooLarge {
                    size: size as usize,
                }
                .to_string();
                return self.head_etag(store, object_key, deadline, reason).await;
            }
            Err(e) => return Err(e),
        };
        let compiled = Schema::compile(&object.body).map_err(|e| e.to_string());
        if let Err(reason) = &compiled {
            tracing::warn!(object_key, %reason, "a schema in the bucket does not compile; writes under its prefix are refused");
        }
        Ok(Some((object.etag, Arc::new(compiled))))
    }

    async fn head_etag<S: ObjectStore>(
        &self,
        store: &S,
        object_key: &str,
        deadline: Instant,
        reason: String,
    ) -> Result<Option<(Etag, Compiled)>, StoreError> {
        match retry::with_deadline(deadline, "s3 head schema", || store.head(object_key)).await {
            Ok(etag) => Ok(Some((etag, Arc::new(Err(reason))))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Result<Schema, SchemaError> {
        Schema::compile(schema.to_string().as_bytes())
    }

    #[test]
    fn every_violation_is_named_with_json_pointers() {
        let schema = compile(json!({
            "type": "object",
            "properties": {"enabled": {"type": "boolean"}, "ratio": {"maximum": 1}},
            "required": ["enabled", "owner"]
        }))
        .unwrap();
        let violations = schema.check(&json!({"enabled": "yes", "ratio": 2}));
        let mut paths: Vec<(&str, &str)> = violations
            .iter()
            .map(|v| (v.path.as_str(), v.schema_path.as_str()))
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            vec![
                ("", "/required"),
                ("/enabled", "/properties/enabled/type"),
                ("/ratio", "/properties/ratio/maximum"),
            ]
        );
        assert!(schema
            .check(&json!({"enabled": true, "owner": 1}))
            .is_empty());
    }

    #[test]
    fn the_default_draft_is_2020_12_and_others_are_chosen_by_dollar_schema() {
        // prefixItems exists only in 2020-12; draft 7 ignores it.
        let tuple = json!({"prefixItems": [{"type": "string"}]});
        assert_eq!(compile(tuple.clone()).unwrap().check(&json!([1])).len(), 1);
        let mut draft7 = tuple;
        draft7["$schema"] = json!("http://json-schema.org/draft-07/schema#");
        assert!(compile(draft7).unwrap().check(&json!([1])).is_empty());
    }

    #[test]
    fn invalid_schemas_are_refused_with_why() {
        for (schema, says) in [
            (json!({"type": "bool"}), "bool"),
            (json!({"minimum": "one"}), "one"),
            (json!([1, 2]), "a schema is a JSON object"),
            (
                json!({"$ref": "https://example.com/flag.json"}),
                "remote $ref is not fetched",
            ),
            (
                json!({"$schema": "https://example.com/my-meta", "type": "object"}),
                "remote $ref is not fetched",
            ),
        ] {
            match compile(schema.clone()) {
                Err(SchemaError::Invalid(reason)) => {
                    assert!(reason.contains(says), "{schema}: {reason}")
                }
                other => panic!("{schema}: {other:?}"),
            }
        }
        assert!(matches!(
            Schema::compile(b"{\"type\":"),
            Err(SchemaError::NotJson(_))
        ));
        // Local references are resolved inside the document; the schema path names the keyword that failed,
        // where it is written.
        let local = compile(json!({
            "$defs": {"flag": {"type": "boolean"}},
            "properties": {"on": {"$ref": "#/$defs/flag"}}
        }))
        .unwrap();
        assert_eq!(
            local.check(&json!({"on": 1}))[0].schema_path,
            "/$defs/flag/type"
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let schema = compile(json!({"type": "number"})).unwrap();
        let violations = schema.check(&json!("x".repeat(10_000)));
        assert!(violations[0].message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[tokio::test]
    async fn the_longest_prefix_governs_and_a_changed_schema_is_compiled_again() {
        use crate::memory::MemoryStore;
        use crate::ports::PutMode;
        let keys = KeyMap::new("items/", "s3kv:");
        let store = MemoryStore::with_page_size(1);
        let put = |prefix: &str, schema: Value| {
            let object_key = keys.schema_object_key(&KeyPrefix::parse(prefix).unwrap());
            let store = store.clone();
            async move {
                store
                    .put(
                        &object_key,
                        bytes::Bytes::from(schema.to_string()),
                        PutMode::Overwrite,
                        &crate::audit::Author::default(),
                    )
                    .await
                    .unwrap();
            }
        };
        put("flags/", json!({"type": "boolean"})).await;
        put("flags/beta/", json!({"type": "object"})).await;
        let schemas = Schemas::new(keys.clone());
        let far = Instant::now() + std::time::Duration::from_secs(5);
        let set = schemas.current(&store, far).await.unwrap();
        assert_eq!(set.check("flags/on", b"true").unwrap(), Some("flags/"));
        assert_eq!(
            set.check("flags/beta/x", b"{}").unwrap(),
            Some("flags/beta/")
        );
        assert!(
            matches!(set.check("flags/beta/x", b"true"), Err(SchemaError::Violated(v)) if v.schema == "flags/beta/")
        );
        assert_eq!(set.check("other", b"1").unwrap(), None);
        let before = set.governing("flags/on").unwrap().compiled.clone();

        // Unchanged: the same compiled schema. Changed: compiled again. Deleted: gone.
        let again = schemas.current(&store, far).await.unwrap();
        assert!(Arc::ptr_eq(
            &before,
            &again.governing("flags/on").unwrap().compiled
        ));
        put("flags/", json!({"type": "string"})).await;
        let changed = schemas.current(&store, far).await.unwrap();
        assert!(!Arc::ptr_eq(
            &before,
            &changed.governing("flags/on").unwrap().compiled
        ));
        assert!(changed.check("flags/on", b"true").is_err());
        store
            .delete(
                &keys.schema_object_key(&KeyPrefix::parse("flags/beta/").unwrap()),
                None,
            )
            .await
            .unwrap();
        let fewer = schemas.current(&store, far).await.unwrap();
        assert_eq!(fewer.all().len(), 1);
        assert_eq!(
            fewer.check("flags/beta/x", b"\"y\"").unwrap(),
            Some("flags/")
        );

        // A broken schema in the bucket refuses writes under it rather than letting them through.
        put("flags/", json!({"type": "nope"})).await;
        let broken = schemas.current(&store, far).await.unwrap();
        assert!(broken.governing("flags/on").unwrap().problem().is_some());
        assert!(matches!(
            broken.check("flags/on", b"true"),
            Err(SchemaError::Stored { .. })
        ));
    }
}
