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
use http::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, ETAG};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use thiserror::Error;

use crate::document::DocumentError;
use crate::key::{ItemKey, KeyError};
use crate::ports::{Cache, ObjectStore, StoreError};
use crate::read::Reader;
use crate::write::{WriteError, Writer};

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
    #[error("storage is unavailable, try again shortly: {0}")]
    Unavailable(StoreError),
    #[error("storage rejected the request: {0}")]
    Upstream(StoreError),
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
            | ApiError::InvalidBase64 => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingKey | ApiError::InvalidKey(_) => "invalid_key",
            ApiError::EmptyBody => "empty_body",
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::InvalidBase64 => "invalid_body",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Upstream(_) => "upstream_error",
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
            WriteError::Store(e) => e.into(),
        }
    }
}

/// `PUT`/`POST`/`DELETE /items/{key}`.
pub async fn handle_write<S: ObjectStore>(
    writer: &Writer<S>,
    request: ApiGatewayProxyRequest,
    deadline: Instant,
) -> ApiGatewayProxyResponse {
    write(writer, request, deadline)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// `GET /items/{key}`.
pub async fn handle_read<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    request: ApiGatewayProxyRequest,
    deadline: Instant,
) -> ApiGatewayProxyResponse {
    read(reader, request, deadline)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn write<S: ObjectStore>(
    writer: &Writer<S>,
    request: ApiGatewayProxyRequest,
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
    let key = item_key(&request)?;
    if method == Method::DELETE {
        return match writer.delete(&key, deadline).await {
            Ok(()) => Ok(empty_response(StatusCode::NO_CONTENT)),
            Err(WriteError::NotFound) => Err(ApiError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        };
    }
    let body = request_body(&request, writer.max_body_bytes())?;
    let written = writer.put(&key, body, deadline).await?;
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

async fn read<S: ObjectStore, C: Cache>(
    reader: &Reader<S, C>,
    request: ApiGatewayProxyRequest,
    deadline: Instant,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    if request.http_method != Method::GET {
        return Err(ApiError::MethodNotAllowed {
            method: request.http_method.clone(),
            allow: "GET",
        });
    }
    let key = item_key(&request)?;
    let result = reader.get(&key, deadline).await?;
    let mut headers = HeaderMap::new();
    headers.insert(X_CACHE, HeaderValue::from_static(result.cache.as_str()));
    let Some(object) = result.object else {
        let mut response = ApiError::NotFound(key.to_string()).into_response();
        response.headers.extend(headers);
        return Ok(response);
    };
    headers.insert(ETAG, header_value(&object.etag.quoted())?);
    let text = String::from_utf8(Vec::from(object.body))
        .map_err(|_| ApiError::Internal(format!("stored value for {key:?} is not UTF-8")))?;
    Ok(json_response(StatusCode::OK, headers, text))
}

/// The `{key+}` path parameter, percent-decoded and checked against the key rules.
fn item_key(request: &ApiGatewayProxyRequest) -> Result<ItemKey, ApiError> {
    let raw = request
        .path_parameters
        .get("key")
        .ok_or(ApiError::MissingKey)?;
    Ok(ItemKey::from_path_param(raw)?)
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
