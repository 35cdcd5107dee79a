//! How a request is sent: with the key, retried when the API asks for it, and a refusal read into an
//! [`ApiError`] with the server's own message; and the answer read back (an item's body and headers, a write's
//! ETag).

use std::time::Duration;

use super::{Api, ApiError, Condition, Item, Written};

impl Api {
    /// Sends, retrying what the API asks to be retried: 429 (API Gateway's throttle: a write key's usage plan
    /// allows 10 writes a second by default) and 503, with growing, jittered pauses (or `Retry-After`), eight
    /// attempts in all. Writes are safe to repeat: the body is the same, and a condition is evaluated afresh.
    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        self.send_tries(request, 8).await
    }

    /// Sends up to `attempts` times (see [`Api::send`]). A watch makes one: it retries for as long as it runs,
    /// with its own backoff, and says so on each retry rather than going quiet for half a minute in here.
    pub(super) async fn send_tries(
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

    pub(super) async fn text(response: reqwest::Response) -> Result<String, ApiError> {
        response
            .text()
            .await
            .map_err(|e| ApiError::Unexpected(e.to_string()))
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
        serde_json::from_str(text).map_err(|e| ApiError::Unexpected(format!("{e}: {text}")))
    }

    pub(super) async fn item(response: reqwest::Response) -> Result<Item, ApiError> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header("etag").unwrap_or_default();
        let writer = header("x-s3kv-writer");
        let cache = header("x-cache");
        let expires_at = header("x-s3kv-expires-at");
        Ok(Item {
            body: Self::text(response).await?,
            etag: etag.trim_matches('"').to_owned(),
            writer,
            cache,
            expires_at,
        })
    }

    /// A JSON body under a condition; the answer's ETag, and whether it created the item (201).
    pub(super) async fn write(
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

pub(super) fn with_condition(
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
