//! `/items/{key}`: read one item (cache first, or `?consistent=true` from S3), write it, delete it; and
//! `/public/{key}`, the same read without a key for items under the public prefix.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use http::header::{HeaderName, HeaderValue, ETAG, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::access::{Caller, Denied};
use crate::audit::Author;
use crate::expiry::Expiry;
use crate::ports::{Cache, Feed, ObjectStore};
use crate::read::{CacheStatus, Reader};
use crate::write::{WriteError, Writer};

use super::conditions::{read_precondition, write_precondition};
use super::{
    author, empty_response, header_value, item_key, json_response, request_body, written_response,
    ApiError,
};

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const X_S3KV_WRITER: HeaderName = HeaderName::from_static("x-s3kv-writer");
const X_S3KV_EXPIRES_AT: HeaderName = HeaderName::from_static("x-s3kv-expires-at");

/// `DELETE /items/{key}`: 204, or 404 when there was nothing to delete.
/// S3 keeps no metadata for a delete, so the audit record of one is this log line.
pub(super) async fn delete<S: ObjectStore>(
    writer: &Writer<S>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let key = item_key(request, caller)?;
    let precondition = write_precondition(request)?;
    match writer.delete(&key, &precondition, deadline).await {
        Ok(()) => {
            tracing::info!(key = %key, writer = %author(caller, request).header(), "item deleted");
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        Err(WriteError::NotFound) => Err(ApiError::NotFound(key.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// `PUT`/`POST /items/{key}`: 201 for a create, 200 for a replace, with the new ETag.
pub(super) async fn put<S: ObjectStore>(
    writer: &Writer<S>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let key = item_key(request, caller)?;
    let dry_run = dry_run(request)?;
    let expires = expiry(request)?;
    let precondition = write_precondition(request)?;
    let body = request_body(request, writer.max_body_bytes())?;
    if dry_run {
        // The body's checks only: a precondition is about the item at write time, which a dry run never reaches.
        let schema = writer.check(&key, &body, deadline).await?;
        let body = json!({ "key": key.as_str(), "valid": true, "schema": schema });
        return Ok(json_response(
            StatusCode::OK,
            HeaderMap::new(),
            body.to_string(),
        ));
    }
    let author = Author {
        expires,
        ..author(caller, request)
    };
    let written = writer
        .put(&key, body, &precondition, &author, deadline)
        .await?;
    let mut body = json!({ "key": key.as_str(), "etag": written.etag.as_str() });
    if let Some(at) = expires {
        body["expiresAt"] = json!(at.rfc3339());
    }
    let mut response = written_response(&written, body)?;
    if let Some(at) = expires {
        response
            .headers
            .insert(X_S3KV_EXPIRES_AT, header_value(&at.rfc3339())?);
    }
    Ok(response)
}

/// `?ttl=SECONDS` or `?expiresAt=` (RFC 3339 or Unix seconds): when the written item expires. Neither: never, which
/// also clears an expiry the item had.
fn expiry(request: &ApiGatewayProxyRequest) -> Result<Option<Expiry>, ApiError> {
    let query = &request.query_string_parameters;
    crate::expiry::from_request(
        query.first("ttl"),
        query.first("expiresAt"),
        crate::expiry::now_ms(),
    )
    .map_err(|error| ApiError::InvalidQuery {
        name: error.parameter(),
        reason: error.reason(),
    })
}

/// `?dryRun=true`: check the body (size, JSON, the schema of its prefix) and write nothing.
fn dry_run(request: &ApiGatewayProxyRequest) -> Result<bool, ApiError> {
    bool_param(request, "dryRun")
}

/// `GET /items/{key}` and `GET /public/{key}`; `cache` learns which cache status answered. A public read says
/// when the item changed but not who changed it: key names are nobody's business outside the team.
///
/// With `?wait=<seconds>` and `If-None-Match`, the answer waits until the item is no longer the version the
/// client has (200, or 404 once deleted), or the wait is over (304). Public reads may wait too: a browser
/// watching a maintenance flag is what waiting is for.
pub(super) async fn get<S: ObjectStore, C: Cache + Feed>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
    cache: &mut Vec<CacheStatus>,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let key = item_key(request, caller)?;
    let not_modified_if = read_precondition(request)?;
    let public = matches!(caller, Caller::Public { .. });
    let consistent = consistent(request)?;
    if public && consistent {
        // Every consistent read goes to S3: for anonymous callers, a way to run up the bill.
        return Err(Denied::PublicConsistent.into());
    }
    let version = version(request)?;
    if public && version.is_some() {
        return Err(Denied::PublicHistory.into());
    }
    let wait = super::watch::wait_param(request, reader.max_wait(), true)?;
    let deadline = match (wait, &not_modified_if) {
        (Some(_), Some(_)) => deadline,
        _ => super::quick(deadline),
    };
    if wait.is_some() && (consistent || version.is_some()) {
        return Err(ApiError::InvalidQuery {
            name: "wait",
            reason: "cannot be combined with consistent or version (a version never changes)",
        });
    }
    let result = if let Some(version) = version {
        // A version never changes, and is read from S3 (the cache holds current items only).
        let object = reader.get_version(&key, version, deadline).await?;
        if object.is_none() {
            let mut response = ApiError::NoSuchVersion {
                key: key.to_string(),
                version: version.to_owned(),
                what: "read",
            }
            .into_response();
            let bypass = HeaderValue::from_static(CacheStatus::Bypass.as_str());
            response.headers.insert(X_CACHE, bypass);
            return Ok(response);
        }
        match object {
            Some(object) => crate::read::ReadResult::found(object, CacheStatus::Bypass),
            None => crate::read::ReadResult::absent(CacheStatus::Bypass),
        }
    } else if consistent {
        reader.get_consistent(&key, deadline).await?
    } else if let (Some(wait), Some(tags)) = (wait, &not_modified_if) {
        let is_current = |etag: &crate::ports::Etag| tags.matches(etag);
        Box::pin(reader.wait_for_change(&key, is_current, wait, deadline)).await?
    } else {
        reader.get(&key, deadline).await?
    };
    cache.push(result.cache);
    let mut headers = HeaderMap::new();
    headers.insert(X_CACHE, HeaderValue::from_static(result.cache.as_str()));
    let Some(object) = result.object else {
        let error = match (result.unservable, result.expired) {
            (Some(why), _) => ApiError::Unservable {
                key: key.to_string(),
                why,
            },
            (None, Some(at)) => ApiError::Expired {
                key: key.to_string(),
                at: at.rfc3339(),
            },
            (None, None) => ApiError::NotFound(key.to_string()),
        };
        let mut response = error.into_response();
        response.headers.extend(headers);
        return Ok(response);
    };
    headers.insert(ETAG, header_value(&object.etag.quoted())?);
    if let Some(modified) = object.provenance.last_modified() {
        headers.insert(LAST_MODIFIED, header_value(&modified)?);
    }
    if let (Some(writer), false) = (&object.provenance.writer, public) {
        headers.insert(X_S3KV_WRITER, header_value(writer)?);
    }
    if let Some(at) = object.provenance.expires {
        headers.insert(X_S3KV_EXPIRES_AT, header_value(&at.rfc3339())?);
    }
    if not_modified_if.is_some_and(|tags| tags.matches(&object.etag)) {
        let mut response = empty_response(StatusCode::NOT_MODIFIED);
        response.headers = headers;
        return Ok(response);
    }
    let text = String::from_utf8(Vec::from(object.body))
        .map_err(|_| ApiError::Internal(format!("stored value for {key:?} is not UTF-8")))?;
    check_response_size(
        &text,
        "read this item from S3 directly, or split it into smaller items",
    )?;
    Ok(json_response(StatusCode::OK, headers, text))
}

/// Lambda refuses a response over 6 MB (the body travels JSON-escaped inside the proxy response), and API Gateway
/// then answers a bare 502. Saying so in our own words is the only way the client learns why.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 - 64 * 1024;

pub(super) fn check_response_size(body: &str, advice: &'static str) -> Result<(), ApiError> {
    // Cheap bound first: escaping can at most sextuple a byte (\u00XX).
    if body.len() * 6 < MAX_RESPONSE_BYTES {
        return Ok(());
    }
    let escaped = serde_json::to_string(body).map_or(usize::MAX, |s| s.len());
    if escaped > MAX_RESPONSE_BYTES {
        return Err(ApiError::ResponseTooLarge {
            size: escaped,
            advice,
        });
    }
    Ok(())
}

/// `?version=<id>`: one version from the item's history.
fn version(request: &ApiGatewayProxyRequest) -> Result<Option<&str>, ApiError> {
    match request.query_string_parameters.first("version") {
        None => Ok(None),
        Some(v) if super::history::valid_version(v) => Ok(Some(v)),
        Some(_) => Err(ApiError::InvalidQuery {
            name: "version",
            reason: "must be a version id from GET /versions/{key}",
        }),
    }
}

/// `?consistent=true`: read S3 directly, for read-after-write.
fn consistent(request: &ApiGatewayProxyRequest) -> Result<bool, ApiError> {
    bool_param(request, "consistent")
}

fn bool_param(request: &ApiGatewayProxyRequest, name: &'static str) -> Result<bool, ApiError> {
    match request.query_string_parameters.first(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::InvalidQuery {
            name,
            reason: "must be true or false",
        }),
    }
}
