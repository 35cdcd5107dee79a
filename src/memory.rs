//! An in-memory [`ObjectStore`] with S3's semantics, for tests of pure logic, fuzzing and benchmarks of the use
//! cases without a network: strongly consistent reads, ETags that identify the content, `If-None-Match: *` and
//! `If-Match` conditions that fail with 412, size limits checked before the body is read, and listings in key
//! order, paged, and a versioned bucket's history (every write a version, every delete a marker). Integration tests use real servers instead; this is never wired into a function.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::audit::{Author, Provenance};
use crate::ports::{
    Etag, ListPage, Listed, Object, ObjectStore, ObjectVersion, PutMode, StoreError, VersionPage,
};

/// A version id and its bytes and metadata; `None` is a delete marker. Oldest first in a key's history.
type MemoryVersion = (String, Option<(Bytes, Meta)>);

/// What S3 keeps beside an object's bytes that s3kv reads back: who wrote it, and when it expires.
#[derive(Clone, Debug)]
struct Meta {
    writer: String,
    expires: Option<crate::expiry::Expiry>,
}

impl Meta {
    fn of(author: &Author) -> Self {
        Self {
            writer: author.header(),
            expires: author.expires,
        }
    }

    fn provenance(self) -> Provenance {
        Provenance {
            writer: Some(self.writer),
            modified: None,
            expires: self.expires,
        }
    }
}

/// The current version of each key, with its writer (as S3 keeps metadata), and every key's history. Clones
/// share the same bucket.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<String, (Bytes, Meta)>>>,
    /// Locked after `objects`, never before.
    history: Arc<Mutex<BTreeMap<String, Vec<MemoryVersion>>>>,
    page_size: Option<usize>,
}

impl MemoryStore {
    /// Listings return at most `page_size` objects per page, to exercise pagination.
    pub fn with_page_size(page_size: usize) -> Self {
        Self {
            page_size: Some(page_size.max(1)),
            ..Self::default()
        }
    }

    /// The current body of `key`, for asserting on what the store holds.
    pub fn body(&self, key: &str) -> Option<Bytes> {
        self.lock().get(key).map(|(body, _)| body.clone())
    }

    /// The tag S3 would give these bytes: equal bodies, equal tags.
    pub fn etag_of(body: &[u8]) -> Etag {
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        Etag::new(&format!("{:016x}", hasher.finish()))
    }

    /// Appends a version (`None`: a delete marker); ids count up across the bucket.
    fn record(&self, key: &str, content: Option<(Bytes, Meta)>) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("v{:08}", history.values().map(Vec::len).sum::<usize>() + 1);
        history
            .entry(key.to_owned())
            .or_default()
            .push((id, content));
    }

    fn version(&self, key: &str, version: &str) -> Result<(Bytes, Meta), StoreError> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .get(key)
            .and_then(|versions| versions.iter().find(|(id, _)| id == version))
            .and_then(|(_, content)| content.clone())
            .ok_or(StoreError::NotFound)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, Meta)>> {
        // A panic elsewhere while holding the lock leaves the map intact: keep serving it.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ObjectStore for MemoryStore {
    async fn get(
        &self,
        key: &str,
        if_match: Option<&Etag>,
        max_bytes: u64,
    ) -> Result<Object, StoreError> {
        let (body, meta) = self.lock().get(key).cloned().ok_or(StoreError::NotFound)?;
        let etag = Self::etag_of(&body);
        if if_match.is_some_and(|wanted| *wanted != etag) {
            return Err(StoreError::PreconditionFailed);
        }
        if body.len() as u64 > max_bytes {
            return Err(StoreError::TooLarge {
                size: body.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(Object {
            body,
            etag,
            provenance: meta.provenance(),
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        mode: PutMode,
        author: &Author,
    ) -> Result<Etag, StoreError> {
        let etag = Self::etag_of(&body);
        let mut objects = self.lock();
        match (&mode, objects.get(key)) {
            (PutMode::CreateOnly, Some(_)) => return Err(StoreError::PreconditionFailed),
            (PutMode::Replace(_), None) => return Err(StoreError::NotFound),
            (PutMode::Replace(wanted), Some((current, _))) if Self::etag_of(current) != *wanted => {
                return Err(StoreError::PreconditionFailed)
            }
            _ => {}
        }
        objects.insert(key.to_owned(), (body.clone(), Meta::of(author)));
        self.record(key, Some((body, Meta::of(author))));
        Ok(etag)
    }

    async fn head(&self, key: &str) -> Result<Etag, StoreError> {
        self.body(key)
            .map(|b| Self::etag_of(&b))
            .ok_or(StoreError::NotFound)
    }

    async fn delete(&self, key: &str, if_match: Option<&Etag>) -> Result<(), StoreError> {
        let mut objects = self.lock();
        if let Some(wanted) = if_match {
            match objects.get(key) {
                Some((current, _)) if Self::etag_of(current) == *wanted => {}
                Some(_) => return Err(StoreError::PreconditionFailed),
                None => return Err(StoreError::NotFound),
            }
        }
        objects.remove(key);
        self.record(key, None);
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        next: Option<String>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        let objects = self.lock();
        let limit = self.page_size.unwrap_or(1000).min(max_keys).max(1);
        let mut page: Vec<Listed> = objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| {
                next.as_ref()
                    .is_none_or(|after| k.as_str() > after.as_str())
            })
            .take(limit + 1)
            .map(|(k, (b, _))| Listed {
                key: k.clone(),
                etag: Self::etag_of(b),
                size: b.len() as u64,
                last_modified: None,
            })
            .collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page[limit - 1].key.clone()
        });
        Ok(ListPage {
            objects: page,
            next,
        })
    }

    /// The memory store's continuation token already is the last key listed.
    async fn list_after(
        &self,
        prefix: &str,
        after: &str,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        self.list(prefix, Some(after.to_owned()), max_keys).await
    }

    async fn versions(
        &self,
        key: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<VersionPage, StoreError> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.page_size.unwrap_or(1000).min(limit).max(1);
        let all = history.get(key).map(Vec::as_slice).unwrap_or_default();
        let newest_first = all.iter().rev().enumerate();
        let start = match after {
            Some(after) => match all.iter().rev().position(|(id, _)| id == after) {
                Some(index) => index + 1,
                None => {
                    return Err(StoreError::Rejected {
                        status: 400,
                        source: "no such version-id marker".into(),
                    })
                }
            },
            None => 0,
        };
        let mut versions: Vec<ObjectVersion> = newest_first
            .skip(start)
            .take(limit + 1)
            .map(|(index, (id, content))| ObjectVersion {
                version: id.clone(),
                etag: content.as_ref().map(|(body, _)| Self::etag_of(body)),
                size: content.as_ref().map_or(0, |(body, _)| body.len() as u64),
                last_modified: None,
                deleted: content.is_none(),
                current: index == 0,
            })
            .collect();
        let next = (versions.len() > limit).then(|| {
            versions.truncate(limit);
            versions[limit - 1].version.clone()
        });
        Ok(VersionPage { versions, next })
    }

    async fn get_version(
        &self,
        key: &str,
        version: &str,
        max_bytes: u64,
    ) -> Result<Object, StoreError> {
        let (body, meta) = self.version(key, version)?;
        if body.len() as u64 > max_bytes {
            return Err(StoreError::TooLarge {
                size: body.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(Object {
            etag: Self::etag_of(&body),
            body,
            provenance: meta.provenance(),
        })
    }

    async fn version_provenance(&self, key: &str, version: &str) -> Result<Provenance, StoreError> {
        let (_, meta) = self.version(key, version)?;
        Ok(meta.provenance())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn history_lists_every_write_and_delete_newest_first_in_pages() {
        let store = MemoryStore::with_page_size(2);
        let author = Author::default();
        for body in ["1", "2", "3"] {
            store
                .put("k", Bytes::from(body), PutMode::Overwrite, &author)
                .await
                .unwrap();
        }
        store.delete("k", None).await.unwrap();
        let first = store.versions("k", None, 10).await.unwrap();
        assert_eq!(first.versions.len(), 2);
        assert!(first.versions[0].deleted && first.versions[0].current);
        let second = store
            .versions("k", first.next.as_deref(), 10)
            .await
            .unwrap();
        assert_eq!(second.next, None);
        let oldest = &second.versions[1];
        assert_eq!(
            store
                .get_version("k", &oldest.version, 10)
                .await
                .unwrap()
                .body,
            "1"
        );
        let marker = &first.versions[0].version;
        assert!(matches!(
            store.get_version("k", marker, 10).await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn conditions_and_limits_behave_like_s3() {
        let store = MemoryStore::default();
        let etag = store
            .put(
                "a",
                Bytes::from_static(b"{}"),
                PutMode::CreateOnly,
                &Author::default(),
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .put(
                    "a",
                    Bytes::from_static(b"[]"),
                    PutMode::CreateOnly,
                    &Author::default()
                )
                .await,
            Err(StoreError::PreconditionFailed)
        ));
        assert_eq!(store.get("a", Some(&etag), 10).await.unwrap().body, "{}");
        assert!(matches!(
            store.get("a", Some(&Etag::new("other")), 10).await,
            Err(StoreError::PreconditionFailed)
        ));
        assert!(matches!(
            store.get("a", None, 1).await,
            Err(StoreError::TooLarge { size: 2, limit: 1 })
        ));
        let replaced = store
            .put(
                "a",
                Bytes::from_static(b"1"),
                PutMode::Replace(etag.clone()),
                &Author::default(),
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .put(
                    "a",
                    Bytes::from_static(b"2"),
                    PutMode::Replace(etag.clone()),
                    &Author::default(),
                )
                .await,
            Err(StoreError::PreconditionFailed)
        ));
        assert!(matches!(
            store.delete("a", Some(&etag)).await,
            Err(StoreError::PreconditionFailed)
        ));
        store.delete("a", Some(&replaced)).await.unwrap();
        assert!(matches!(store.head("a").await, Err(StoreError::NotFound)));
        assert!(matches!(
            store
                .put(
                    "a",
                    Bytes::from_static(b"3"),
                    PutMode::Replace(replaced),
                    &Author::default()
                )
                .await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn listings_page_through_every_key_once() {
        let store = MemoryStore::with_page_size(2);
        for k in ["p/a", "p/b", "p/c", "q/d", "p/e"] {
            store
                .put(k, Bytes::from(k), PutMode::Overwrite, &Author::default())
                .await
                .unwrap();
        }
        let (mut seen, mut next) = (Vec::new(), None);
        loop {
            let page = store.list("p/", next, 1000).await.unwrap();
            seen.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(n) => next = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, ["p/a", "p/b", "p/c", "p/e"]);
    }
}
