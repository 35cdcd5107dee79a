//! The HTTP contract: API Gateway REST proxy requests in, proxy responses out.
//!
//! This is the only place that knows HTTP: routing by method, reading the `{key+}` path parameter and the body,
//! and turning every outcome and every error into a status and a JSON body (`{"error", "message"}`). The use
//! cases below it speak in domain terms only.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW,
    CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH, VARY,
};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use thiserror::Error;

use crate::config::Config;
use crate::document::DocumentError;
use crate::key::{ItemKey, KeyError};
use crate::ports::{Cache, Etag, ObjectStore, StoreError};
use crate::read::Reader;
use crate::write::{Precondition, Unmet, WriteError, Writer};

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

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
    #[error("the body is marked base64-encoded but is not valid base64")]
    InvalidBase64,
    #[error("the body is {size} bytes; the limit is {limit} bytes")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("{method} is not allowed here; use {allow}")]
    MethodNotAllowed { method: Method, allow: &'static str },
    #[error("no item with key {0:?}")]
    NotFound(String),
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
            | ApiError::InvalidBase64
            | ApiError::InvalidHeader { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::InvalidBatch
            | ApiError::InvalidBatchKey { .. } => StatusCode::BAD_REQUEST,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) | ApiError::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingKey | ApiError::InvalidKey(_) | ApiError::InvalidBatchKey { .. } => {
                "invalid_key"
            }
            ApiError::InvalidBatch => "invalid_body",
            ApiError::EmptyBody => "empty_body",
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::InvalidBase64 => "invalid_body",
            ApiError::InvalidHeader { .. } => "invalid_header",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::Conflict => "conflict",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
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
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        if let ApiError::InvalidJson { line, column, .. } = &self {
            body["line"] = json!(line);
            body["column"] = json!(column);
        }
        let mut headers = HeaderMap::new();
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        json_response(status, headers, body.to_string())
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
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Document(e) => e.into(),
            WriteError::TooLarge { size, limit } => ApiError::BodyTooLarge { size, limit },
            WriteError::NotFound => ApiError::NotFound(String::new()),
            WriteError::PreconditionFailed(unmet) => ApiError::PreconditionFailed(unmet),
            WriteError::Store(e) => e.into(),
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

/// The methods and request headers browsers may use; the template's CORS settings list the same.
pub const CORS_ALLOW_METHODS: &str = "GET,PUT,POST,DELETE,OPTIONS";
pub const CORS_ALLOW_HEADERS: &str = "Content-Type,X-Api-Key,If-Match,If-None-Match";

/// CORS for browser clients: with `S3KV_CORS_ORIGIN` set, every response names the allowed origin and exposes
/// `ETag` and `X-Cache`. Preflights never reach a function in AWS (API Gateway answers `OPTIONS` itself, as the
/// template configures); the local gateway answers them with [`Cors::preflight`].
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origin: Option<HeaderValue>,
}

impl Cors {
    pub fn from_config(config: &Config) -> Self {
        Self {
            origin: config
                .cors_origin
                .as_deref()
                .and_then(|o| HeaderValue::from_str(o).ok()),
        }
    }

    pub fn apply(&self, mut response: ApiGatewayProxyResponse) -> ApiGatewayProxyResponse {
        self.apply_to(&mut response.headers);
        response
    }

    pub fn apply_to(&self, headers: &mut HeaderMap) {
        if let Some(origin) = &self.origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("ETag,X-Cache"),
            );
            if origin != "*" {
                headers.append(VARY, HeaderValue::from_static("Origin"));
            }
        }
    }

    /// The answer to an `OPTIONS` preflight.
    pub fn preflight(&self) -> ApiGatewayProxyResponse {
        let mut response = empty_response(StatusCode::NO_CONTENT);
        if self.origin.is_some() {
            let headers = &mut response.headers;
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(CORS_ALLOW_METHODS),
            );
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(CORS_ALLOW_HEADERS),
            );
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        self.apply(response)
    }
}

/// `PUT`/`POST`/`DELETE /items/{key}`. Handlers borrow the request: the caller (the Lambda runtime) owns the
/// event, and a read needs nothing from it by value.
pub async fn handle_write<S: ObjectStore>(
    writer: &Writer<S>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> ApiGatewayProxyResponse {
    write(writer, request, deadline)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// `GET /items/{key}`.
pub async fn handle_read<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> ApiGatewayProxyResponse {
    read(reader, request, deadline)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn write<S: ObjectStore>(
    writer: &Writer<S>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    const ALLOWED: &str = "PUT, POST, DELETE";
    let method = request.http_method.clone();
    if !matches!(method, Method::PUT | Method::POST | Method::DELETE) {
        return Err(ApiError::MethodNotAllowed {
            method,
            allow: ALLOWED,
        });
    }
    let key = item_key(request)?;
    let precondition = write_precondition(request)?;
    if method == Method::DELETE {
        return match writer.delete(&key, &precondition, deadline).await {
            Ok(()) => Ok(empty_response(StatusCode::NO_CONTENT)),
            Err(WriteError::NotFound) => Err(ApiError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        };
    }
    let body = request_body(request, writer.max_body_bytes())?;
    let written = writer.put(&key, body, &precondition, deadline).await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, header_value(&written.etag.quoted())?);
    let body = json!({ "key": key.as_str(), "etag": written.etag.as_str() });
    Ok(json_response(status, headers, body.to_string()))
}

/// The reader function's routes, told apart by API Gateway's `resource` (the local gateway sets it the same way).
pub const ROUTE_LIST: &str = "/items";
pub const ROUTE_BATCH_GET: &str = "/batch-get";
/// Most items one listing page holds, and the default.
pub const LIST_LIMIT_MAX: usize = 1000;
pub const LIST_LIMIT_DEFAULT: usize = 100;
/// Most keys one batch get takes.
pub const BATCH_GET_MAX: usize = 100;

async fn read<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    match request.resource.as_deref() {
        Some(ROUTE_LIST) => return list(reader, request, deadline).await,
        Some(ROUTE_BATCH_GET) => return batch_get(reader, request, deadline).await,
        _ => {}
    }
    if request.http_method != Method::GET {
        return Err(ApiError::MethodNotAllowed {
            method: request.http_method.clone(),
            allow: "GET",
        });
    }
    let key = item_key(request)?;
    let not_modified_if = read_precondition(request)?;
    let result = if consistent(request)? {
        reader.get_consistent(&key, deadline).await?
    } else {
        reader.get(&key, deadline).await?
    };
    reader.metrics().emit_read(result.cache);
    let mut headers = HeaderMap::new();
    headers.insert(X_CACHE, HeaderValue::from_static(result.cache.as_str()));
    let Some(object) = result.object else {
        let mut response = ApiError::NotFound(key.to_string()).into_response();
        response.headers.extend(headers);
        return Ok(response);
    };
    headers.insert(ETAG, header_value(&object.etag.quoted())?);
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

fn check_response_size(body: &str, advice: &'static str) -> Result<(), ApiError> {
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

/// `GET /items?prefix=&limit=&cursor=`: item keys from S3, the source of truth, one page at a time.
async fn list<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    if request.http_method != Method::GET {
        return Err(ApiError::MethodNotAllowed {
            method: request.http_method.clone(),
            allow: "GET",
        });
    }
    let query = &request.query_string_parameters;
    let prefix = query.first("prefix").unwrap_or_default();
    if prefix.len() > crate::key::MAX_KEY_BYTES || !prefix.chars().all(crate::key::xml_safe) {
        return Err(ApiError::InvalidQuery {
            name: "prefix",
            reason: "at most 512 bytes, no control characters, U+FFFE or U+FFFF",
        });
    }
    let limit = match query.first("limit") {
        None => LIST_LIMIT_DEFAULT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=LIST_LIMIT_MAX).contains(n))
            .ok_or(ApiError::InvalidQuery {
                name: "limit",
                reason: "a whole number from 1 to 1000",
            })?,
    };
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
    let listing = match reader.list(prefix, limit, token, deadline).await {
        // S3 answers 400 to a continuation token it never issued.
        Err(StoreError::Rejected { status: 400, .. }) => return Err(bad_cursor),
        other => other?,
    };
    let items: Vec<serde_json::Value> = listing
        .items
        .iter()
        .map(|item| {
            json!({
                "key": item.key.as_str(),
                "etag": item.etag.as_str(),
                "size": item.size,
                "lastModified": item.last_modified,
            })
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

/// `POST /batch-get` with `{"keys": [...]}`: up to 100 items in one request, from one pipelined cache lookup.
async fn batch_get<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    if request.http_method != Method::POST {
        return Err(ApiError::MethodNotAllowed {
            method: request.http_method.clone(),
            allow: "POST",
        });
    }
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
    let mut position = Vec::with_capacity(batch.keys.len());
    for (index, raw) in batch.keys.iter().enumerate() {
        let key =
            ItemKey::parse(raw).map_err(|source| ApiError::InvalidBatchKey { index, source })?;
        let at = match unique.iter().position(|k| *k == key) {
            Some(at) => at,
            None => {
                unique.push(key);
                unique.len() - 1
            }
        };
        position.push(at);
    }
    let results = reader.get_many(&unique, deadline).await?;
    let statuses: Vec<_> = results.iter().map(|r| r.cache).collect();
    reader
        .metrics()
        .emit("reader", &crate::metrics::for_reads(&statuses));
    let mut items = Vec::with_capacity(position.len());
    for at in position {
        let key = unique[at].as_str();
        let result = &results[at];
        items.push(match &result.object {
            None => json!({ "key": key, "found": false }),
            Some(object) => {
                let text = std::str::from_utf8(&object.body).map_err(|_| {
                    ApiError::Internal(format!("stored value for {key:?} is not UTF-8"))
                })?;
                let value =
                    serde_json::value::RawValue::from_string(text.to_owned()).map_err(|_| {
                        ApiError::Internal(format!("stored value for {key:?} is not JSON"))
                    })?;
                json!({
                    "key": key,
                    "found": true,
                    "etag": object.etag.as_str(),
                    "cache": result.cache.as_str(),
                    "value": value,
                })
            }
        });
    }
    let body = json!({ "items": items }).to_string();
    check_response_size(&body, "ask for fewer keys at a time")?;
    Ok(json_response(StatusCode::OK, HeaderMap::new(), body))
}

/// The `{key+}` path parameter, percent-decoded and checked against the key rules.
fn item_key(request: &ApiGatewayProxyRequest) -> Result<ItemKey, ApiError> {
    let raw = request
        .path_parameters
        .get("key")
        .ok_or(ApiError::MissingKey)?;
    Ok(ItemKey::from_path_param(raw)?)
}

/// The one value of a header, if sent; sending it twice is ambiguous and refused.
fn single_header<'r>(
    request: &'r ApiGatewayProxyRequest,
    name: &HeaderName,
    display: &'static str,
) -> Result<Option<&'r str>, ApiError> {
    let mut values = request.headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidHeader {
            name: display,
            reason: "sent more than once",
        });
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| ApiError::InvalidHeader {
            name: display,
            reason: "not visible ASCII",
        })
}

/// `If-None-Match: *` (create only) or `If-Match: "<etag>"` (replace or delete only that version).
fn write_precondition(request: &ApiGatewayProxyRequest) -> Result<Precondition, ApiError> {
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
enum KnownTags {
    Any,
    Some(Vec<Etag>),
}

impl KnownTags {
    /// Weak comparison, as RFC 9110 prescribes for If-None-Match.
    fn matches(&self, current: &Etag) -> bool {
        match self {
            KnownTags::Any => true,
            KnownTags::Some(tags) => tags.contains(current),
        }
    }
}

fn read_precondition(request: &ApiGatewayProxyRequest) -> Result<Option<KnownTags>, ApiError> {
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

/// `?consistent=true`: read S3 directly, for read-after-write.
fn consistent(request: &ApiGatewayProxyRequest) -> Result<bool, ApiError> {
    match request.query_string_parameters.first("consistent") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::InvalidQuery {
            name: "consistent",
            reason: "must be true or false",
        }),
    }
}

/// The request body as bytes, decoding base64 when API Gateway says it is encoded. The size limit is checked
/// before decoding, so an oversized body costs no allocation.
fn request_body(request: &ApiGatewayProxyRequest, limit: usize) -> Result<Bytes, ApiError> {
    let raw = request.body.as_deref().unwrap_or_default();
    if !request.is_base64_encoded {
        if raw.len() > limit {
            return Err(ApiError::BodyTooLarge {
                size: raw.len(),
                limit,
            });
        }
        return Ok(Bytes::copy_from_slice(raw.as_bytes()));
    }
    let approx = raw.len() / 4 * 3;
    if approx > limit.saturating_add(3) {
        return Err(ApiError::BodyTooLarge {
            size: approx,
            limit,
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| ApiError::InvalidBase64)?;
    if decoded.len() > limit {
        return Err(ApiError::BodyTooLarge {
            size: decoded.len(),
            limit,
        });
    }
    Ok(Bytes::from(decoded))
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|_| ApiError::Internal(format!("unrepresentable header value {value:?}")))
}

fn json_response(
    status: StatusCode,
    mut headers: HeaderMap,
    body: String,
) -> ApiGatewayProxyResponse {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status.as_u16());
    response.headers = headers;
    response.body = Some(Body::Text(body));
    response
}

fn empty_response(status: StatusCode) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status.as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    allow: "GET",
                },
                405,
                "method_not_allowed",
            ),
            (ApiError::NotFound("k".into()), 404, "not_found"),
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
            allow: "PUT, POST, DELETE",
        }
        .into_response();
        assert_eq!(response.headers[ALLOW], "PUT, POST, DELETE");
    }

    fn with_body(body: &str, base64: bool) -> ApiGatewayProxyRequest {
        let mut request = ApiGatewayProxyRequest::default();
        request.body = Some(body.to_owned());
        request.is_base64_encoded = base64;
        request
    }

    #[test]
    fn base64_bodies_are_decoded_and_checked() {
        assert_eq!(
            request_body(&with_body("eyJhIjoxfQ==", true), 100).unwrap(),
            Bytes::from_static(b"{\"a\":1}")
        );
        assert!(matches!(
            request_body(&with_body("not base64!", true), 100),
            Err(ApiError::InvalidBase64)
        ));
        assert!(matches!(
            request_body(&with_body(&"A".repeat(400), true), 100),
            Err(ApiError::BodyTooLarge { .. })
        ));
        assert!(matches!(
            request_body(&with_body(&"x".repeat(101), false), 100),
            Err(ApiError::BodyTooLarge { .. })
        ));
    }
}
