//! [`Publisher`] over AppSync Events' HTTP publish: `POST https://<http-host>/event` with
//! `{"channel": "/s3kv/…", "events": ["<event JSON as a string>"]}`, signed with SigV4 for service `appsync` by the
//! notifier's role, which may `appsync:EventPublish` on the `s3kv` namespace only (AppSync Events developer
//! guide, "Publishing events via HTTP", <https://docs.aws.amazon.com/appsync/latest/eventapi/publish-http.html>).
//! The answer lists `successful` and `failed` events; a failed one fails the publish.

use serde::Deserialize;

use super::signed_http::{HttpError, SignedHttp};
use crate::push::{PublishError, Publisher};

pub struct AppSyncPublisher {
    http: SignedHttp,
    url: String,
}

impl AppSyncPublisher {
    /// `endpoint` is the Event API's HTTP domain (`Dns.Http`, `<id>.appsync-api.<region>.amazonaws.com`) or a
    /// base URL (`http://127.0.0.1:port` in tests).
    pub fn new(http: SignedHttp, endpoint: &str) -> Self {
        Self {
            http,
            url: event_url(endpoint),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The publish URL for an endpoint given as a host or as a URL.
pub fn event_url(endpoint: &str) -> String {
    let base = endpoint.trim().trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("https://{base}")
    };
    if base.ends_with("/event") {
        base
    } else {
        format!("{base}/event")
    }
}

#[derive(Debug, Default, Deserialize)]
struct Published {
    #[serde(default)]
    failed: Vec<serde_json::Value>,
}

impl Publisher for AppSyncPublisher {
    async fn publish(&self, channel: &str, event: &str) -> Result<(), PublishError> {
        let fail = |reason: String, retryable: bool| PublishError {
            channel: channel.to_owned(),
            reason,
            retryable,
        };
        let body = serde_json::json!({ "channel": channel, "events": [event] }).to_string();
        let answer = self
            .http
            .send(
                "appsync",
                "POST",
                &self.url,
                &[("content-type", "application/json")],
                body.into_bytes(),
            )
            .await
            .map_err(|e| {
                let retryable = !matches!(e, HttpError::Signing(_));
                fail(e.to_string(), retryable)
            })?;
        let text = String::from_utf8_lossy(&answer.body);
        match answer.status {
            200..=299 => {
                let published: Published = serde_json::from_str(&text).unwrap_or_default();
                match published.failed.first() {
                    None => Ok(()),
                    Some(failed) => Err(fail(format!("AppSync refused the event: {failed}"), true)),
                }
            }
            // Throttling and AppSync's own failures pass; a refused signature or permission does not.
            status @ (429 | 500..=599) => Err(fail(format!("HTTP {status}: {text}"), true)),
            status => Err(fail(format!("HTTP {status}: {text}"), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::signed_http::{test_client, test_server};

    #[test]
    fn the_publish_url_comes_from_a_host_or_a_url() {
        for (endpoint, url) in [
            (
                "abc.appsync-api.eu-west-1.amazonaws.com",
                "https://abc.appsync-api.eu-west-1.amazonaws.com/event",
            ),
            ("http://127.0.0.1:9/", "http://127.0.0.1:9/event"),
            (
                "https://push.example.com/event",
                "https://push.example.com/event",
            ),
        ] {
            assert_eq!(event_url(endpoint), url);
        }
    }

    #[tokio::test]
    async fn a_publish_is_a_signed_post_of_the_channel_and_the_event_string() {
        let answer = r#"{"successful":[{"identifier":"6e2d2a1e","index":0}],"failed":[]}"#;
        let (url, received) = test_server::serve(vec![(200, answer.into())]).await;
        let publisher = AppSyncPublisher::new(test_client(), &url);
        let event =
            r#"{"key":"flags/a","etag":"e","deleted":false,"sequencer":"0A","size":2,"body":"{}"}"#;
        publisher.publish("/s3kv/k/0123", event).await.unwrap();
        let got = received.lock().unwrap()[0].clone();
        assert_eq!(
            (got.method.as_str(), got.target.as_str()),
            ("POST", "/event")
        );
        assert_eq!(got.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        // The event travels as a JSON string, as AppSync delivers it to subscribers.
        assert_eq!(
            body,
            serde_json::json!({"channel": "/s3kv/k/0123", "events": [event]})
        );
        let authorization = got.header("authorization").unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && authorization.contains("/eu-west-1/appsync/aws4_request")
                && authorization
                    .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{authorization}"
        );
    }

    #[tokio::test]
    async fn refusals_say_whether_a_retry_can_help() {
        let failed = r#"{"successful":[],"failed":[{"identifier":"x","index":0,"code":400,"message":"too big"}]}"#;
        let (url, _) = test_server::serve(vec![
            (200, failed.into()),
            (429, "{}".into()),
            (503, "{}".into()),
            (
                403,
                r#"{"errors":[{"errorType":"UnauthorizedException"}]}"#.into(),
            ),
        ])
        .await;
        let publisher = AppSyncPublisher::new(test_client(), &url);
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            let error = publisher.publish("/s3kv/p/00", "{}").await.unwrap_err();
            assert_eq!(error.channel, "/s3kv/p/00");
            outcomes.push(error.retryable);
        }
        assert_eq!(outcomes, [true, true, true, false]);
    }
}
