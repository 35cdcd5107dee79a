//! [`KeySource`] over API Gateway's `GetApiKeys` (`GET /apikeys?includeValues=true&limit=500&position=…`, signed
//! for service `apigateway`; the answer is `{"item": [{"id", "value", "enabled", …}], "position"}`, API Gateway
//! API reference, <https://docs.aws.amazon.com/apigateway/latest/api/API_GetApiKeys.html>). The authorizer's
//! role may `apigateway:GET` on `/apikeys` only. Every key of the account and region is listed; a key that no
//! grant names is then refused by the grants, as the HTTP API refuses it.

use std::collections::HashMap;

use serde::Deserialize;

use super::signed_http::SignedHttp;
use crate::push::authorizer::{KeySource, KeySourceError};

/// At most this many pages (50,000 keys, API Gateway's default quota is 10,000 per region).
const MAX_PAGES: usize = 100;

pub struct ApiGatewayKeys {
    http: SignedHttp,
    endpoint: String,
}

impl ApiGatewayKeys {
    /// API Gateway's regional endpoint for the signer's region.
    pub fn new(http: SignedHttp) -> Self {
        let endpoint = format!("https://apigateway.{}.amazonaws.com", http.region());
        Self::with_endpoint(http, &endpoint)
    }

    pub fn with_endpoint(http: SignedHttp, endpoint: &str) -> Self {
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    item: Vec<Key>,
    position: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Key {
    id: String,
    value: Option<String>,
    #[serde(default)]
    enabled: bool,
}

/// Enabled keys as (value, id), and where the next page starts.
pub type KeyPage = (Vec<(String, String)>, Option<String>);

/// One page's enabled keys and where the next page starts.
pub fn parse_page(body: &[u8]) -> Result<KeyPage, String> {
    let page: Page =
        serde_json::from_slice(body).map_err(|e| format!("not a GetApiKeys answer: {e}"))?;
    let keys = page
        .item
        .into_iter()
        .filter(|k| k.enabled)
        .filter_map(|k| Some((k.value?, k.id)))
        .collect();
    Ok((keys, page.position.filter(|p| !p.is_empty())))
}

impl KeySource for ApiGatewayKeys {
    async fn fetch(&self) -> Result<HashMap<String, String>, KeySourceError> {
        let mut keys = HashMap::new();
        let mut position: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = format!("{}/apikeys?includeValues=true&limit=500", self.endpoint);
            if let Some(position) = &position {
                url.push_str("&position=");
                url.push_str(&crate::percent::encode_path(position).replace('/', "%2F"));
            }
            let answer = self
                .http
                .send(
                    "apigateway",
                    "GET",
                    &url,
                    &[("accept", "application/json")],
                    Vec::new(),
                )
                .await
                .map_err(|e| KeySourceError(e.to_string()))?;
            if answer.status != 200 {
                return Err(KeySourceError(format!(
                    "HTTP {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                )));
            }
            let (page, next) = parse_page(&answer.body).map_err(KeySourceError)?;
            keys.extend(page);
            match next {
                Some(next) => position = Some(next),
                None => return Ok(keys),
            }
        }
        Err(KeySourceError(format!(
            "more than {MAX_PAGES} pages of API keys"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::signed_http::{test_client, test_server};

    #[test]
    fn enabled_keys_with_values_are_kept_and_the_position_is_followed() {
        let body = br#"{"item": [
            {"id": "r1", "value": "read-value", "enabled": true, "name": "s3kv-read", "stageKeys": []},
            {"id": "off", "value": "off-value", "enabled": false},
            {"id": "novalue", "enabled": true}
        ], "position": "next+page/=="}"#;
        let (keys, next) = parse_page(body).unwrap();
        assert_eq!(keys, vec![("read-value".to_owned(), "r1".to_owned())]);
        assert_eq!(next.as_deref(), Some("next+page/=="));
        let (keys, next) = parse_page(br#"{"item": []}"#).unwrap();
        assert!(keys.is_empty() && next.is_none());
        assert!(parse_page(b"<html>").is_err());
    }

    #[tokio::test]
    async fn every_page_is_read_with_a_signed_get() {
        let (url, received) = test_server::serve(vec![
            (
                200,
                r#"{"item":[{"id":"r1","value":"v1","enabled":true}],"position":"p/2+"}"#.into(),
            ),
            (
                200,
                r#"{"item":[{"id":"w1","value":"v2","enabled":true}]}"#.into(),
            ),
        ])
        .await;
        let keys = ApiGatewayKeys::with_endpoint(test_client(), &url)
            .fetch()
            .await
            .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!((keys["v1"].as_str(), keys["v2"].as_str()), ("r1", "w1"));
        let got = received.lock().unwrap().clone();
        assert_eq!(got[0].method, "GET");
        assert_eq!(got[0].target, "/apikeys?includeValues=true&limit=500");
        assert_eq!(
            got[1].target,
            "/apikeys?includeValues=true&limit=500&position=p%2F2%2B"
        );
        assert!(got[1]
            .header("authorization")
            .unwrap()
            .contains("/eu-west-1/apigateway/aws4_request"));
    }

    #[tokio::test]
    async fn a_refusal_is_an_error() {
        let (url, _) = test_server::serve(vec![(403, r#"{"message":"denied"}"#.into())]).await;
        let error = ApiGatewayKeys::with_endpoint(test_client(), &url)
            .fetch()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("403"), "{error}");
    }
}
