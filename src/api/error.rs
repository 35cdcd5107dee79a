//! Every way a request can fail, each with one status and one stable code: the one place errors become HTTP.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use http::header::{HeaderValue, ALLOW};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use thiserror::Error;

use crate::access::Denied;
use crate::document::DocumentError;
use crate::key::KeyError;
use crate::ports::StoreError;
use crate::schema::{SchemaError, Violations};
use crate::write::{Unmet, WriteError};

use super::json_response;

/// Everything a request can fail with, each with one status and one stable code.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("the path must be /items/{{key}}")]
    MissingKey,
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),
    #[error("the body is empty; send a JSON value such as {{}} or true")]
    EmptyBody,
    #[error("the body is not valid JSON: {message} (line {line}, column {column})")]
    InvalidJson {
        message: String,
        line: usize,
        column: usize,
    },
    /// Valid JSON that I-JSON refuses and we do too: see [`crate::document`] for why.
    #[error("the object member name {name:?} appears twice in one object (line {line}, column {column}); member names must be unique (I-JSON, RFC 7493)")]
    DuplicateName {
        name: String,
        line: usize,
        column: usize,
    },
    #[error("the body is marked base64-encoded but is not valid base64")]
    InvalidBase64,
    #[error("the body is {size} bytes; the limit is {limit} bytes")]
    BodyTooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Forbidden(#[from] Denied),
    #[error("{method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: Method, allow: String },
    #[error("no route for {0}; the API has {paths}", paths = crate::routes::paths())]
    NoRoute(String),
    #[error("no item with key {0:?}")]
    NotFound(String),
    /// An object is in the bucket under the item's key (uploaded around the API) but is not served.
    #[error("the object for item {key:?} is in the bucket but is not served: {reason}; replace it with PUT /items/{{key}} or delete it", reason = unservable_reason(why))]
    Unservable {
        key: String,
        why: crate::ports::Unservable,
    },
    /// The item's expiry has come; the reaper deletes its object soon after, and a restore brings it back.
    #[error("item {key:?} expired at {at}; it is deleted within two minutes (POST /restore/{{key}} with a version from GET /versions/{{key}} brings it back)")]
    Expired { key: String, at: String },
    /// A version read or restore: the version id is unknown (never existed, expired, or another key's), a
    /// delete marker, or not a JSON document.
    #[error("no version {version:?} of item {key:?} to {what}; GET /versions/{{key}} lists the item's versions")]
    NoSuchVersion {
        key: String,
        version: String,
        what: &'static str,
    },
    #[error("the body must be {{\"version\": \"<a version id from GET /versions/{{key}}>\"}}")]
    InvalidRestore,
    #[error("invalid {name} header: {reason}")]
    InvalidHeader {
        name: &'static str,
        reason: &'static str,
    },
    #[error("invalid query parameter {name}: {reason}")]
    InvalidQuery {
        name: &'static str,
        reason: &'static str,
    },
    #[error("the body must be {{\"keys\": [\"key\", ...]}} with 1 to 100 keys")]
    InvalidBatch,
    #[error("keys[{index}] is not a valid key: {source}")]
    InvalidBatchKey { index: usize, source: KeyError },
    #[error("{0}; {advice}", advice = precondition_advice(*.0))]
    PreconditionFailed(Unmet),
    #[error("another write to this key was in progress at the same moment; retry the request (after a GET for the current ETag if you send If-Match)")]
    Conflict,
    #[error("storage is unavailable, try again shortly: {0}")]
    Unavailable(StoreError),
    #[error("storage rejected the request: {0}")]
    Upstream(StoreError),
    #[error("the response would be {size} bytes once encoded, over what a Lambda function can return (6 MB); {advice}")]
    ResponseTooLarge { size: usize, advice: &'static str },
    /// The change feed lives in Valkey only; S3 cannot stand in for it.
    #[error("the change feed is unavailable, try again shortly: {0}")]
    FeedUnavailable(crate::ports::CacheError),
    /// The cursor is older than what the feed keeps: the client re-lists the items, then follows from `restart`.
    #[error("the feed no longer holds the changes after this cursor (it keeps the newest S3KV_FEED_RETENTION); list the items again, then follow the feed from the cursor in this answer")]
    CursorExpired { restart: crate::ports::Cursor },
    /// The document breaks the schema of its prefix; the body lists every violation.
    #[error("the document breaks the schema for prefix {:?} ({} violation{}); GET /schemas/{} shows the schema", .0.schema, .0.count, if .0.count == 1 { "" } else { "s" }, .0.schema)]
    SchemaViolation(Violations),
    #[error("{0}")]
    InvalidSchema(String),
    /// A schema in the bucket that does not compile: writes under it are refused until it is fixed.
    #[error("the schema for prefix {prefix:?} in the bucket is not a valid JSON Schema ({reason}); replace it with PUT /schemas/{prefix} or delete it")]
    StoredSchemaInvalid { prefix: String, reason: String },
    #[error("no schema for prefix {0:?}; GET /schemas lists them")]
    NoSuchSchema(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingKey
            | ApiError::InvalidKey(_)
            | ApiError::EmptyBody
            | ApiError::InvalidJson { .. }
            | ApiError::DuplicateName { .. }
            | ApiError::InvalidBase64
            | ApiError::InvalidHeader { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::InvalidBatch
            | ApiError::InvalidRestore
            | ApiError::InvalidBatchKey { .. } => StatusCode::BAD_REQUEST,
            ApiError::SchemaViolation(_) | ApiError::InvalidSchema(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict | ApiError::Unservable { .. } => StatusCode::CONFLICT,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_)
            | ApiError::Expired { .. }
            | ApiError::NoRoute(_)
            | ApiError::NoSuchVersion { .. }
            | ApiError::NoSuchSchema(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) | ApiError::FeedUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::CursorExpired { .. } => StatusCode::GONE,
            ApiError::Upstream(_) | ApiError::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) | ApiError::StoredSchemaInvalid { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingKey | ApiError::InvalidKey(_) | ApiError::InvalidBatchKey { .. } => {
                "invalid_key"
            }
            ApiError::InvalidBatch | ApiError::InvalidRestore => "invalid_body",
            ApiError::EmptyBody => "empty_body",
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::DuplicateName { .. } => "duplicate_name",
            ApiError::InvalidBase64 => "invalid_body",
            ApiError::InvalidHeader { .. } => "invalid_header",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::Conflict => "conflict",
            ApiError::Unservable { why, .. } => Self::unservable_code(why),
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotFound(_)
            | ApiError::NoRoute(_)
            | ApiError::NoSuchVersion { .. }
            | ApiError::NoSuchSchema(_) => "not_found",
            ApiError::Expired { .. } => "expired",
            ApiError::SchemaViolation(_) => "schema_violation",
            ApiError::InvalidSchema(_) => "invalid_schema",
            ApiError::StoredSchemaInvalid { .. } => "invalid_stored_schema",
            ApiError::Unavailable(_) | ApiError::FeedUnavailable(_) => "unavailable",
            ApiError::CursorExpired { .. } => "cursor_expired",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::ResponseTooLarge { .. } => "response_too_large",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn into_response(self) -> ApiGatewayProxyResponse {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        if let ApiError::Forbidden(denied) = &self {
            tracing::warn!(error = %denied, "request refused");
        }
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        if let ApiError::InvalidJson { line, column, .. }
        | ApiError::DuplicateName { line, column, .. } = &self
        {
            body["line"] = json!(line);
            body["column"] = json!(column);
        }
        if let ApiError::CursorExpired { restart } = &self {
            body["cursor"] = json!(restart.to_string());
        }
        if let ApiError::SchemaViolation(violations) = &self {
            body["schema"] = json!(violations.schema);
            body["violations"] = json!(violations.listed);
            body["violationCount"] = json!(violations.count);
        }
        if let ApiError::StoredSchemaInvalid { prefix, .. } = &self {
            body["schema"] = json!(prefix);
        }
        // What the key may do, for programs: the message says it for people.
        if let Some((role, prefixes)) = self.forbidden_grant() {
            body["role"] = json!(role.as_str());
            body["prefixes"] = json!(prefixes);
        }
        let mut headers = HeaderMap::new();
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            if let Ok(allow) = HeaderValue::from_str(allow) {
                headers.insert(ALLOW, allow);
            }
        }
        json_response(status, headers, body.to_string())
    }
}

impl ApiError {
    /// The code a read answers for an object it does not serve; listings and batch gets flag items with it too.
    pub(super) fn unservable_code(why: &crate::ports::Unservable) -> &'static str {
        match why {
            crate::ports::Unservable::InvalidDocument(_) => "invalid_stored_document",
            crate::ports::Unservable::TooLarge => "stored_too_large",
        }
    }

    fn forbidden_grant(&self) -> Option<(crate::access::Role, &[String])> {
        match self {
            ApiError::Forbidden(denied) => denied.grant(),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => ApiError::Unavailable(error),
            StoreError::Conflict => ApiError::Conflict,
            other => ApiError::Upstream(other),
        }
    }
}

impl From<crate::watch::ChangesError> for ApiError {
    fn from(error: crate::watch::ChangesError) -> Self {
        use crate::watch::ChangesError;
        match error {
            ChangesError::Unavailable(error) => ApiError::FeedUnavailable(error),
            ChangesError::Expired { restart } => ApiError::CursorExpired { restart },
            ChangesError::Store(error) => error.into(),
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(error: DocumentError) -> Self {
        match error {
            DocumentError::Empty => ApiError::EmptyBody,
            DocumentError::Malformed {
                message,
                line,
                column,
            } => ApiError::InvalidJson {
                message,
                line,
                column,
            },
            DocumentError::DuplicateName { name, line, column } => {
                ApiError::DuplicateName { name, line, column }
            }
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Document(e) => e.into(),
            WriteError::TooLarge { size, limit } => ApiError::BodyTooLarge { size, limit },
            WriteError::NotFound => ApiError::NotFound(String::new()),
            WriteError::NoSuchVersion(version) | WriteError::NotRestorable(version) => {
                ApiError::NoSuchVersion {
                    key: String::new(),
                    version,
                    what: "restore",
                }
            }
            WriteError::PreconditionFailed(unmet) => ApiError::PreconditionFailed(unmet),
            WriteError::Schema(e) => e.into(),
            WriteError::Store(e) => e.into(),
        }
    }
}

impl From<SchemaError> for ApiError {
    fn from(error: SchemaError) -> Self {
        match error {
            SchemaError::NotJson(e) => e.into(),
            SchemaError::TooLarge { size } => ApiError::BodyTooLarge {
                size,
                limit: crate::schema::MAX_SCHEMA_BYTES,
            },
            SchemaError::Invalid(reason) => {
                ApiError::InvalidSchema(format!("not a valid JSON Schema: {reason}"))
            }
            SchemaError::Stored { prefix, reason } => {
                ApiError::StoredSchemaInvalid { prefix, reason }
            }
            SchemaError::Violated(violations) => ApiError::SchemaViolation(violations),
            SchemaError::NotFound(prefix) => ApiError::NoSuchSchema(prefix),
            SchemaError::Store(e) => e.into(),
        }
    }
}

fn unservable_reason(why: &crate::ports::Unservable) -> String {
    match why {
        crate::ports::Unservable::InvalidDocument(Some(detail)) => {
            format!("it is not a document the API would accept ({detail})")
        }
        crate::ports::Unservable::InvalidDocument(None) => {
            "it is not a document the API would accept (GET with ?consistent=true says why)"
                .to_owned()
        }
        crate::ports::Unservable::TooLarge => {
            "it is larger than the largest item served (S3KV_MAX_OBJECT_BYTES)".to_owned()
        }
    }
}

fn precondition_advice(unmet: Unmet) -> &'static str {
    match unmet {
        Unmet::Exists => {
            "send If-Match with its ETag to replace it, or no condition to overwrite it"
        }
        Unmet::Changed => {
            "GET the item for its current ETag and its value, then retry with that ETag"
        }
    }
}

/// The docs page whose error table a test holds to [`ApiError`].
#[cfg(test)]
const ERRORS_DOC: &str = "docs/src/http-api/errors.md";

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::encodings::Body;
    use http::header::CONTENT_TYPE;

    #[test]
    fn every_error_has_a_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::MissingKey, 400, "invalid_key"),
            (ApiError::InvalidKey(KeyError::Empty), 400, "invalid_key"),
            (ApiError::EmptyBody, 400, "empty_body"),
            (
                ApiError::InvalidJson {
                    message: "x".into(),
                    line: 1,
                    column: 2,
                },
                400,
                "invalid_json",
            ),
            (ApiError::InvalidBase64, 400, "invalid_body"),
            (
                ApiError::BodyTooLarge { size: 2, limit: 1 },
                413,
                "body_too_large",
            ),
            (
                ApiError::MethodNotAllowed {
                    method: Method::PATCH,
                    allow: "GET".into(),
                },
                405,
                "method_not_allowed",
            ),
            (ApiError::NotFound("k".into()), 404, "not_found"),
            (Denied::NoKey.into(), 403, "forbidden"),
            (ApiError::NoRoute("/nope".into()), 404, "not_found"),
            (
                ApiError::InvalidHeader {
                    name: "If-Match",
                    reason: "x",
                },
                400,
                "invalid_header",
            ),
            (
                ApiError::InvalidQuery {
                    name: "consistent",
                    reason: "x",
                },
                400,
                "invalid_query",
            ),
            (
                WriteError::PreconditionFailed(Unmet::Changed).into(),
                412,
                "precondition_failed",
            ),
            (StoreError::Conflict.into(), 409, "conflict"),
            (
                ApiError::ResponseTooLarge {
                    size: 7 << 20,
                    advice: "x",
                },
                502,
                "response_too_large",
            ),
            (
                StoreError::Unavailable("down".into()).into(),
                503,
                "unavailable",
            ),
            (
                StoreError::Rejected {
                    status: 403,
                    source: "denied".into(),
                }
                .into(),
                502,
                "upstream_error",
            ),
            (
                ApiError::FeedUnavailable(crate::ports::CacheError::Unexpected("x".into())),
                503,
                "unavailable",
            ),
            (
                ApiError::CursorExpired {
                    restart: crate::ports::Cursor::new(5, 1),
                },
                410,
                "cursor_expired",
            ),
            (
                SchemaError::Violated(Violations {
                    schema: "flags/".into(),
                    listed: vec![],
                    count: 0,
                })
                .into(),
                422,
                "schema_violation",
            ),
            (
                SchemaError::Invalid("x".into()).into(),
                422,
                "invalid_schema",
            ),
            (
                SchemaError::Stored {
                    prefix: "a".into(),
                    reason: "x".into(),
                }
                .into(),
                500,
                "invalid_stored_schema",
            ),
            (SchemaError::NotFound("a".into()).into(), 404, "not_found"),
            (
                SchemaError::TooLarge { size: 1 << 20 }.into(),
                413,
                "body_too_large",
            ),
        ];
        for (error, status, code) in cases {
            let response = error.into_response();
            assert_eq!(response.status_code, i64::from(status));
            let Some(Body::Text(text)) = response.body else {
                panic!("no body")
            };
            let body: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["error"], code);
            assert!(!body["message"].as_str().unwrap().is_empty());
            assert_eq!(response.headers[CONTENT_TYPE], "application/json");
        }
    }

    /// Each variant's place in [`one_of_each`]. No wildcard arm: a new variant does not compile until it has a
    /// number here, and [`one_of_each_covers_every_variant`] then fails until it has an example, so the docs
    /// tests below see every status and code the API can answer.
    fn variant(error: &ApiError) -> usize {
        match error {
            ApiError::MissingKey => 0,
            ApiError::InvalidKey(_) => 1,
            ApiError::EmptyBody => 2,
            ApiError::InvalidJson { .. } => 3,
            ApiError::DuplicateName { .. } => 4,
            ApiError::InvalidBase64 => 5,
            ApiError::BodyTooLarge { .. } => 6,
            ApiError::Forbidden(_) => 7,
            ApiError::MethodNotAllowed { .. } => 8,
            ApiError::NoRoute(_) => 9,
            ApiError::NotFound(_) => 10,
            ApiError::Unservable { .. } => 11,
            ApiError::NoSuchVersion { .. } => 12,
            ApiError::InvalidRestore => 13,
            ApiError::InvalidHeader { .. } => 14,
            ApiError::InvalidQuery { .. } => 15,
            ApiError::InvalidBatch => 16,
            ApiError::InvalidBatchKey { .. } => 17,
            ApiError::PreconditionFailed(_) => 18,
            ApiError::Conflict => 19,
            ApiError::Unavailable(_) => 20,
            ApiError::Upstream(_) => 21,
            ApiError::ResponseTooLarge { .. } => 22,
            ApiError::FeedUnavailable(_) => 23,
            ApiError::CursorExpired { .. } => 24,
            ApiError::SchemaViolation(_) => 25,
            ApiError::InvalidSchema(_) => 26,
            ApiError::StoredSchemaInvalid { .. } => 27,
            ApiError::NoSuchSchema(_) => 28,
            ApiError::Internal(_) => 29,
            ApiError::Expired { .. } => 30,
        }
    }
    const VARIANTS: usize = 31;

    /// An example of every variant, and of every code a variant can answer with.
    fn one_of_each() -> Vec<ApiError> {
        use crate::ports::{CacheError, Cursor, Unservable};
        let position = |line, column| (line, column);
        let (line, column) = position(1, 2);
        vec![
            ApiError::MissingKey,
            ApiError::InvalidKey(KeyError::Empty),
            ApiError::EmptyBody,
            ApiError::InvalidJson {
                message: "x".into(),
                line,
                column,
            },
            ApiError::DuplicateName {
                name: "a".into(),
                line,
                column,
            },
            ApiError::InvalidBase64,
            ApiError::BodyTooLarge { size: 2, limit: 1 },
            Denied::NoKey.into(),
            ApiError::MethodNotAllowed {
                method: Method::PATCH,
                allow: "GET".into(),
            },
            ApiError::NoRoute("/nope".into()),
            ApiError::NotFound("k".into()),
            ApiError::Unservable {
                key: "k".into(),
                why: Unservable::InvalidDocument(None),
            },
            ApiError::Unservable {
                key: "k".into(),
                why: Unservable::TooLarge,
            },
            ApiError::NoSuchVersion {
                key: "k".into(),
                version: "v".into(),
                what: "read",
            },
            ApiError::InvalidRestore,
            ApiError::InvalidHeader {
                name: "If-Match",
                reason: "x",
            },
            ApiError::InvalidQuery {
                name: "limit",
                reason: "x",
            },
            ApiError::InvalidBatch,
            ApiError::InvalidBatchKey {
                index: 0,
                source: KeyError::Empty,
            },
            ApiError::PreconditionFailed(Unmet::Changed),
            ApiError::Conflict,
            ApiError::Unavailable(StoreError::Unavailable("down".into())),
            ApiError::Upstream(StoreError::Rejected {
                status: 403,
                source: "denied".into(),
            }),
            ApiError::ResponseTooLarge {
                size: 7 << 20,
                advice: "x",
            },
            ApiError::FeedUnavailable(CacheError::Unexpected("x".into())),
            ApiError::CursorExpired {
                restart: Cursor::new(5, 1),
            },
            ApiError::SchemaViolation(Violations {
                schema: "a/".into(),
                listed: vec![],
                count: 0,
            }),
            ApiError::InvalidSchema("x".into()),
            ApiError::StoredSchemaInvalid {
                prefix: "a/".into(),
                reason: "x".into(),
            },
            ApiError::NoSuchSchema("a/".into()),
            ApiError::Internal("x".into()),
            ApiError::Expired {
                key: "k".into(),
                at: "2026-12-31T18:00:00Z".into(),
            },
        ]
    }

    #[test]
    fn one_of_each_covers_every_variant() {
        let covered: std::collections::BTreeSet<usize> =
            one_of_each().iter().map(variant).collect();
        assert_eq!(covered, (0..VARIANTS).collect());
    }

    /// Every (status, code) pair the API answers with.
    fn answers() -> std::collections::BTreeSet<(u16, &'static str)> {
        one_of_each()
            .iter()
            .map(|e| (e.status().as_u16(), e.code()))
            .collect()
    }

    /// The rows `| status | `code` | ... |` of the error table in a Markdown file.
    fn documented(markdown: &str) -> std::collections::BTreeSet<(u16, String)> {
        markdown
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let status = cells.next()?.parse::<u16>().ok()?;
                let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((status, code.to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_docs_error_table_is_exactly_what_the_api_answers() {
        let docs = std::fs::read_to_string(format!("{}/{ERRORS_DOC}", env!("CARGO_MANIFEST_DIR")))
            .expect("the errors page");
        let expected: std::collections::BTreeSet<(u16, String)> = answers()
            .into_iter()
            .map(|(s, c)| (s, c.to_owned()))
            .collect();
        assert_eq!(documented(&docs), expected, "{ERRORS_DOC}'s error table");
    }

    #[test]
    fn openapi_lists_exactly_the_codes_the_api_answers() {
        let spec =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
        // components.schemas.Error.properties.error.enum, a block list under `    Error:`.
        let error_schema = spec
            .split("\n    Error:\n")
            .nth(1)
            .expect("an Error schema");
        let listed: std::collections::BTreeSet<&str> = error_schema
            .split("enum:\n")
            .nth(1)
            .expect("an enum of codes")
            .lines()
            .map_while(|l| l.trim().strip_prefix("- "))
            .collect();
        let codes: std::collections::BTreeSet<&str> =
            answers().into_iter().map(|(_, c)| c).collect();
        assert_eq!(listed, codes);
    }

    #[test]
    fn invalid_json_carries_line_and_column() {
        let response = ApiError::InvalidJson {
            message: "expected value".into(),
            line: 3,
            column: 7,
        }
        .into_response();
        let Some(Body::Text(text)) = response.body else {
            panic!("no body")
        };
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (body["line"].as_u64(), body["column"].as_u64()),
            (Some(3), Some(7))
        );
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let response = ApiError::MethodNotAllowed {
            method: Method::PATCH,
            allow: "PUT, POST, DELETE".into(),
        }
        .into_response();
        assert_eq!(response.headers[ALLOW], "PUT, POST, DELETE");
    }
}
