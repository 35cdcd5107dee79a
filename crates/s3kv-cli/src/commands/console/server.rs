//! The console's local HTTP server: the app's files, `session` (what the page shows about where it is
//! connected), and `api/...`, forwarded. Every request must name this server in `Host` (a DNS-rebound name is
//! refused); `session` and `api/` also need this run's token in `x-s3kv-console-token` and, when the browser sends
//! an `Origin` or `Sec-Fetch-Site`, this very origin. No CORS headers are ever sent, so another site's page can
//! neither set the token header (its preflight is refused) nor read an answer.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::assets;
use super::forward::{refusal, Answer, Forward};

pub const TOKEN_HEADER: &str = "x-s3kv-console-token";
/// API Gateway's own payload limit: nothing larger could be written anyway.
const MAX_BODY: usize = 10 * 1024 * 1024;

pub struct State {
    pub port: u16,
    pub token: String,
    pub forward: Forward,
    pub endpoint: String,
}

pub async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if !state.own_host(request.headers()) {
        return answer(refusal(
            StatusCode::FORBIDDEN,
            "wrong_host",
            "this server answers only to 127.0.0.1 and localhost at its own port",
        ));
    }
    let path = request.uri().path().to_owned();
    if path == "/" || path == "/console" {
        return redirect("/console/");
    }
    let Some(rest) = path.strip_prefix("/console/") else {
        return answer(refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            "the console is at /console/",
        ));
    };
    if rest == "session" || rest.starts_with("api/") {
        if let Err(why) = state.trusted(request.headers()) {
            return answer(refusal(StatusCode::FORBIDDEN, "not_this_console", why));
        }
    }
    if rest == "session" {
        let body = serde_json::json!({ "endpoint": state.endpoint });
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return answer(Answer {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body.to_string()),
        });
    }
    if let Some(api_path) = rest.strip_prefix("api/") {
        let api_path = api_path.to_owned();
        let method = request.method().clone();
        let query = request.uri().query().map(str::to_owned);
        let headers = request.headers().clone();
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return answer(refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_unreadable",
                    &format!("the request body could not be read (over 10 MiB?): {error}"),
                ))
            }
        };
        let forwarded = state
            .forward
            .send(method, &api_path, query.as_deref(), &headers, body)
            .await;
        return answer(forwarded);
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return answer(refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the console's files are read with GET",
        ));
    }
    match assets::find(rest) {
        Some(asset) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            answer(Answer {
                status: StatusCode::OK,
                headers,
                body: Bytes::from_static(asset.body.as_bytes()),
            })
        }
        None => answer(refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such file in the console",
        )),
    }
}

impl State {
    /// `Host` names this server: what a page on a DNS-rebound name (evil.example resolving to 127.0.0.1) cannot
    /// send.
    fn own_host(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
        ]
        .iter()
        .any(|own| own.eq_ignore_ascii_case(host))
    }

    /// This run's token, from a page on this server's own origin.
    fn trusted(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let sent = headers
            .get(TOKEN_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !same_bytes(sent, self.token.as_bytes()) {
            return Err("this request does not carry this console's token; open the URL `s3kv console` printed");
        }
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let own = [
                format!("http://127.0.0.1:{}", self.port),
                format!("http://localhost:{}", self.port),
            ];
            if !own.iter().any(|o| o.as_bytes() == origin.as_bytes()) {
                return Err("requests from other sites are refused");
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            if site.as_bytes() != b"same-origin" {
                return Err("requests from other sites are refused");
            }
        }
        Ok(())
    }
}

/// Compares in time that does not depend on where the first difference is, so the token cannot be guessed a byte
/// at a time.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    for (name, value) in assets::SECURITY_HEADERS {
        response
            .headers_mut()
            .insert(*name, HeaderValue::from_static(value));
    }
    response
}

fn redirect(to: &'static str) -> Response<Full<Bytes>> {
    let mut response = answer(Answer {
        status: StatusCode::FOUND,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    });
    response
        .headers_mut()
        .insert(http::header::LOCATION, HeaderValue::from_static(to));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        // reqwest is built without a TLS provider of its own (see Cargo.toml); main() installs this one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        State {
            port: 4242,
            token: "t0k3n".into(),
            forward: Forward::new("http://127.0.0.1:1", None),
            endpoint: "http://127.0.0.1:1".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn only_its_own_host_is_served() {
        let s = state();
        assert!(s.own_host(&headers(&[("host", "127.0.0.1:4242")])));
        assert!(s.own_host(&headers(&[("host", "localhost:4242")])));
        assert!(!s.own_host(&headers(&[("host", "evil.example:4242")])));
        assert!(!s.own_host(&headers(&[("host", "127.0.0.1:4243")])));
        assert!(!s.own_host(&HeaderMap::new()));
    }

    #[test]
    fn api_calls_need_the_token_from_its_own_origin() {
        let s = state();
        assert!(s.trusted(&headers(&[(TOKEN_HEADER, "t0k3n")])).is_ok());
        assert!(s
            .trusted(&headers(&[
                (TOKEN_HEADER, "t0k3n"),
                ("origin", "http://127.0.0.1:4242"),
                ("sec-fetch-site", "same-origin"),
            ]))
            .is_ok());
        assert!(s.trusted(&HeaderMap::new()).is_err());
        assert!(s.trusted(&headers(&[(TOKEN_HEADER, "t0k3m")])).is_err());
        assert!(s
            .trusted(&headers(&[
                (TOKEN_HEADER, "t0k3n"),
                ("origin", "https://evil.example")
            ]))
            .is_err());
        assert!(s
            .trusted(&headers(&[
                (TOKEN_HEADER, "t0k3n"),
                ("sec-fetch-site", "cross-site")
            ]))
            .is_err());
    }
}
