//! `GET /items?prefix=&limit=&cursor=`: item keys from S3, the source of truth, one page at a time, only those
//! the caller's key may read.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::access::Caller;
use crate::ports::{Cache, ObjectStore, StoreError};
use crate::read::Reader;

use super::{json_response, ApiError, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};

pub(super) async fn list<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    caller: &Caller<'_>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let query = &request.query_string_parameters;
    let prefix = prefix_param(request)?;
    let limit = super::number_param(
        request,
        "limit",
        1..=LIST_LIMIT_MAX as u64,
        LIST_LIMIT_DEFAULT as u64,
        "a whole number from 1 to 1000",
    )? as usize;
    let bad_cursor = ApiError::InvalidQuery {
        name: "cursor",
        reason: "not a cursor this API returned; start again without one",
    };
    let token = match query.first("cursor") {
        None | Some("") => None,
        Some(cursor) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|token| !token.is_empty() && token.chars().all(crate::key::xml_safe))
                .ok_or(ApiError::InvalidQuery {
                    name: "cursor",
                    reason: "not a cursor this API returned; start again without one",
                })?,
        ),
    };
    // No item key starts with '/' or holds '//': answer what S3 would, without asking (file-backed S3 stand-ins
    // normalize such prefixes into other ones).
    if prefix.starts_with('/') || prefix.contains("//") {
        let body = json!({ "items": [], "cursor": null });
        return Ok(json_response(
            StatusCode::OK,
            HeaderMap::new(),
            body.to_string(),
        ));
    }
    let Some((prefix, filter)) = scope(caller, prefix) else {
        return Err(caller.outside(prefix).into());
    };
    let listing = match reader.list(prefix, limit, token, deadline).await {
        // S3 answers 400 to a continuation token it never issued.
        Err(StoreError::Rejected { status: 400, .. }) => return Err(bad_cursor),
        other => other?,
    };
    let items: Vec<serde_json::Value> = listing
        .items
        .iter()
        .filter(|item| !filter || caller.covers(item.key.as_str()))
        .map(|item| {
            let mut listed = json!({
                "key": item.key.as_str(),
                "etag": item.etag.as_str(),
                "size": item.size,
                "lastModified": item.last_modified,
            });
            if let Some(why) = &item.unservable {
                listed["unservable"] = json!(ApiError::unservable_code(why));
            }
            if let Some(at) = item.expires {
                listed["expiresAt"] = json!(at.rfc3339());
            }
            listed
        })
        .collect();
    let cursor = listing
        .next
        .map(|token| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
    let body = json!({ "items": items, "cursor": cursor });
    Ok(json_response(
        StatusCode::OK,
        HeaderMap::new(),
        body.to_string(),
    ))
}

/// `?prefix=`: a key prefix, which may be empty.
pub(super) fn prefix_param(request: &ApiGatewayProxyRequest) -> Result<&str, ApiError> {
    let prefix = request
        .query_string_parameters
        .first("prefix")
        .unwrap_or_default();
    if prefix.len() > crate::key::MAX_KEY_BYTES || !prefix.chars().all(crate::key::xml_safe) {
        return Err(ApiError::InvalidQuery {
            name: "prefix",
            reason: "at most 512 bytes, no control characters, U+FFFE or U+FFFF",
        });
    }
    Ok(prefix)
}

/// What to ask S3 for, for a caller limited to some prefixes: the prefix asked for when it lies within one of
/// them; the caller's one prefix under it when there is exactly one (a key for `flags/` listing everything lists
/// `flags/`); else the prefix asked for, with the page filtered (`true`), so a page may hold fewer items than
/// its limit, or none, and still have a cursor. `None` when the caller may read nothing under the prefix.
pub(super) fn scope<'a>(caller: &'a Caller<'_>, asked: &'a str) -> Option<(&'a str, bool)> {
    let granted = caller.prefixes();
    if granted.is_empty() || granted.iter().any(|p| asked.starts_with(p.as_str())) {
        return Some((asked, false));
    }
    let mut under = granted.iter().filter(|p| p.starts_with(asked));
    match (under.next(), under.next()) {
        (None, _) => None,
        (Some(only), None) => Some((only.as_str(), false)),
        (Some(_), Some(_)) => Some((asked, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Grant, Role};

    #[test]
    fn a_limited_key_lists_only_its_prefixes() {
        let grant = Grant {
            role: Role::Read,
            prefixes: vec!["flags/".into(), "fleet/".into()],
            name: None,
        };
        let caller = Caller::Key {
            id: "k",
            grant: &grant,
        };
        assert_eq!(scope(&caller, "flags/beta"), Some(("flags/beta", false)));
        assert_eq!(scope(&caller, "flag"), Some(("flags/", false)));
        assert_eq!(scope(&caller, "fl"), Some(("fl", true)));
        assert_eq!(scope(&caller, ""), Some(("", true)));
        assert_eq!(scope(&caller, "config/"), None);
        let open = Caller::Unrestricted { id: None };
        assert_eq!(scope(&open, "config/"), Some(("config/", false)));
    }
}
