//! The HTTP API, as the CLI needs it: one method per route, answers in the API's own terms, and every error the
//! API's `{"error", "message"}` (or the gateway's `{"message"}`), so a failure prints what the server said.

use std::time::Duration;

use s3kv::key::{ItemKey, KeyPrefix};
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
        /// A 410 `cursor_expired`'s cursor: where the change feed can be followed from again.
        restart: Option<String>,
        /// A 403's role of the key (`read`, `write`): a read key's refusal on a writer route says so.
        role: Option<String>,
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

    /// A refusal because the key may only read: s3kv's own 403 for a read key, or the gateway's (no s3kv code),
    /// which is what a key outside the writer's usage plan gets.
    pub fn is_read_only_refusal(&self) -> bool {
        match self {
            ApiError::Status {
                status: 403,
                code,
                role,
                ..
            } => role.as_deref() == Some("read") || code.is_none(),
            _ => false,
        }
    }

    /// Worth asking again after a pause, for a command that runs until stopped: no answer at all, the API's
    /// "slow down" and "try again shortly", and a gateway error without s3kv's code (a Lambda that timed out or
    /// crashed). Anything else (a bad key, no access) would fail the same way forever.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Status { status, code, .. } => {
                matches!(status, 429 | 503 | 504) || (*status >= 500 && code.is_none())
            }
            ApiError::Unexpected(_) => false,
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

/// What a wait on an item ended with.
#[derive(Debug, Clone)]
pub enum Watched {
    /// A version other than the one the client has.
    Changed(Item),
    /// The wait ran out first (304).
    Unchanged,
    Deleted,
}

/// One entry of the change feed: the item's ETag now, `None` once it is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Change {
    pub key: String,
    pub etag: Option<String>,
    pub deleted: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// Opaque; where the next request continues.
    pub cursor: String,
}

/// One entry of `GET /schemas`: `problem` says why a schema uploaded around the API does not compile.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ListedSchema {
    pub prefix: String,
    pub etag: String,
    pub size: u64,
    #[serde(rename = "lastModified")]
    pub last_modified: Option<String>,
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SchemaList {
    schemas: Vec<ListedSchema>,
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

/// The longest `?wait=` the API honours, in seconds.
pub const MAX_WAIT_SECS: u64 = 25;

/// A waiting request's answer comes up to `wait` after it is sent; the client's usual timeout (30 s) must not cut
/// a 25 s wait short, nor wait forever on a connection that died.
fn wait_timeout(wait: u64) -> Duration {
    Duration::from_secs(wait + 10)
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
        self.send_tries(request, 8).await
    }

    /// Sends up to `attempts` times (see [`Api::send`]). A watch makes one: it retries for as long as it runs,
    /// with its own backoff, and says so on each retry rather than going quiet for half a minute in here.
    async fn send_tries(
        &self,
        request: reqwest::RequestBuilder,
        attempts: u32,
    ) -> Result<reqwest::Response, ApiError> {
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
            if !matches!(response.status().as_u16(), 429 | 503) || attempt >= attempts {
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
            restart: body["cursor"].as_str().map(str::to_owned),
            role: body["role"].as_str().map(str::to_owned),
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

    /// An item's current state for a watch: as [`Api::get`] through the cache, tried once (see
    /// [`Api::send_tries`]).
    pub async fn look(&self, key: &ItemKey) -> Result<Item, ApiError> {
        let request = self.http.get(self.url("items", Some(key)));
        Self::item(self.send_tries(request, 1).await?).await
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
        Self::item(self.send(request).await?).await
    }

    async fn item(response: reqwest::Response) -> Result<Item, ApiError> {
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

    /// Waits up to `wait` seconds (1 to 25) for the item to be other than the version `etag`, through the cache
    /// as a plain read is.
    pub async fn wait_for_change(
        &self,
        key: &ItemKey,
        etag: &str,
        wait: u64,
    ) -> Result<Watched, ApiError> {
        let request = self
            .http
            .get(self.url("items", Some(key)))
            .query(&[("wait", wait.to_string())])
            .header("if-none-match", format!("\"{}\"", etag.trim_matches('"')))
            .timeout(wait_timeout(wait));
        match self.send_tries(request, 1).await {
            Ok(response) if response.status() == 304 => Ok(Watched::Unchanged),
            Ok(response) => Ok(Watched::Changed(Self::item(response).await?)),
            Err(ApiError::Status {
                status: 404,
                code: Some(code),
                ..
            }) if code == "not_found" => Ok(Watched::Deleted),
            Err(e) => Err(e),
        }
    }

    /// One look at the change feed under `prefix`: from now without `after` (the answer's cursor is where to
    /// start), else what changed after it, waiting up to `wait` seconds (0 to 25) when nothing has yet.
    pub async fn changes(
        &self,
        prefix: &str,
        after: Option<&str>,
        wait: u64,
    ) -> Result<ChangePage, ApiError> {
        let mut query = vec![("prefix", prefix.to_owned()), ("wait", wait.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let request = self
            .http
            .get(self.url("changes", None))
            .query(&query)
            .timeout(wait_timeout(wait));
        Self::json(&Self::text(self.send_tries(request, 1).await?).await?)
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

    /// Every schema the key may see, in prefix order (one request: the API does not page them).
    pub async fn schemas(&self) -> Result<Vec<ListedSchema>, ApiError> {
        let request = self.http.get(self.url("schemas", None));
        let list: SchemaList = Self::json(&Self::text(self.send(request).await?).await?)?;
        Ok(list.schemas)
    }

    /// The path from [`s3kv::routes::schema_path`], which sends a trailing `/` as `%2F` so no proxy drops it.
    fn schema_url(&self, prefix: &KeyPrefix) -> String {
        format!("{}{}", self.endpoint, s3kv::routes::schema_path(prefix))
    }

    /// A prefix's schema document as stored, with its ETag (`writer` is always `None`).
    pub async fn schema(&self, prefix: &KeyPrefix) -> Result<Item, ApiError> {
        let request = self.http.get(self.schema_url(prefix));
        Self::item(self.send(request).await?).await
    }

    /// PUT a schema; `true` when the prefix had none.
    pub async fn put_schema(
        &self,
        prefix: &KeyPrefix,
        body: String,
        condition: Condition<'_>,
    ) -> Result<(Written, bool), ApiError> {
        let request = self.http.put(self.schema_url(prefix));
        self.write(request, body, condition).await
    }

    pub async fn delete_schema(
        &self,
        prefix: &KeyPrefix,
        condition: Condition<'_>,
    ) -> Result<(), ApiError> {
        let request = with_condition(self.http.delete(self.schema_url(prefix)), condition);
        self.send(request).await.map(drop)
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
