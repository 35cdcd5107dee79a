//! Watching over HTTP: `?wait=` on item reads (see [`super::items::get`]) and `GET /changes`, the change feed.

use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::access::Caller;
use crate::config::MAX_WAIT_SECS;
use crate::ports::{Cache, Cursor, Feed, ObjectStore};
use crate::read::Reader;

use super::listing::{prefix_param, scope};
use super::{json_response, number_param, ApiError};

/// Feed entries one `GET /changes` reads at most, and the default.
pub const CHANGES_LIMIT_MAX: u64 = 1000;
pub const CHANGES_LIMIT_DEFAULT: u64 = 100;

/// `?wait=<seconds>` (1 to 25 on an item, 0 to 25 on the feed), cut to the reader's `S3KV_MAX_WAIT_SECS`; `None`
/// when absent.
pub(super) fn wait_param(
    request: &ApiGatewayProxyRequest,
    max: Duration,
    item: bool,
) -> Result<Option<Duration>, ApiError> {
    if request.query_string_parameters.first("wait").is_none() {
        return Ok(None);
    }
    let (least, reason) = if item {
        (1, "a whole number of seconds from 1 to 25")
    } else {
        (0, "a whole number of seconds from 0 to 25")
    };
    let seconds = number_param(request, "wait", least..=MAX_WAIT_SECS, 0, reason)?;
    Ok(Some(Duration::from_secs(seconds).min(max)))
}

/// `GET /changes?prefix=&after=&wait=&limit=`: the items under `prefix` (that the caller may read) that changed
/// after the cursor `after`, each once with its ETag now (`null` and `deleted` once it is gone), and the cursor
/// to continue from. Without `after`, the feed is followed from now: the answer's cursor is the place to start.
pub(super) async fn changes<S: ObjectStore, C: Cache + Feed>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let prefix = prefix_param(request)?;
    if scope(caller, prefix).is_none() {
        return Err(caller.outside(prefix).into());
    }
    let after = match request.query_string_parameters.first("after") {
        None | Some("") => None,
        Some(raw) => Some(Cursor::parse(raw).ok_or(ApiError::InvalidQuery {
            name: "after",
            reason: "not a cursor this API returned; start again without one",
        })?),
    };
    let wait = wait_param(request, reader.max_wait(), false)?.unwrap_or(Duration::ZERO);
    let limit = number_param(
        request,
        "limit",
        1..=CHANGES_LIMIT_MAX,
        CHANGES_LIMIT_DEFAULT,
        "a whole number from 1 to 1000",
    )? as usize;
    let covers =
        |key: &crate::key::ItemKey| key.as_str().starts_with(prefix) && caller.covers(key.as_str());
    let found = Box::pin(reader.changes(after, limit, wait, covers, deadline)).await?;
    let changes: Vec<serde_json::Value> = found
        .changes
        .iter()
        .map(|change| {
            json!({
                "key": change.key.as_str(),
                "etag": change.etag.as_ref().map(|e| e.as_str()),
                "deleted": change.etag.is_none(),
            })
        })
        .collect();
    let body = json!({ "changes": changes, "cursor": found.cursor.to_string() });
    Ok(json_response(
        StatusCode::OK,
        HeaderMap::new(),
        body.to_string(),
    ))
}
