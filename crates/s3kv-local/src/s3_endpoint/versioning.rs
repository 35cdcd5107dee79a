//! The bucket's versions as S3 serves them ([`crate::versions`] keeps them): GET and HEAD of a version,
//! CopyObject from one, ListObjectVersions, and CopyObject's destination conditions.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use s3kv::s3_event::EventName;

use super::{internal, internal_error, kept, no_such_version, NotifyingFs};
use crate::versions::{Listed, Version};

impl NotifyingFs {
    /// Records the object just written as the key's newest version. Called with the mutation lock held.
    pub(super) async fn add_version<U>(
        &self,
        bucket: &str,
        key: &str,
        like: &S3Request<U>,
    ) -> S3Result<String> {
        let head = self
            .head(bucket, key, like)
            .await?
            .ok_or_else(|| internal_error("the object just written is gone"))?;
        self.versions
            .add_object(
                bucket,
                key,
                &self.root.join(bucket).join(key),
                head.e_tag.as_ref().map(|t| t.value().to_owned()),
                head.content_type.map(|t| t.to_string()),
                head.metadata.unwrap_or_default().into_iter().collect(),
            )
            .map_err(internal_error)
    }

    /// One version's record, delete markers included; `NoSuchVersion` when there is none.
    pub(super) fn version(&self, bucket: &str, key: &str, id: &str) -> S3Result<Version> {
        self.versions
            .get(bucket, key, id)
            .map_err(internal_error)?
            .ok_or_else(no_such_version)
    }

    /// The version a GET or HEAD asked for: 404 `NoSuchVersion` if there is none, 405 for a delete marker (as
    /// S3 answers).
    pub(super) fn requested(&self, bucket: &str, key: &str, id: &str) -> S3Result<Version> {
        let version = self.version(bucket, key, id)?;
        if version.delete_marker {
            return Err(s3_error!(
                MethodNotAllowed,
                "The specified method is not allowed against this resource."
            ));
        }
        Ok(version)
    }

    /// The newest version's id, when it is the object s3s-fs holds (a write made before versions were kept has
    /// none).
    pub(super) fn current_version(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&ETag>,
    ) -> Option<String> {
        let newest = self.versions.newest(bucket, key).ok()??;
        (!newest.delete_marker && newest.etag.as_deref() == etag.map(ETag::value))
            .then_some(newest.id)
    }

    /// Destination `If-Match` / `If-None-Match: *` of a CopyObject (s3s does not parse them for copies), checked
    /// against the current object with the mutation lock held.
    pub(super) async fn check_destination<U>(
        &self,
        bucket: &str,
        key: &str,
        req: &S3Request<U>,
    ) -> S3Result<()> {
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (if_match, if_none_match) = (header("if-match"), header("if-none-match"));
        if if_match.is_none() && if_none_match.is_none() {
            return Ok(());
        }
        let current = self.head(bucket, key, req).await?.and_then(|h| h.e_tag);
        let current = current.as_ref().map(ETag::value);
        let unquote = |v: &str| v.trim().trim_matches('"').to_owned();
        let holds = match (&if_match, &if_none_match) {
            (Some(wanted), _) => current == Some(unquote(wanted).as_str()),
            (None, Some(star)) if star.trim() == "*" => current.is_none(),
            (None, Some(_)) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match on a copy takes only *"
                ));
            }
            (None, None) => true,
        };
        if holds {
            Ok(())
        } else {
            Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
    }

    /// GET of one version, from the versions kept beside the current object.
    pub(super) async fn get_version(
        &self,
        req: &S3Request<GetObjectInput>,
        id: &str,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        let version = self.requested(bucket, key, id)?;
        if let Some(ETagCondition::ETag(wanted)) = &req.input.if_match {
            if version.etag.as_deref() != Some(wanted.value()) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        let body = tokio::fs::read(self.versions.body_path(bucket, key, id))
            .await
            .map_err(internal_error)?;
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(body.len() as i64),
            body: Some(StreamingBlob::from(s3s::Body::from(body))),
            e_tag: version.etag.clone().map(ETag::Strong),
            last_modified: Some(Timestamp::from(version.modified())),
            content_type: version.content_type.as_deref().and_then(|t| t.parse().ok()),
            metadata: Some(version.metadata.clone().into_iter().collect()),
            version_id: Some(version.id),
            ..Default::default()
        }))
    }

    /// CopyObject from an older version: its bytes and (unless REPLACE) its metadata become the new current
    /// object, as a new version.
    pub(super) async fn copy_from_version(
        &self,
        req: &S3Request<CopyObjectInput>,
        source: (&str, &str, &str),
    ) -> S3Result<(Option<ETag>, Option<String>)> {
        let (source_bucket, source_key, id) = source;
        let version = self.version(source_bucket, source_key, id)?;
        if version.delete_marker {
            return Err(s3_error!(
                InvalidRequest,
                "The source of a copy request may not specifically refer to a delete marker by version id."
            ));
        }
        let body = tokio::fs::read(self.versions.body_path(source_bucket, source_key, id))
            .await
            .map_err(internal_error)?;
        let replace = req
            .input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (content_type, metadata) = if replace {
            (req.input.content_type.clone(), req.input.metadata.clone())
        } else {
            (
                version.content_type.as_deref().and_then(|t| t.parse().ok()),
                Some(version.metadata.into_iter().collect()),
            )
        };
        let input = PutObjectInput::builder()
            .bucket(req.input.bucket.clone())
            .key(req.input.key.clone())
            .content_length(Some(body.len() as i64))
            .body(Some(StreamingBlob::from(s3s::Body::from(body))))
            .content_type(content_type)
            .metadata(metadata)
            .build()
            .map_err(internal_error)?;
        let put = self
            .fs
            .put_object(internal(input, http::Method::PUT, req))
            .await?;
        let id = kept(
            self.add_version(&req.input.bucket, &req.input.key, req)
                .await,
        );
        Ok((put.output.e_tag, id))
    }

    pub(super) async fn list_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = &req.input;
        // An empty delimiter is no delimiter, as S3 reads it (rclone sends one).
        if input.delimiter.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(s3_error!(
                NotImplemented,
                "s3kv-local lists versions without a delimiter"
            ));
        }
        let max = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let (listed, truncated) = self
            .versions
            .list(
                &input.bucket,
                &prefix,
                input.key_marker.as_deref().filter(|m| !m.is_empty()),
                input.version_id_marker.as_deref(),
                max,
            )
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidInput => s3_error!(InvalidArgument, "{e}"),
                _ => internal_error(e),
            })?;
        let last = listed.last().map(|l| (l.key.clone(), l.version.id.clone()));
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        for Listed {
            key,
            version,
            latest,
        } in listed
        {
            let last_modified = Some(Timestamp::from(version.modified()));
            if version.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(latest),
                    key: Some(key),
                    last_modified,
                    version_id: Some(version.id),
                    ..Default::default()
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: version.etag.map(ETag::Strong),
                    is_latest: Some(latest),
                    key: Some(key),
                    last_modified,
                    size: Some(version.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(version.id),
                    ..Default::default()
                });
            }
        }
        let (next_key, next_version) = match (truncated, last) {
            (true, Some((key, id))) => (Some(key), Some(id)),
            _ => (None, None),
        };
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            key_marker: input.key_marker.clone(),
            version_id_marker: input.version_id_marker.clone(),
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            versions: Some(versions),
            delete_markers: Some(markers),
            ..Default::default()
        }))
    }

    /// Deletes one version for good, as S3 does (rclone's purge deletes every version of every key this way). When
    /// it was the key's current object, the version before it becomes current (its bytes are put back, and the
    /// syncer told), or, when there is none or it is a delete marker, the object is removed. Called with the
    /// mutation lock held; a version that does not exist is no error, as in S3.
    pub(super) async fn delete_version<U>(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        like: &S3Request<U>,
    ) -> S3Result<()> {
        let Some(version) = self.versions.get(bucket, key, id).map_err(internal_error)? else {
            return Ok(());
        };
        let newest = self.versions.newest(bucket, key).map_err(internal_error)?;
        let current = !version.delete_marker && newest.as_ref().map(|v| &v.id) == Some(&version.id);
        if !current {
            return self
                .versions
                .remove(bucket, key, id)
                .map_err(internal_error);
        }
        let txn = self.begin(bucket, key).await?;
        let result = self.replace_current(bucket, key, id, like).await;
        let event = self.finish(txn, (bucket, key), result).await?;
        match event {
            Some(etag) => self.notify(EventName::Put, bucket, key, Some(&ETag::Strong(etag))),
            None => self.notify(EventName::Delete, bucket, key, None),
        }
        Ok(())
    }

    /// Drops the current version `id` and puts the one before it in place; the ETag now current, if any.
    async fn replace_current<U>(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        like: &S3Request<U>,
    ) -> S3Result<Option<String>> {
        self.versions
            .remove(bucket, key, id)
            .map_err(internal_error)?;
        let previous = self.versions.newest(bucket, key).map_err(internal_error)?;
        match previous.filter(|v| !v.delete_marker) {
            Some(previous) => {
                let body = tokio::fs::read(self.versions.body_path(bucket, key, &previous.id))
                    .await
                    .map_err(internal_error)?;
                let input = PutObjectInput::builder()
                    .bucket(bucket.to_owned())
                    .key(key.to_owned())
                    .content_length(Some(body.len() as i64))
                    .body(Some(StreamingBlob::from(s3s::Body::from(body))))
                    .content_type(
                        previous
                            .content_type
                            .as_deref()
                            .and_then(|t| t.parse().ok()),
                    )
                    .metadata(Some(previous.metadata.clone().into_iter().collect()))
                    .build()
                    .map_err(internal_error)?;
                self.fs
                    .put_object(internal(input, http::Method::PUT, like))
                    .await?;
                Ok(previous.etag)
            }
            None => {
                let input = DeleteObjectInput::builder()
                    .bucket(bucket.to_owned())
                    .key(key.to_owned())
                    .build()
                    .map_err(internal_error)?;
                self.fs
                    .delete_object(internal(input, http::Method::DELETE, like))
                    .await?;
                Ok(None)
            }
        }
    }
}
