//! Conditional requests: `If-Match` / `If-None-Match` on writes (create only, replace only that version) and
//! `If-None-Match` on reads (304 when the client already has the current version).

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use http::header::{IF_MATCH, IF_NONE_MATCH};

use crate::ports::Etag;
use crate::write::Precondition;

use super::{single_header, ApiError};

/// `If-None-Match: *` (create only) or `If-Match: "<etag>"` (replace or delete only that version).
pub(super) fn write_precondition(
    request: &ApiGatewayProxyRequest,
) -> Result<Precondition, ApiError> {
    let if_match = single_header(request, &IF_MATCH, "If-Match")?;
    let if_none_match = single_header(request, &IF_NONE_MATCH, "If-None-Match")?;
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (Some(_), Some(_)) => Err(ApiError::InvalidHeader {
            name: "If-Match",
            reason: "send If-Match or If-None-Match, not both",
        }),
        (None, Some("*")) => Ok(Precondition::Absent),
        (None, Some(_)) => Err(ApiError::InvalidHeader {
            name: "If-None-Match",
            reason: "on writes only * (create only) is supported",
        }),
        (Some(value), None) => {
            let reason = if value == "*" {
                "* is not supported; send the item's ETag"
            } else if value.contains(',') {
                "send exactly one ETag"
            } else if value.starts_with("W/") {
                "a weak ETag never matches for a write; send the ETag as s3kv returned it"
            } else if value.trim_matches('"').is_empty() {
                "empty ETag"
            } else if !etag_chars(value) {
                "an ETag is a quoted string of visible ASCII characters, as s3kv returned it"
            } else {
                return Ok(Precondition::Matches(Etag::new(value)));
            };
            Err(ApiError::InvalidHeader {
                name: "If-Match",
                reason,
            })
        }
    }
}

/// RFC 9110 `entity-tag` characters (`"` only around it), which is also all S3 accepts in a condition.
fn etag_chars(value: &str) -> bool {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    inner
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
}

/// `If-None-Match` on a read: the tags the client already has.
pub(super) enum KnownTags {
    Any,
    Some(Vec<Etag>),
}

impl KnownTags {
    /// Weak comparison, as RFC 9110 prescribes for If-None-Match.
    pub(super) fn matches(&self, current: &Etag) -> bool {
        match self {
            KnownTags::Any => true,
            KnownTags::Some(tags) => tags.contains(current),
        }
    }
}

pub(super) fn read_precondition(
    request: &ApiGatewayProxyRequest,
) -> Result<Option<KnownTags>, ApiError> {
    if request.headers.contains_key(IF_MATCH) {
        return Err(ApiError::InvalidHeader {
            name: "If-Match",
            reason: "not supported on reads; use If-None-Match",
        });
    }
    let Some(value) = single_header(request, &IF_NONE_MATCH, "If-None-Match")? else {
        return Ok(None);
    };
    if value == "*" {
        return Ok(Some(KnownTags::Any));
    }
    let tags: Vec<Etag> = value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Etag::new)
        .collect();
    if tags.is_empty() {
        return Err(ApiError::InvalidHeader {
            name: "If-None-Match",
            reason: "no ETag given",
        });
    }
    Ok(Some(KnownTags::Some(tags)))
}
