//! The console's API calls, sent on to the endpoint with the key: only the API's routes, only the headers the
//! console needs each way, and the body as it is. The key is added here and nothing the page sends can name
//! another host or change the key.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, StatusCode};

/// The routes the console uses, by their first path segment; anything else (the public route, a path that would
/// climb out of the stage) is refused rather than forwarded with the key.
const ROUTES: &[&str] = &[
    "items",
    "batch-get",
    "versions",
    "restore",
    "schemas",
    "changes",
];

/// Request headers passed on: the body's type and the conditions.
const REQUEST_HEADERS: &[&str] = &["content-type", "if-match", "if-none-match"];

/// Answer headers passed back: what the console reads (ETag, writer, time, cache) and Retry-After.
const ANSWER_HEADERS: &[&str] = &[
    "content-type",
    "etag",
    "last-modified",
    "x-s3kv-writer",
    "x-s3kv-expires-at",
    "x-cache",
    "retry-after",
];

pub struct Forward {
    http: reqwest::Client,
    endpoint: String,
    api_key: Option<String>,
}

/// An answer to give the page: status, headers, body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Forward {
    pub fn new(endpoint: &str, api_key: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            // Long enough for a 25 s wait on the change feed (live updates), with room for the network.
            .timeout(std::time::Duration::from_secs(60))
            // A redirect would carry the key wherever it points; the API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("s3kv-cli/", env!("CARGO_PKG_VERSION"), " console"))
            .build()
            .expect("a client with these settings always builds");
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            api_key,
        }
    }

    /// `path` is what follows `/console/api/`, still percent-encoded, and `query` the raw query string.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Answer {
        if let Err(why) = allowed(&method, path) {
            return refusal(StatusCode::FORBIDDEN, "not_forwarded", &why);
        }
        let mut url = format!("{}/{path}", self.endpoint);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        let mut request = self.http.request(method, &url);
        for name in REQUEST_HEADERS {
            if let Some(value) = headers.get(*name) {
                request = request.header(*name, value);
            }
        }
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return refusal(
                    StatusCode::BAD_GATEWAY,
                    "unreachable",
                    &format!("the API at {} did not answer: {error}", self.endpoint),
                )
            }
        };
        let status = response.status();
        let mut answer_headers = HeaderMap::new();
        for name in ANSWER_HEADERS {
            if let Some(value) = response.headers().get(*name) {
                answer_headers.insert(HeaderName::from_static(name), value.clone());
            }
        }
        match response.bytes().await {
            Ok(body) => Answer {
                status,
                headers: answer_headers,
                body,
            },
            Err(error) => refusal(
                StatusCode::BAD_GATEWAY,
                "unreachable",
                &format!("the API's answer was cut off: {error}"),
            ),
        }
    }
}

/// Whether the console may send `method path` on: one of the API's routes and methods, and no dot segment that
/// would lead the URL out of the stage once normalised.
fn allowed(method: &Method, path: &str) -> Result<(), String> {
    if ![Method::GET, Method::PUT, Method::POST, Method::DELETE].contains(method) {
        return Err(format!("{method} is not forwarded to the API"));
    }
    let first = path.split('/').next().unwrap_or_default();
    if !ROUTES.contains(&first) {
        return Err(format!("/{first} is not a route the console forwards"));
    }
    let dot_segment = path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    });
    if dot_segment || path.contains('\\') {
        return Err("a path with . or .. segments is not forwarded".into());
    }
    Ok(())
}

/// An answer of the console's own, in the API's error shape so the page shows it like any other.
pub fn refusal(status: StatusCode, code: &str, message: &str) -> Answer {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Answer {
        status,
        headers,
        body: Bytes::from(serde_json::json!({ "error": code, "message": message }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_routes_are_forwarded() {
        assert!(allowed(&Method::GET, "items/flags/a").is_ok());
        assert!(allowed(&Method::GET, "items/.s3kv-console/permission-probe").is_ok());
        assert!(allowed(&Method::POST, "restore/flags/a").is_ok());
        assert!(allowed(&Method::GET, "public/flags/a").is_err());
        assert!(allowed(&Method::GET, "items/../../elsewhere").is_err());
        assert!(allowed(&Method::GET, "items/%2E%2e/x").is_err());
        assert!(allowed(&Method::PATCH, "items/a").is_err());
        assert!(allowed(&Method::GET, "").is_err());
    }
}
