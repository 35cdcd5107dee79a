//! The HTTP contract: API Gateway REST proxy requests in, proxy responses out.
//!
//! This is the only place that knows HTTP: dispatch by [`crate::routes`], reading the `{key+}` path parameter
//! and the body, and turning every outcome and every error into a status and a JSON body (`{"error",
//! "message"}`, `error`). The use cases below it speak in domain terms only. Metrics and CORS are the
//! entrypoints' business: a handler reports which cache answered ([`Served`]) and the edge counts it.
//! Authorization is checked here, first: the route's [`crate::access::Permission`] against the caller's key,
//! then each item key against the key's prefixes, before any S3 or Valkey call.

mod batch;
mod caching;
mod conditions;
mod cors;
mod error;
mod history;
mod items;
mod listing;
mod ofrep;
mod schemas;
mod watch;

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};

use crate::access::{Access, Caller};
use crate::audit::Author;
use crate::key::ItemKey;
use crate::ports::{Cache, Feed, ObjectStore};
use crate::read::{CacheStatus, Reader};
use crate::routes::{self, Function, Operation, Route};
use crate::write::{Writer, Written};

pub use caching::Caching;
pub use cors::{Cors, CORS_ALLOW_HEADERS, CORS_ALLOW_METHODS};
pub use error::ApiError;
pub use history::{VERSIONS_LIMIT_DEFAULT, VERSIONS_LIMIT_MAX};

/// Most items one listing page holds, and the default.
pub const LIST_LIMIT_MAX: usize = 1000;
pub const LIST_LIMIT_DEFAULT: usize = 100;
/// Most keys one batch get takes.
pub const BATCH_GET_MAX: usize = 100;

/// A reader response and what the cache did for it, for the edge's metrics.
#[derive(Debug)]
pub struct Served {
    pub response: ApiGatewayProxyResponse,
    /// One status per item read (none for a listing or an error).
    pub cache: Vec<CacheStatus>,
}

/// `PUT`/`POST`/`DELETE /items/{key}`, `POST /restore/{key}`, and the `/schemas` routes. Handlers borrow the request: the caller (the Lambda runtime) owns the
/// event, and a read needs nothing from it by value.
pub async fn handle_write<S: ObjectStore>(
    writer: &Writer<S>,
    access: &Access,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> ApiGatewayProxyResponse {
    let route = route_of(request);
    let result = async {
        let (route, caller) = authorized(access, request, route, Function::Writer)?;
        match route.operation {
            Operation::DeleteItem => items::delete(writer, &caller, request, deadline).await,
            Operation::RestoreItem => history::restore(writer, &caller, request, deadline).await,
            Operation::ListSchemas => schemas::list(writer, &caller, deadline).await,
            Operation::GetSchema => schemas::get(writer, &caller, request, deadline).await,
            Operation::PutSchema => schemas::put(writer, &caller, request, deadline).await,
            Operation::DeleteSchema => schemas::delete(writer, &caller, request, deadline).await,
            _ => items::put(writer, &caller, request, deadline).await,
        }
    };
    let mut response = result.await.unwrap_or_else(ApiError::into_response);
    Caching::of(route).apply(&mut response.headers);
    response
}

/// The reader's routes: `GET /items/{key}`, `GET /items`, `POST /batch-get`, `GET /public/{key}`,
/// `GET /versions/{key}`, `GET /changes`, and OpenFeature's (OFREP) evaluations.
pub async fn handle_read<S: ObjectStore, C: Cache + Feed>(
    reader: &Reader<S, C>,
    access: &Access,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> ApiGatewayProxyResponse {
    serve_read(reader, access, request, deadline).await.response
}

/// [`handle_read`], with the cache statuses the reader's entrypoint turns into metrics.
pub async fn serve_read<S: ObjectStore, C: Cache + Feed>(
    reader: &Reader<S, C>,
    access: &Access,
    request: &ApiGatewayProxyRequest,
    deadline: Instant,
) -> Served {
    let mut cache = Vec::new();
    let route = route_of(request);
    let result = async {
        let (route, caller) = authorized(access, request, route, Function::Reader)?;
        // The reader's timeout leaves room for the longest wait; a request that does not wait gets the budget
        // of the other functions, so a slow S3 is still a 503 well before API Gateway's 504.
        let quick = quick(deadline);
        match route.operation {
            Operation::ListItems => listing::list(reader, &caller, request, quick).await,
            Operation::ListVersions => history::versions(reader, &caller, request, quick).await,
            Operation::ListChanges => watch::changes(reader, &caller, request, deadline).await,
            Operation::BatchGet => {
                batch::batch_get(reader, &caller, request, quick, &mut cache).await
            }
            Operation::EvaluateFlag | Operation::EvaluatePublicFlag => {
                ofrep::evaluate_one(reader, &caller, request, quick, &mut cache).await
            }
            Operation::EvaluateFlags | Operation::EvaluatePublicFlags => {
                ofrep::evaluate_all(reader, &caller, request, quick, &mut cache).await
            }
            _ => items::get(reader, &caller, request, deadline, &mut cache).await,
        }
    };
    let mut response = result.await.unwrap_or_else(ApiError::into_response);
    Caching::of(route).apply(&mut response.headers);
    Served { response, cache }
}

/// How long a request that does not wait may take, at most.
const QUICK_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// `deadline`, or sooner: [`QUICK_BUDGET`] from now.
fn quick(deadline: Instant) -> Instant {
    deadline.min(Instant::now() + QUICK_BUDGET)
}

/// The route table's row for this request. API Gateway sends `resource`; a request without one is taken as the
/// item route.
fn route_of(request: &ApiGatewayProxyRequest) -> Option<&'static Route> {
    let resource = request.resource.as_deref().unwrap_or(routes::ITEM);
    routes::find(resource, &request.http_method)
}

/// `route` if `function` serves it, and its caller if the caller's key allows the route.
fn authorized<'a>(
    access: &'a Access,
    request: &'a ApiGatewayProxyRequest,
    route: Option<&'static Route>,
    function: Function,
) -> Result<(&'static Route, Caller<'a>), ApiError> {
    let resource = request.resource.as_deref().unwrap_or(routes::ITEM);
    let route = match route {
        Some(route) if route.function == function => route,
        _ if !routes::exists(resource) => return Err(ApiError::NoRoute(resource.to_owned())),
        _ => {
            return Err(ApiError::MethodNotAllowed {
                method: request.http_method.clone(),
                allow: routes::allow(resource, function),
            })
        }
    };
    let key_id = request.request_context.identity.api_key_id.as_deref();
    Ok((route, access.authorize(key_id, route.permission)?))
}

/// Who is writing, for the object's audit metadata.
fn author(caller: &Caller<'_>, request: &ApiGatewayProxyRequest) -> Author {
    Author {
        key_id: caller.key_id().map(str::to_owned),
        key_name: caller.key_name().map(str::to_owned),
        request_id: request.request_context.request_id.clone(),
        restored_from: None,
        expires: None,
    }
}

/// The `{key+}` path parameter, percent-decoded and checked against the key rules, if the caller may touch it.
fn item_key(request: &ApiGatewayProxyRequest, caller: &Caller<'_>) -> Result<ItemKey, ApiError> {
    let raw = request
        .path_parameters
        .get(routes::KEY_PARAM)
        .ok_or(ApiError::MissingKey)?;
    let key = ItemKey::from_path_param(raw)?;
    if !caller.covers(key.as_str()) {
        return Err(caller.outside(key.as_str()).into());
    }
    Ok(key)
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

/// A whole-number query parameter within `range`, `default` when absent; `reason` says what is allowed.
fn number_param(
    request: &ApiGatewayProxyRequest,
    name: &'static str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
    reason: &'static str,
) -> Result<u64, ApiError> {
    match request.query_string_parameters.first(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or(ApiError::InvalidQuery { name, reason }),
    }
}

/// The answer to a write: 201 when nothing was there before, 200 when it replaced something, with the new ETag.
fn written_response(
    written: &Written,
    body: serde_json::Value,
) -> Result<ApiGatewayProxyResponse, ApiError> {
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::ETAG, header_value(&written.etag.quoted())?);
    Ok(json_response(status, headers, body.to_string()))
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
