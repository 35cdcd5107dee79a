//! `POST /batch-get`: up to 100 items in one request, from one pipelined cache lookup. Keys the caller may not
//! read are answered `"error": "forbidden"` and never looked up.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::access::Caller;
use crate::key::ItemKey;
use crate::ports::{Cache, ObjectStore};
use crate::read::{CacheStatus, Reader};

use super::items::check_response_size;
use super::{json_response, request_body, ApiError, BATCH_GET_MAX};

/// `cache` learns the cache status of each distinct key.
pub(super) async fn batch_get<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
    cache: &mut Vec<CacheStatus>,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct BatchGet {
        keys: Vec<String>,
    }
    // Room for 100 longest keys even if every byte arrives as a \uXXXX escape.
    let body = request_body(
        request,
        BATCH_GET_MAX * crate::key::MAX_KEY_BYTES * 6 + 1024,
    )?;
    crate::document::validate(&body)?;
    let batch: BatchGet = serde_json::from_slice(&body).map_err(|_| ApiError::InvalidBatch)?;
    if batch.keys.is_empty() || batch.keys.len() > BATCH_GET_MAX {
        return Err(ApiError::InvalidBatch);
    }
    let mut unique: Vec<ItemKey> = Vec::with_capacity(batch.keys.len());
    // Per requested key: its place in `unique`, or `Err(key)` when the caller may not read it.
    let mut position = Vec::with_capacity(batch.keys.len());
    for (index, raw) in batch.keys.iter().enumerate() {
        let key =
            ItemKey::parse(raw).map_err(|source| ApiError::InvalidBatchKey { index, source })?;
        if !caller.covers(key.as_str()) {
            position.push(Err(key));
            continue;
        }
        let at = match unique.iter().position(|k| *k == key) {
            Some(at) => at,
            None => {
                unique.push(key);
                unique.len() - 1
            }
        };
        position.push(Ok(at));
    }
    let results = if unique.is_empty() {
        Vec::new()
    } else {
        reader.get_many(&unique, deadline).await?
    };
    cache.extend(results.iter().map(|r| r.cache));
    let mut items = Vec::with_capacity(position.len());
    for at in &position {
        let at = match at {
            Ok(at) => *at,
            Err(key) => {
                items.push(Entry::refused(key.as_str()));
                continue;
            }
        };
        let key = unique[at].as_str();
        let result = &results[at];
        items.push(match &result.object {
            None => Entry {
                error: match (&result.unservable, result.expired) {
                    (Some(why), _) => Some(ApiError::unservable_code(why)),
                    (None, Some(_)) => Some("expired"),
                    (None, None) => None,
                },
                ..Entry::absent(key)
            },
            Some(object) => {
                // The stored bytes, spliced in as they are: a `Value` would round numbers, reorder members and
                // refuse what serde_json cannot hold (1e400, a lone surrogate) although the document is valid.
                let text = std::str::from_utf8(&object.body).map_err(|_| {
                    ApiError::Internal(format!("stored value for {key:?} is not UTF-8"))
                })?;
                let value = serde_json::from_str::<&RawValue>(text).map_err(|_| {
                    ApiError::Internal(format!("stored value for {key:?} is not JSON"))
                })?;
                Entry {
                    key,
                    found: true,
                    error: None,
                    etag: Some(object.etag.as_str()),
                    cache: Some(result.cache.as_str()),
                    value: Some(value),
                    expires_at: object.provenance.expires.map(|at| at.rfc3339()),
                }
            }
        });
    }
    let body = serde_json::to_string(&Answer { items: &items })
        .map_err(|e| ApiError::Internal(format!("batch answer: {e}")))?;
    check_response_size(&body, "ask for fewer keys at a time")?;
    Ok(json_response(StatusCode::OK, HeaderMap::new(), body))
}

#[derive(Serialize)]
struct Answer<'a> {
    items: &'a [Entry<'a>],
}

/// One requested key's answer, in request order.
#[derive(Serialize)]
struct Entry<'a> {
    key: &'a str,
    found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    #[serde(rename = "expiresAt", skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl<'a> Entry<'a> {
    fn absent(key: &'a str) -> Self {
        Self {
            key,
            found: false,
            error: None,
            etag: None,
            cache: None,
            value: None,
            expires_at: None,
        }
    }

    fn refused(key: &'a str) -> Self {
        Self {
            error: Some("forbidden"),
            ..Self::absent(key)
        }
    }
}
