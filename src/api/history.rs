//! An item's history, from the bucket's versions: `GET /versions/{key}` lists them, `GET /items/{key}?version=`
//! reads one (in [`super::items`]), `POST /restore/{key}` brings one back as a new write.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::access::Caller;
use crate::ports::{Cache, ObjectStore};
use crate::read::Reader;
use crate::write::{WriteError, Writer};

use super::conditions::write_precondition;
use super::{author, item_key, json_response, request_body, ApiError};

/// Most versions one page holds, and the default: each costs a HEAD for its writer.
pub const VERSIONS_LIMIT_MAX: usize = 100;
pub const VERSIONS_LIMIT_DEFAULT: usize = 20;

/// `GET /versions/{key}?limit=&cursor=`: newest first, delete markers included, each with its writer.
pub(super) async fn versions<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let key = item_key(request, caller)?;
    let query = &request.query_string_parameters;
    let limit = super::number_param(
        request,
        "limit",
        1..=VERSIONS_LIMIT_MAX as u64,
        VERSIONS_LIMIT_DEFAULT as u64,
        "must be a whole number from 1 to 100",
    )? as usize;
    let bad_cursor = ApiError::InvalidQuery {
        name: "cursor",
        reason: "not a cursor this API returned; start again without one",
    };
    let after = match query.first("cursor") {
        None => None,
        Some(cursor) => {
            let decoded = URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|v| valid_version(v));
            Some(decoded.ok_or(bad_cursor)?)
        }
    };
    let history = match reader
        .versions(&key, after.as_deref(), limit, deadline)
        .await
    {
        // S3 refuses a version-id marker it never handed out.
        Err(crate::ports::StoreError::Rejected { status: 400, .. }) => {
            return Err(ApiError::InvalidQuery {
                name: "cursor",
                reason: "not a cursor this API returned; start again without one",
            })
        }
        other => other?,
    };
    let versions: Vec<_> = history
        .versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version.version,
                "etag": v.version.etag.as_ref().map(|e| e.as_str()),
                "size": v.version.size,
                "lastModified": v.version.last_modified,
                "deleted": v.version.deleted,
                "current": v.version.current,
                "writer": v.writer,
                "expiresAt": v.expires.map(|at| at.rfc3339()),
            })
        })
        .collect();
    let cursor = history.next.map(|v| URL_SAFE_NO_PAD.encode(v));
    let body = json!({ "key": key.as_str(), "versions": versions, "cursor": cursor });
    Ok(json_response(
        StatusCode::OK,
        HeaderMap::new(),
        body.to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    version: String,
}

/// `POST /restore/{key}` with `{"version": "<id>"}`: 201 when it undeletes (or the item was never there), 200
/// when it replaces the current version; `If-Match` / `If-None-Match: *` hold as for a write.
pub(super) async fn restore<S: ObjectStore>(
    writer: &Writer<S>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let key = item_key(request, caller)?;
    let precondition = write_precondition(request)?;
    let body = request_body(request, 4096)?;
    let RestoreBody { version } =
        serde_json::from_slice(&body).map_err(|_| ApiError::InvalidRestore)?;
    if !valid_version(&version) {
        return Err(ApiError::InvalidRestore);
    }
    let author = author(caller, request);
    let written = match writer
        .restore(&key, &version, &precondition, &author, deadline)
        .await
    {
        Err(WriteError::NoSuchVersion(version) | WriteError::NotRestorable(version)) => {
            return Err(ApiError::NoSuchVersion {
                key: key.to_string(),
                version,
                what: "restore",
            })
        }
        other => other?,
    };
    tracing::info!(key = %key, version = %version, writer = %author.header(), "item restored");
    super::written_response(
        &written,
        json!({ "key": key.as_str(), "etag": written.etag.as_str(), "restoredFrom": version }),
    )
}

/// What S3 could have handed out as a version id: short, visible ASCII (S3's are 32 URL-safe characters).
pub(super) fn valid_version(version: &str) -> bool {
    !version.is_empty() && version.len() <= 1024 && version.bytes().all(|b| b.is_ascii_graphic())
}
