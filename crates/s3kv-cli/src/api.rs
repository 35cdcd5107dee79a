//! The HTTP API, as the CLI needs it: one method per route, answers in the API's own terms, and every error the
//! API's `{"error", "message"}` (or the gateway's `{"message"}`), so a failure prints what the server said.

use std::time::Duration;

use s3kv::key::ItemKey;
use s3kv::percent;
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    /// The API answered with an error: its status, code (`None` from the gateway) and message.
    #[error("{message}")]
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("cannot reach {endpoint}: {source}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the API answered something that is not s3kv's: {0}")]
    Unexpected(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An item as read: its exact bytes and tag.
#[derive(Debug, Clone)]
pub struct Item {
    pub body: String,
    pub etag: String,
    pub writer: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Written {
    pub etag: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub key: String,
    pub etag: String,
    pub size: u64,
    #[serde(rename = "lastModified")]
    pub last_modified: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListPage {
    items: Vec<Listed>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BatchItem {
    pub key: String,
    pub found: bool,
    pub etag: Option<String>,
    pub value: Option<Box<RawValue>>,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    items: Vec<BatchItem>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Version {
    pub version: String,
    pub etag: Option<String>,
    pub size: u64,
    #[serde(rename = "lastModified")]
    pub last_modified: Option<String>,
    pub deleted: bool,
    pub current: bool,
    pub writer: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VersionPage {
    versions: Vec<Version>,
    cursor: Option<String>,
}

/// A write's condition on the item's current state.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    None,
    /// `If-None-Match: *`.
    Absent,
    /// `If-Match: "<etag>"`.
    Matches(&'a str),
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    endpoint: String,
    api_key: Option<String>,
}

impl Api {
    /// `endpoint` is the API's base URL (`http://127.0.0.1:3000`, or the stage URL without `/items`).
    pub fn new(endpoint: &str, api_key: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // A redirect would carry x-api-key to wherever it points; the API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("s3kv-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with these settings always builds");
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            api_key,
        }
    }

    fn url(&self, route: &str, key: Option<&ItemKey>) -> String {
        match key {
            Some(key) => format!(
                "{}/{route}/{}",
                self.endpoint,
                percent::encode_path(key.as_str())
            ),
            None => format!("{}/{route}", self.endpoint),
        }
    }

    /// Sends, retrying what the API asks to be retried: 429 (API Gateway's throttle: a write key's usage plan
    /// allows 10 writes a second by default) and 503, with growing, jittered pauses (or `Retry-After`), eight
    /// attempts in all. Writes are safe to repeat: the body is the same, and a condition is evaluated afresh.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let request = match &self.api_key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        };
        let mut delay = Duration::from_millis(100);
        let mut attempt: u32 = 0;
        let response = loop {
            attempt += 1;
            let Some(sent) = request.try_clone() else {
                return Err(ApiError::Unexpected(
                    "a request that cannot be repeated".into(),
                ));
            };
            let response = sent.send().await.map_err(|source| ApiError::Unreachable {
                endpoint: self.endpoint.clone(),
                source,
            })?;
            if !matches!(response.status().as_u16(), 429 | 503) || attempt == 8 {
                break response;
            }
            let asked = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs.min(30)));
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let jitter = Duration::from_millis(u64::from(nanos % 100));
            tokio::time::sleep(asked.unwrap_or(delay) + jitter).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        };
        if response.status().is_success() || response.status() == 304 {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let message = body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP {status}: {text}"));
        Err(ApiError::Status {
            status,
            code: body["error"].as_str().map(str::to_owned),
            message,
        })
    }

    async fn text(response: reqwest::Response) -> Result<String, ApiError> {
        response
            .text()
            .await
            .map_err(|e| ApiError::Unexpected(e.to_string()))
    }

    fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
        serde_json::from_str(text).map_err(|e| ApiError::Unexpected(format!("{e}: {text}")))
    }

    /// Through the cache, or `consistent` (straight from S3), or one `version`.
    pub async fn get(
        &self,
        key: &ItemKey,
        version: Option<&str>,
        consistent: bool,
    ) -> Result<Item, ApiError> {
        let mut request = self.http.get(self.url("items", Some(key)));
        if let Some(version) = version {
            request = request.query(&[("version", version)]);
        } else if consistent {
            request = request.query(&[("consistent", "true")]);
        }
        let response = self.send(request).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header("etag").unwrap_or_default();
        let writer = header("x-s3kv-writer");
        Ok(Item {
            body: Self::text(response).await?,
            etag: etag.trim_matches('"').to_owned(),
            writer,
        })
    }

    /// PUT; `true` when it created the item.
    pub async fn put(
        &self,
        key: &ItemKey,
        body: String,
        condition: Condition<'_>,
    ) -> Result<(Written, bool), ApiError> {
        let request = self.http.put(self.url("items", Some(key)));
        self.write(request, body, condition).await
    }

    pub async fn delete(&self, key: &ItemKey, condition: Condition<'_>) -> Result<(), ApiError> {
        let request = with_condition(self.http.delete(self.url("items", Some(key))), condition);
        self.send(request).await.map(drop)
    }

    /// Every item under `prefix`, all pages.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, ApiError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("prefix", prefix.to_owned()), ("limit", "1000".to_owned())];
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let request = self.http.get(self.url("items", None)).query(&query);
            let page: ListPage = Self::json(&Self::text(self.send(request).await?).await?)?;
            items.extend(page.items);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// Up to 100 keys in one request, answers in order.
    pub async fn batch_get(&self, keys: &[ItemKey]) -> Result<Vec<BatchItem>, ApiError> {
        let keys: Vec<&str> = keys.iter().map(ItemKey::as_str).collect();
        let body = serde_json::json!({ "keys": keys }).to_string();
        let request = self
            .http
            .post(self.url("batch-get", None))
            .header("content-type", "application/json")
            .body(body);
        let answer: BatchAnswer = Self::json(&Self::text(self.send(request).await?).await?)?;
        Ok(answer.items)
    }

    /// The item's versions, newest first, up to `limit` (all pages when `None`).
    pub async fn history(
        &self,
        key: &ItemKey,
        limit: Option<usize>,
    ) -> Result<Vec<Version>, ApiError> {
        let mut versions = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_size = limit.map_or(100, |l| (l - versions.len()).clamp(1, 100));
            let mut query = vec![("limit", page_size.to_string())];
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let request = self.http.get(self.url("versions", Some(key))).query(&query);
            let page: VersionPage = Self::json(&Self::text(self.send(request).await?).await?)?;
            versions.extend(page.versions);
            match page.cursor {
                Some(next) if limit.is_none_or(|l| versions.len() < l) => cursor = Some(next),
                _ => return Ok(versions),
            }
        }
    }

    /// `true` when it undeleted the item.
    pub async fn restore(
        &self,
        key: &ItemKey,
        version: &str,
        condition: Condition<'_>,
    ) -> Result<(Written, bool), ApiError> {
        let body = serde_json::json!({ "version": version }).to_string();
        let request = self.http.post(self.url("restore", Some(key)));
        self.write(request, body, condition).await
    }

    /// A JSON body under a condition; the answer's ETag, and whether it created the item (201).
    async fn write(
        &self,
        request: reqwest::RequestBuilder,
        body: String,
        condition: Condition<'_>,
    ) -> Result<(Written, bool), ApiError> {
        let request = with_condition(request, condition)
            .header("content-type", "application/json")
            .body(body);
        let response = self.send(request).await?;
        let created = response.status() == 201;
        let written = Self::json(&Self::text(response).await?)?;
        Ok((written, created))
    }
}

fn with_condition(
    request: reqwest::RequestBuilder,
    condition: Condition<'_>,
) -> reqwest::RequestBuilder {
    match condition {
        Condition::None => request,
        Condition::Absent => request.header("if-none-match", "*"),
        Condition::Matches(etag) => {
            request.header("if-match", format!("\"{}\"", etag.trim_matches('"')))
        }
    }
}
