//! The console (clients/console) at `/console/`, on the API's own address: the same files `s3kv console` serves,
//! compiled in from the same place. Here the page calls the API straight, same origin, with a key the person types
//! in and the page keeps in memory only (a reload forgets it): s3kv-local has no session to hide a key behind,
//! and holding its full-access key server-side would let any page that can reach 127.0.0.1 write through it.

#[path = "../../../clients/console/assets.rs"]
mod assets;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

/// Where the console lives; not an API route, so nothing the API serves is shadowed.
pub const PATH: &str = "/console";

/// The console's answer for a request under [`PATH`], or `None` for every other request (the API's).
pub fn serve<B>(request: &Request<B>) -> Option<Response<Full<Bytes>>> {
    let path = request.uri().path();
    if path == PATH {
        return Some(answer(StatusCode::FOUND, None, Some("/console/")));
    }
    let name = path.strip_prefix(PATH)?.strip_prefix('/')?;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Some(answer(StatusCode::METHOD_NOT_ALLOWED, None, None));
    }
    Some(match assets::find(name) {
        Some(asset) => answer(StatusCode::OK, Some(asset), None),
        None => answer(StatusCode::NOT_FOUND, None, None),
    })
}

fn answer(
    status: StatusCode,
    asset: Option<&'static assets::Asset>,
    location: Option<&'static str>,
) -> Response<Full<Bytes>> {
    let body = asset.map_or(Bytes::new(), |a| Bytes::from_static(a.body.as_bytes()));
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(asset) = asset {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    if let Some(location) = location {
        headers.insert(http::header::LOCATION, HeaderValue::from_static(location));
    }
    for (name, value) in assets::SECURITY_HEADERS {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    response
}
