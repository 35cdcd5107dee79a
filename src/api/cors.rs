//! CORS for browser clients. An edge concern: the functions' entrypoints and the local gateway apply it to every
//! response; the handlers never see it.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
};
use http::{HeaderMap, StatusCode};

use crate::config::Config;

use super::empty_response;

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
                HeaderValue::from_static("ETag,X-Cache,X-S3kv-Writer,X-S3kv-Expires-At"),
            );
            if origin != "*" {
                super::caching::add_vary(headers, "Origin");
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
