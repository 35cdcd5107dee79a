//! Writing items: validate, then let S3 (the source of truth) decide create vs replace.
//!
//! The writer never touches the cache: the S3 notification does, through the syncer, so every change reaches
//! Valkey by one ordered path whether it came through the API or a manual upload.

use std::time::Instant;

use bytes::Bytes;
use thiserror::Error;

use crate::audit::Author;
use crate::config::Config;
use crate::document::{self, DocumentError};
use crate::key::{ItemKey, KeyMap, KeyPrefix};
use crate::ports::{Etag, Object, ObjectStore, PutMode, StoreError};
use crate::retry;
use crate::schema::{Schema, SchemaError, SchemaSet, Schemas};

#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the body is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("no item with this key")]
    NotFound,
    #[error("the item has no version {0:?} (it never existed, expired, or is a delete)")]
    NoSuchVersion(String),
    #[error("version {0:?} is not a JSON document, so it cannot become the item again")]
    NotRestorable(String),
    /// The client's precondition does not hold for the item as S3 holds it now.
    #[error("{0}")]
    PreconditionFailed(Unmet),
    /// The body breaks its prefix's schema, or a schema cannot be stored or used.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub etag: Etag,
    /// True when no object existed under the key before this write.
    pub created: bool,
}

/// A client's condition on the item's current state (`If-None-Match: *`, `If-Match: <etag>`), carried out by
/// S3's own conditional requests so that it holds however many writers race.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// Only if no item exists under the key.
    Absent,
    /// Only if the item's current version has this tag.
    Matches(Etag),
}

/// Why a precondition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Unmet {
    #[error("an item with this key already exists")]
    Exists,
    #[error("the item's current ETag is not the one given (it was changed or deleted since)")]
    Changed,
}

pub struct Writer<S> {
    store: S,
    keys: KeyMap,
    schemas: Schemas,
    max_body_bytes: usize,
    max_object_bytes: u64,
}

impl<S: ObjectStore> Writer<S> {
    pub fn new(store: S, config: &Config) -> Self {
        Self {
            store,
            keys: config.key_map(),
            schemas: Schemas::new(config.key_map()),
            max_body_bytes: config.max_body_bytes,
            max_object_bytes: config.max_object_bytes,
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Stores `body` byte-for-byte, with `author` in the object's metadata. Without a precondition: one round trip for a create (`If-None-Match: *`), two
    /// for a replace; the conditional create is what makes 201 vs 200 truthful under concurrent writers.
    pub async fn put(
        &self,
        key: &ItemKey,
        body: Bytes,
        precondition: &Precondition,
        author: &Author,
        deadline: Instant,
    ) -> Result<Written, WriteError> {
        self.check(key, &body, deadline).await?;
        self.store_checked(
            &self.keys.object_key(key),
            body,
            precondition,
            author,
            deadline,
        )
        .await
    }

    /// Everything a write checks, without writing (`?dryRun=true`): the size, that the body is JSON, and the
    /// schema that governs the key, if any (its prefix is returned). The schemas are listed afresh, so a schema
    /// changed a moment ago already applies.
    pub async fn check(
        &self,
        key: &ItemKey,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Option<String>, WriteError> {
        if body.len() > self.max_body_bytes {
            return Err(WriteError::TooLarge {
                size: body.len(),
                limit: self.max_body_bytes,
            });
        }
        document::validate(body)?;
        let schemas = self.schemas.current(&self.store, deadline).await?;
        Ok(schemas.check(key.as_str(), body)?.map(str::to_owned))
    }

    /// Makes an old version the item again: its bytes become a new current version (so the change reaches the
    /// cache through its notification, like any write), with `author` recording the restore. Restoring onto a
    /// deleted item undeletes it. The bytes pass through here rather than by a server-side copy: S3's
    /// conditional `PutObject` is what holds `If-Match` against racing writers, and it is the same call a
    /// write makes.
    pub async fn restore(
        &self,
        key: &ItemKey,
        version: &str,
        precondition: &Precondition,
        author: &Author,
        deadline: Instant,
    ) -> Result<Written, WriteError> {
        let object_key = self.keys.object_key(key);
        let fetched = retry::with_deadline(deadline, "s3 get version", || {
            self.store
                .get_version(&object_key, version, self.max_object_bytes)
        })
        .await;
        let old = match fetched {
            Ok(old) => old,
            Err(StoreError::NotFound) => return Err(WriteError::NoSuchVersion(version.to_owned())),
            Err(StoreError::TooLarge { .. }) => {
                return Err(WriteError::NotRestorable(version.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        if document::validate(&old.body).is_err() {
            return Err(WriteError::NotRestorable(version.to_owned()));
        }
        // The old version met the schema of its day; it must meet today's to become the item again.
        let schemas = self.schemas.current(&self.store, deadline).await?;
        schemas.check(key.as_str(), &old.body)?;
        // No expiry: the old version's would make an undeleted item vanish again. A restore is a write without one.
        let author = Author {
            restored_from: Some(version.to_owned()),
            expires: None,
            ..author.clone()
        };
        self.store_checked(&object_key, old.body, precondition, &author, deadline)
            .await
    }

    /// Stores the schema for `prefix` once it compiles; it governs the next write in every instance.
    pub async fn put_schema(
        &self,
        prefix: &KeyPrefix,
        body: Bytes,
        precondition: &Precondition,
        author: &Author,
        deadline: Instant,
    ) -> Result<Written, WriteError> {
        Schema::compile(&body)?;
        let object_key = self.keys.schema_object_key(prefix);
        self.store_checked(&object_key, body, precondition, author, deadline)
            .await
    }

    /// The schema document for `prefix`, as stored.
    pub async fn get_schema(
        &self,
        prefix: &KeyPrefix,
        deadline: Instant,
    ) -> Result<Object, WriteError> {
        let object_key = self.keys.schema_object_key(prefix);
        let limit = crate::schema::MAX_SCHEMA_BYTES as u64;
        match retry::with_deadline(deadline, "s3 get schema", || {
            self.store.get(&object_key, None, limit)
        })
        .await
        {
            Err(StoreError::NotFound) => Err(SchemaError::NotFound(prefix.to_string()).into()),
            other => Ok(other?),
        }
    }

    /// Removes the schema for `prefix`: keys under it are governed by the next shorter prefix's schema, if any.
    pub async fn delete_schema(
        &self,
        prefix: &KeyPrefix,
        precondition: &Precondition,
        deadline: Instant,
    ) -> Result<(), WriteError> {
        let object_key = self.keys.schema_object_key(prefix);
        match self
            .delete_object(&object_key, precondition, deadline)
            .await
        {
            Err(WriteError::NotFound) => Err(SchemaError::NotFound(prefix.to_string()).into()),
            other => other,
        }
    }

    /// Every schema, as the bucket holds it now.
    pub async fn schemas(&self, deadline: Instant) -> Result<SchemaSet, WriteError> {
        Ok(self.schemas.current(&self.store, deadline).await?)
    }

    /// Stores a validated body under the precondition.
    async fn store_checked(
        &self,
        object_key: &str,
        body: Bytes,
        precondition: &Precondition,
        author: &Author,
        deadline: Instant,
    ) -> Result<Written, WriteError> {
        let put = |mode: PutMode| {
            let body = body.clone();
            retry::with_deadline(deadline, "s3 put", move || {
                self.store
                    .put(object_key, body.clone(), mode.clone(), author)
            })
        };
        let created = |etag| Written {
            etag,
            created: true,
        };
        let replaced = |etag| Written {
            etag,
            created: false,
        };
        match precondition {
            Precondition::Absent => match put(PutMode::CreateOnly).await {
                Err(StoreError::PreconditionFailed) => {
                    Err(WriteError::PreconditionFailed(Unmet::Exists))
                }
                other => Ok(created(other?)),
            },
            Precondition::Matches(etag) => match put(PutMode::Replace(etag.clone())).await {
                Err(StoreError::PreconditionFailed | StoreError::NotFound) => {
                    Err(WriteError::PreconditionFailed(Unmet::Changed))
                }
                other => Ok(replaced(other?)),
            },
            Precondition::None => match put(PutMode::CreateOnly).await {
                Err(StoreError::PreconditionFailed) => Ok(replaced(put(PutMode::Overwrite).await?)),
                other => Ok(created(other?)),
            },
        }
    }

    /// Deletes an existing item; `NotFound` when there is none (S3 itself would not say). With
    /// `Precondition::Matches`, S3 deletes only that version.
    pub async fn delete(
        &self,
        key: &ItemKey,
        precondition: &Precondition,
        deadline: Instant,
    ) -> Result<(), WriteError> {
        self.delete_object(&self.keys.object_key(key), precondition, deadline)
            .await
    }

    async fn delete_object(
        &self,
        object_key: &str,
        precondition: &Precondition,
        deadline: Instant,
    ) -> Result<(), WriteError> {
        match retry::with_deadline(deadline, "s3 head", || self.store.head(object_key)).await {
            Ok(_) if *precondition == Precondition::Absent => {
                return Err(WriteError::PreconditionFailed(Unmet::Exists))
            }
            Ok(_) => {}
            Err(StoreError::NotFound) if matches!(precondition, Precondition::Matches(_)) => {
                return Err(WriteError::PreconditionFailed(Unmet::Changed))
            }
            Err(StoreError::NotFound) => return Err(WriteError::NotFound),
            Err(e) => return Err(e.into()),
        }
        let if_match = match precondition {
            Precondition::Matches(etag) => Some(etag),
            _ => None,
        };
        match retry::with_deadline(deadline, "s3 delete", || {
            self.store.delete(object_key, if_match)
        })
        .await
        {
            Err(StoreError::PreconditionFailed | StoreError::NotFound) if if_match.is_some() => {
                Err(WriteError::PreconditionFailed(Unmet::Changed))
            }
            other => Ok(other?),
        }
    }
}
