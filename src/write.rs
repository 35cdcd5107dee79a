//! Writing items: validate, then let S3 (the source of truth) decide create vs replace.
//!
//! The writer never touches the cache: the S3 notification does, through the syncer, so every change reaches
//! Valkey by one ordered path whether it came through the API or a manual upload.

use std::time::Instant;

use bytes::Bytes;
use thiserror::Error;

use crate::config::Config;
use crate::document::{self, DocumentError};
use crate::key::{ItemKey, KeyMap};
use crate::ports::{Etag, ObjectStore, PutMode, StoreError};
use crate::retry;

#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the body is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("no item with this key")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub etag: Etag,
    /// True when no object existed under the key before this write.
    pub created: bool,
}

pub struct Writer<S> {
    store: S,
    keys: KeyMap,
    max_body_bytes: usize,
}

impl<S: ObjectStore> Writer<S> {
    pub fn new(store: S, config: &Config) -> Self {
        Self {
            store,
            keys: config.key_map(),
            max_body_bytes: config.max_body_bytes,
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Stores `body` byte-for-byte. One round trip for a create (`If-None-Match: *`), two for a replace; the
    /// conditional create is what makes 201 vs 200 truthful under concurrent writers.
    pub async fn put(
        &self,
        key: &ItemKey,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Written, WriteError> {
        if body.len() > self.max_body_bytes {
            return Err(WriteError::TooLarge {
                size: body.len(),
                limit: self.max_body_bytes,
            });
        }
        document::validate(&body)?;
        let object_key = self.keys.object_key(key);
        let put = |mode| {
            let body = body.clone();
            let object_key = &object_key;
            retry::with_deadline(deadline, "s3 put", move || {
                self.store.put(object_key, body.clone(), mode)
            })
        };
        match put(PutMode::CreateOnly).await {
            Ok(etag) => Ok(Written {
                etag,
                created: true,
            }),
            Err(StoreError::PreconditionFailed) => Ok(Written {
                etag: put(PutMode::Overwrite).await?,
                created: false,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an existing item; `NotFound` when there is none (S3 itself would not say).
    pub async fn delete(&self, key: &ItemKey, deadline: Instant) -> Result<(), WriteError> {
        let object_key = self.keys.object_key(key);
        match retry::with_deadline(deadline, "s3 head", || self.store.head(&object_key)).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => return Err(WriteError::NotFound),
            Err(e) => return Err(e.into()),
        }
        retry::with_deadline(deadline, "s3 delete", || self.store.delete(&object_key)).await?;
        Ok(())
    }
}
