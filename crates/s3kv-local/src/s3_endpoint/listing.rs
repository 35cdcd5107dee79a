//! ListObjects (v1) and ListObjectsV2, answered from the sorted key index ([`crate::key_index`]): a range read per
//! page, where s3s-fs walks and sorts the whole bucket directory for every page.
//!
//! Both versions are one listing, as in S3: v1's `marker` is v2's `start-after`, and its `NextMarker` the page's
//! last key or common prefix. An empty `delimiter=` (rclone sends one with every recursive listing) means no
//! delimiter, as S3 reads it. With `encoding-type=url`, keys and the other key-shaped fields are percent-encoded
//! as S3 does, because clients that ask for it (botocore, for every listing) decode them; a key with `+`, `%` or
//! a space would otherwise come back as some other key.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::{internal_error, NotifyingFs};
use crate::key_index::{self, Entry, Query};

/// How a listing writes key-shaped fields: as they are, or percent-encoded (`encoding-type=url`).
#[derive(Debug, Clone, Copy)]
struct Encoder {
    url: bool,
}

impl Encoder {
    fn new(encoding_type: Option<&EncodingType>) -> Self {
        Self {
            url: encoding_type.is_some_and(|t| t.as_str() == EncodingType::URL),
        }
    }

    /// Every byte but RFC 3986's unreserved ones and `/` escaped, so that both percent-decoding and
    /// form-decoding (`+` is a space) give the key back.
    fn key(self, key: &str) -> String {
        if self.url {
            s3kv::percent::encode_path(key)
        } else {
            key.to_owned()
        }
    }

    fn opt(self, value: Option<&str>) -> Option<String> {
        value.map(|v| self.key(v))
    }
}

impl NotifyingFs {
    /// A bucket directory the key index has not seen (made by hand since the start): walked once, with changes
    /// held off so that none is missed.
    async fn index_bucket(&self, bucket: &str) -> S3Result<()> {
        let _guard = self.mutation.lock().await;
        if self.keys.knows(bucket) {
            return Ok(());
        }
        let dir = self.root.join(bucket);
        let keys = tokio::task::spawn_blocking(move || key_index::scan_bucket(&dir))
            .await
            .map_err(internal_error)?
            .map_err(internal_error)?;
        self.keys.insert_bucket(bucket, keys);
        Ok(())
    }

    /// One object of a listing as s3s-fs's HEAD sees it, or `None` when its file is gone. When HEAD fails
    /// otherwise, it is listed as s3s-fs's own listing did, from the file alone, without an ETag.
    async fn listed_object<U>(
        &self,
        bucket: &str,
        key: &str,
        like: &S3Request<U>,
    ) -> Option<Object> {
        let error = match self.head(bucket, key, like).await {
            Ok(head) => {
                return head.map(|head| Object {
                    key: Some(key.to_owned()),
                    size: head.content_length,
                    last_modified: head.last_modified,
                    e_tag: head.e_tag,
                    ..Default::default()
                })
            }
            Err(error) => error,
        };
        let file = tokio::fs::metadata(self.root.join(bucket).join(key))
            .await
            .ok()?;
        if file.is_dir() {
            return None;
        }
        tracing::warn!(bucket, key, %error, "listed without an ETag");
        Some(Object {
            key: Some(key.to_owned()),
            size: Some(file.len() as i64),
            last_modified: file.modified().ok().map(Timestamp::from),
            ..Default::default()
        })
    }

    /// One page, keys as stored (not yet encoded): the parameters mean what they mean to S3 (the continuation
    /// token is the last key or common prefix of the page before). S3 lists each object's ETag, and both reconcile
    /// and the listing API use them, so each object's size, time and ETag are what HEAD answers; a key whose file
    /// is gone since it was indexed is left out, as a listing that had not seen it.
    pub(super) async fn list(
        &self,
        req: &S3Request<ListObjectsV2Input>,
    ) -> S3Result<ListObjectsV2Output> {
        let input = &req.input;
        let bucket = input.bucket.as_str();
        if !self.root.join(bucket).exists() {
            return Err(s3_error!(NoSuchBucket));
        }
        let max_keys = match input.max_keys {
            Some(n) if n >= 0 => n.min(1000),
            _ => 1000,
        };
        let after = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(token), Some(start_after)) => Some(token.max(start_after)),
            (token, start_after) => token.or(start_after),
        };
        let query = Query {
            prefix: input
                .prefix
                .as_deref()
                .unwrap_or("")
                .trim_start_matches('/'),
            after,
            delimiter: input.delimiter.as_deref().filter(|d| !d.is_empty()),
            max_keys: max_keys as usize,
        };
        let page = match self.keys.page(bucket, &query) {
            Some(page) => page,
            None => {
                self.index_bucket(bucket).await?;
                self.keys
                    .page(bucket, &query)
                    .ok_or_else(|| internal_error("the bucket was removed while listing"))?
            }
        };
        let (mut contents, mut common_prefixes) = (Vec::new(), Vec::new());
        for entry in &page.entries {
            match entry {
                Entry::CommonPrefix(prefix) => common_prefixes.push(CommonPrefix {
                    prefix: Some(prefix.clone()),
                }),
                Entry::Object(key) => contents.extend(self.listed_object(bucket, key, req).await),
            }
        }
        let key_count =
            i32::try_from(contents.len() + common_prefixes.len()).map_err(internal_error)?;
        Ok(ListObjectsV2Output {
            key_count: Some(key_count),
            max_keys: Some(max_keys),
            is_truncated: Some(page.truncated),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            continuation_token: input.continuation_token.clone(),
            next_continuation_token: page.next_token().map(str::to_owned),
            delimiter: input.delimiter.clone(),
            encoding_type: input.encoding_type.clone(),
            name: Some(input.bucket.clone()),
            prefix: input.prefix.clone(),
            start_after: input.start_after.clone(),
            ..Default::default()
        })
    }

    pub(super) async fn list_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let mut output = self.list(&req).await?;
        let encode = Encoder::new(output.encoding_type.as_ref());
        encode_entries(encode, &mut output.contents, &mut output.common_prefixes);
        // The continuation token is opaque and comes back as it was sent: never encoded.
        output.delimiter = encode.opt(output.delimiter.as_deref());
        output.prefix = encode.opt(output.prefix.as_deref());
        output.start_after = encode.opt(output.start_after.as_deref());
        Ok(S3Response::new(output))
    }

    pub(super) async fn list_v1(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let marker = req.input.marker.clone();
        let req = req.map_input(ListObjectsV2Input::from);
        let v2 = self.list(&req).await?;
        let encode = Encoder::new(v2.encoding_type.as_ref());
        let mut output = ListObjectsOutput {
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter: encode.opt(v2.delimiter.as_deref()),
            encoding_type: v2.encoding_type,
            name: v2.name,
            prefix: encode.opt(v2.prefix.as_deref()),
            marker: encode.opt(marker.as_deref()),
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            // S3 sends it only with a delimiter (clients take the last key otherwise); it is that key anyway.
            next_marker: encode.opt(v2.next_continuation_token.as_deref()),
            ..Default::default()
        };
        encode_entries(encode, &mut output.contents, &mut output.common_prefixes);
        Ok(S3Response::new(output))
    }
}

fn encode_entries(
    encode: Encoder,
    contents: &mut Option<Vec<Object>>,
    common_prefixes: &mut Option<Vec<CommonPrefix>>,
) {
    for object in contents.iter_mut().flatten() {
        object.key = encode.opt(object.key.as_deref());
    }
    for prefix in common_prefixes.iter_mut().flatten() {
        prefix.prefix = encode.opt(prefix.prefix.as_deref());
    }
}
