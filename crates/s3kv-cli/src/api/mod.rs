//! The HTTP API, as the CLI needs it: one method per route, answers in the API's own terms, and every error the
//! API's `{"error", "message"}` (or the gateway's `{"message"}`), so a failure prints what the server said.
//!
//! `answers` holds the answers' types and [`ApiError`]; `send` how a request goes out and comes back; here, one
//! method per route.

mod answers;
mod send;

use std::time::Duration;

use s3kv::key::{ItemKey, KeyPrefix};
use s3kv::percent;

pub use answers::{
    ApiError, BatchItem, Change, ChangePage, Condition, Item, Listed, ListedSchema, Version,
    Watched, Written,
};
use answers::{BatchAnswer, ListPage, SchemaList, VersionPage};
use send::with_condition;

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

    /// The base URL, as given (without a trailing `/`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The API key sent as `x-api-key`, if any (push sends it in its tokens).
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
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

    /// An item's current state for a watch: as [`Api::get`] through the cache, tried once (see
    /// [`Api::send_tries`]).
    pub async fn look(&self, key: &ItemKey) -> Result<Item, ApiError> {
        let request = self.http.get(self.url("items", Some(key)));
        Self::item(self.send_tries(request, 1).await?).await
    }

    /// An item's current state straight from S3 (`?consistent=true`), tried once: what a watch prints when push
    /// says the item changed (the cache may not hold the change yet).
    pub async fn look_consistent(&self, key: &ItemKey) -> Result<Item, ApiError> {
        let request = self
            .http
            .get(self.url("items", Some(key)))
            .query(&[("consistent", "true")]);
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
    /// `expiry`: the `ttl` or `expiresAt` query parameter, if any.
    pub async fn put(
        &self,
        key: &ItemKey,
        body: String,
        condition: Condition<'_>,
        expiry: Option<(&str, String)>,
    ) -> Result<(Written, bool), ApiError> {
        let request = self
            .http
            .put(self.url("items", Some(key)))
            .query(&expiry.into_iter().collect::<Vec<_>>());
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
}
