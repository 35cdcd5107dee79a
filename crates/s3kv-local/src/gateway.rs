//! The API as API Gateway presents it: the same route, the same `x-api-key` check (on every route but the public
//! one), and each HTTP request turned into the `ApiGatewayProxyRequest` a REST API would send (key still
//! percent-encoded, the key's id in `requestContext.identity.apiKeyId`, a request id), handed to the very
//! handlers the Lambda functions run, which decide what the key may do.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;

use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::api;
use s3kv::read::Reader;
use s3kv::routes::{self, Function, Operation};
use s3kv::write::Writer;

use crate::timeouts::{BodyTimedOut, IdleBody};

/// API Gateway's own payload limit; the writer applies the configured, smaller one.
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;
/// API Gateway's integration timeout.
const TIMEOUT: Duration = Duration::from_secs(29);
/// API Gateway's limit on a request line (with the headers; the URI alone is checked here). hyper answers URIs over
/// 64 KiB itself, with an empty 414.
const MAX_URI: usize = 10 * 1024;

pub struct Gateway {
    /// Every x-api-key value API Gateway would accept, with its key id.
    pub keys: Vec<(String, String)>,
    /// What each key id may do, as the functions are configured.
    pub access: s3kv::access::Access,
    pub cors: api::Cors,
    /// Where items live, to refuse keys the local S3 endpoint could not store (see [`crate::s3_endpoint::storable`]).
    pub bucket: String,
    pub key_map: s3kv::key::KeyMap,
    /// The S3 endpoint's data directory, to refuse keys that collide with others on its file system (see
    /// [`crate::s3_endpoint::conflict`]) before the write fails there.
    pub data_dir: std::path::PathBuf,
    /// How long a request body may stop arriving before the request is answered 408.
    pub read_timeout: Duration,
    pub writer: Writer<S3Store>,
    pub reader: Reader<S3Store, ValkeyCache>,
    /// Push subscriptions, served on this address at [`crate::push::PATH`] like AppSync's realtime endpoint.
    pub push: Arc<crate::push::Hub>,
}

impl Gateway {
    pub async fn serve(
        self: Arc<Self>,
        mut request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        if let Some(upgrade) = self.push.upgrade(&mut request) {
            return Ok(upgrade);
        }
        // The console's files, which need no key (the page asks for one).
        if let Some(page) = crate::console::serve(&request) {
            return Ok(page);
        }
        let mut response = self.handle(request).await;
        self.cors.apply_to(response.headers_mut());
        Ok(response)
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().to_string().len() > MAX_URI {
            return plain(
                StatusCode::URI_TOO_LONG,
                json!({ "error": "uri_too_long", "message": format!("the request URI is over {MAX_URI} bytes, API Gateway's limit") }),
            );
        }
        let path = request.uri().path().to_owned();
        let route = routes::match_path(&path);
        // Preflights carry no API key; API Gateway answers them itself (a mock integration, no key required).
        if request.method() == Method::OPTIONS && route.is_some() {
            return to_http(self.cors.preflight());
        }
        // API Gateway checks the key before routing, and answers 403 for a missing or wrong one, except on a
        // method that does not require one (the public read), where it passes no key id on.
        let sent = request
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok());
        let key_id = self
            .keys
            .iter()
            .find(|(value, _)| Some(value.as_str()) == sent)
            .map(|(_, id)| id.clone());
        let keyless = route
            .and_then(|(resource, _)| routes::find(resource, request.method()))
            .is_some_and(|r| !r.needs_api_key());
        if key_id.is_none() && !keyless {
            return plain(StatusCode::FORBIDDEN, json!({ "message": "Forbidden" }));
        }
        let Some((resource, encoded_key)) = route else {
            return to_http(api::ApiError::NoRoute(path).into_response());
        };
        let method = request.method().clone();
        let request_query = request.uri().query().map(str::to_owned);
        // Only these methods have integrations; API Gateway answers any other itself, with 403.
        let Some(target) = routes::find(resource, &method) else {
            return plain(
                StatusCode::FORBIDDEN,
                json!({ "message": "Missing Authentication Token" }),
            );
        };
        // The object a write would store, so a name too long for the file system here is refused as a bad key.
        let object_key = match (encoded_key, target.operation) {
            (Some(encoded), Operation::PutItem | Operation::PostItem | Operation::RestoreItem) => {
                s3kv::key::ItemKey::from_path_param(encoded)
                    .ok()
                    .map(|key| self.key_map.object_key(&key))
            }
            (Some(encoded), Operation::PutSchema) => s3kv::key::KeyPrefix::from_path_param(encoded)
                .ok()
                .map(|prefix| self.key_map.schema_object_key(&prefix)),
            _ => None,
        };
        if let Some(object_key) = object_key {
            if !crate::s3_endpoint::storable(&self.bucket, &object_key) {
                return plain(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "invalid_key", "message": "s3kv-local keeps objects in files named after their keys, and this key is too long for the file system here; in AWS, keys of up to 512 bytes work" }),
                );
            }
            if let Some(reason) =
                crate::s3_endpoint::conflict(&self.data_dir, &self.bucket, &object_key)
            {
                return plain(
                    StatusCode::CONFLICT,
                    json!({ "error": "key_conflict", "message": reason }),
                );
            }
        }
        let headers = request.headers().clone();
        let body = IdleBody::new(request.into_body(), self.read_timeout);
        let body = match Limited::new(body, MAX_PAYLOAD).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return body_error(&*error),
        };
        let mut event = ApiGatewayProxyRequest::default();
        event.resource = Some(resource.to_owned());
        event.path = Some(path.clone());
        event.http_method = method.clone();
        event.headers = headers;
        event.query_string_parameters = query_parameters(request_query.as_deref());
        event.request_context.request_id = Some(request_id());
        if !keyless {
            event.request_context.identity.api_key_id = key_id;
        }
        if let Some(encoded_key) = encoded_key {
            event.path_parameters =
                HashMap::from([(routes::KEY_PARAM.to_owned(), encoded_key.to_owned())]);
        }
        if !body.is_empty() {
            match std::str::from_utf8(&body) {
                Ok(text) => event.body = Some(text.to_owned()),
                Err(_) => {
                    event.body = Some(base64::engine::general_purpose::STANDARD.encode(&body));
                    event.is_base64_encoded = true;
                }
            }
        }
        let deadline = Instant::now() + TIMEOUT;
        let response = match target.function {
            Function::Reader => {
                api::handle_read(&self.reader, &self.access, &event, deadline).await
            }
            Function::Writer => {
                api::handle_write(&self.writer, &self.access, &event, deadline).await
            }
        };
        to_http(response)
    }
}

/// A request id unique in this process, shaped like API Gateway's (a UUID).
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        start as u32,
        (start >> 32) as u16,
        (n >> 48) & 0xfff,
        (n >> 36) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// The query string as API Gateway hands it over: decoded, repeated names kept.
fn query_parameters(query: Option<&str>) -> aws_lambda_events::query_map::QueryMap {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            s3kv::percent::decode(s, s3kv::percent::Encoding::Form).unwrap_or_else(|_| s.to_owned())
        };
        map.entry(decode(name)).or_default().push(decode(value));
    }
    map.into()
}

fn to_http(response: ApiGatewayProxyResponse) -> Response<Full<Bytes>> {
    let body = match response.body {
        Some(Body::Text(text)) if response.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Bytes::from)
                .unwrap_or_default()
        }
        Some(Body::Text(text)) => Bytes::from(text),
        Some(Body::Binary(bytes)) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    let mut http = Response::new(Full::new(body));
    *http.status_mut() = u16::try_from(response.status_code)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    *http.headers_mut() = response.headers;
    http
}

/// What a body that could not be read is answered: too long, too slow, or not valid HTTP framing.
fn body_error(error: &(dyn std::error::Error + 'static)) -> Response<Full<Bytes>> {
    if error.is::<http_body_util::LengthLimitError>() {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "message": "Request Too Long" }),
        );
    }
    if let Some(timed_out) = error.downcast_ref::<BodyTimedOut>() {
        return plain(
            StatusCode::REQUEST_TIMEOUT,
            json!({ "error": "body_timeout", "message": timed_out.to_string() }),
        );
    }
    plain(
        StatusCode::BAD_REQUEST,
        json!({ "error": "malformed_body", "message": format!("the request body could not be read: {error}") }),
    )
}

/// An answer of the gateway's own, as API Gateway's gateway responses: never cached, like every error the
/// functions send (the template sets the same header on them).
fn plain(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static(api::Caching::NoStore.cache_control()),
    );
    response
}
