//! How HTTP caches (a browser's above all) may keep each route's answers. Without a `Cache-Control` a browser
//! caches any answer with a `Last-Modified` for a tenth of its age (RFC 9111 §4.2.2), and then serves it without
//! asking us: the old value after a write, or a keyed read to a `fetch()` that sent no key or a revoked one.
//!
//! The policy, per route ([`Caching::of`]):
//! - keyed item reads (`GET /items/{key}`, `?version=` too) and `GET /schemas/{prefix}`: `private, no-cache` and
//!   `Vary: X-Api-Key`. The browser may keep a copy but asks us before every use, with the ETag; we check the key
//!   first and answer 304 (the copy is current), 200 (a newer value) or 403 (this key may not read it). Shared
//!   caches (proxies, CDNs) must not keep it at all.
//! - public reads (`GET /public/{key}`): `public, no-cache`. Anyone may keep a copy, and revalidates it each time,
//!   so a maintenance flag reaches every page on its next read.
//! - everything else (listings, batch gets, history, the change feed, writes) and every answer that never reached
//!   a route: `no-store`. These carry no ETag to revalidate with, or change state.
//!
//! Applied by [`super::serve_read`] and [`super::handle_write`] to every answer, errors included (a 404 is
//! cacheable by default too), so the functions and s3kv-local send the same headers.

use http::header::{HeaderValue, CACHE_CONTROL, VARY};
use http::HeaderMap;

use crate::routes::{Operation, Route};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Kept by the caller's own cache only and revalidated before every use; the answer depends on the key.
    PrivateRevalidate,
    /// Kept by any cache and revalidated before every use; the same for everyone.
    PublicRevalidate,
    NoStore,
}

impl Caching {
    /// The policy for a route; `None` (no route matched) is never stored.
    pub fn of(route: Option<&Route>) -> Self {
        match route.map(|r| r.operation) {
            Some(Operation::GetItem | Operation::GetSchema) => Caching::PrivateRevalidate,
            Some(Operation::GetPublicItem) => Caching::PublicRevalidate,
            _ => Caching::NoStore,
        }
    }

    pub fn cache_control(self) -> &'static str {
        match self {
            Caching::PrivateRevalidate => "private, no-cache",
            Caching::PublicRevalidate => "public, no-cache",
            Caching::NoStore => "no-store",
        }
    }

    pub fn apply(self, headers: &mut HeaderMap) {
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control()),
        );
        if self == Caching::PrivateRevalidate {
            add_vary(headers, "X-Api-Key");
        }
    }
}

/// Adds `token` to the one `Vary` header unless it is there already, so layers that each add theirs (caching,
/// CORS) never send a token twice or a second `Vary` line.
pub(super) fn add_vary(headers: &mut HeaderMap, token: &'static str) {
    let current = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>();
    if current.iter().any(|t| t.eq_ignore_ascii_case(token)) {
        return;
    }
    let merged = current
        .iter()
        .map(String::as_str)
        .chain([token])
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&merged) {
        headers.insert(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;

    #[test]
    fn only_keyed_item_and_schema_reads_vary_by_key_and_only_public_reads_are_shared() {
        for route in ROUTES {
            let mut headers = HeaderMap::new();
            Caching::of(Some(route)).apply(&mut headers);
            let control = headers[CACHE_CONTROL].to_str().unwrap();
            let expected = match (route.operation, route.method.as_str()) {
                (Operation::GetItem | Operation::GetSchema, _) => "private, no-cache",
                (Operation::GetPublicItem, _) => "public, no-cache",
                _ => "no-store",
            };
            assert_eq!(control, expected, "{:?}", route.operation);
            assert_eq!(
                headers.get(VARY).is_some(),
                expected.starts_with("private"),
                "{:?}",
                route.operation
            );
        }
        let mut unrouted = HeaderMap::new();
        Caching::of(None).apply(&mut unrouted);
        assert_eq!(unrouted[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn vary_tokens_are_merged_into_one_header_once_each() {
        let mut headers = HeaderMap::new();
        add_vary(&mut headers, "X-Api-Key");
        add_vary(&mut headers, "Origin");
        add_vary(&mut headers, "Origin");
        add_vary(&mut headers, "x-api-key");
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        assert_eq!(headers[VARY], "X-Api-Key, Origin");
    }
}
