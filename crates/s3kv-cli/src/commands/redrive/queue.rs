//! The syncer's failure queue, over SQS's JSON protocol (signed through [`super::super::aws`]).

use s3kv::adapters::signed_http::SignedHttp;
use serde_json::Value;

use super::super::aws::{json_call, Aws};

/// The queue's origin (where its JSON API is posted) and region (`sqs.REGION.amazonaws.com`, else configured).
fn queue_endpoint(queue_url: &str) -> Result<(String, Option<String>), String> {
    let uri: http::Uri = queue_url
        .parse()
        .map_err(|e| format!("--queue-url {queue_url:?}: {e}"))?;
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!(
            "--queue-url {queue_url:?} is not a URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
        ));
    };
    let region = host
        .host()
        .strip_prefix("sqs.")
        .and_then(|rest| rest.split_once('.'))
        .map(|(region, _)| region.to_owned());
    Ok((format!("{scheme}://{host}/"), region))
}

/// SQS over its JSON protocol.
pub(super) struct Queue {
    http: SignedHttp,
    origin: String,
    url: String,
}

impl Queue {
    pub(super) async fn open(aws: &Aws, url: &str) -> Result<Self, String> {
        let (origin, region) = queue_endpoint(url)?;
        Ok(Self {
            http: aws.client(region.as_deref())?,
            origin,
            url: url.to_owned(),
        })
    }

    async fn call(&self, action: &str, mut body: Value) -> Result<Value, String> {
        body["QueueUrl"] = Value::String(self.url.clone());
        let target = format!("AmazonSQS.{action}");
        let label = format!("SQS {action}");
        json_call(&self.http, "sqs", &self.origin, &target, &label, &body).await
    }

    pub(super) async fn receive(&self, visibility: u64) -> Result<Vec<Message>, String> {
        let answer = self
            .call(
                "ReceiveMessage",
                serde_json::json!({
                    "MaxNumberOfMessages": 10,
                    "WaitTimeSeconds": 1,
                    "VisibilityTimeout": visibility,
                }),
            )
            .await?;
        let messages = answer["Messages"].as_array().cloned().unwrap_or_default();
        Ok(messages
            .into_iter()
            .map(|m| Message {
                id: m["MessageId"].as_str().unwrap_or_default().to_owned(),
                receipt: m["ReceiptHandle"].as_str().unwrap_or_default().to_owned(),
                body: m["Body"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    pub(super) async fn delete(&self, receipt: &str) -> Result<(), String> {
        self.call(
            "DeleteMessage",
            serde_json::json!({ "ReceiptHandle": receipt }),
        )
        .await
        .map(drop)
    }

    /// Visible again at once (a dry run's messages, left as they were).
    pub(super) async fn release(&self, receipt: &str) -> Result<(), String> {
        self.call(
            "ChangeMessageVisibility",
            serde_json::json!({ "ReceiptHandle": receipt, "VisibilityTimeout": 0 }),
        )
        .await
        .map(drop)
    }

    /// Messages waiting and in flight (SQS's approximate counts).
    pub(super) async fn depth(&self) -> Result<u64, String> {
        let answer = self
            .call(
                "GetQueueAttributes",
                serde_json::json!({
                    "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
                }),
            )
            .await?;
        let count = |name: &str| {
            answer["Attributes"][name]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count("ApproximateNumberOfMessages") + count("ApproximateNumberOfMessagesNotVisible"))
    }
}

/// For `doctor`: how many messages the failure queue holds.
pub(in crate::commands) async fn queue_depth(queue_url: &str) -> Result<u64, String> {
    let aws = Aws::load().await?;
    Queue::open(&aws, queue_url).await?.depth().await
}

pub(super) struct Message {
    pub(super) id: String,
    pub(super) receipt: String,
    pub(super) body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_url_gives_the_origin_and_region() {
        assert_eq!(
            queue_endpoint("https://sqs.eu-west-1.amazonaws.com/123456789012/q").unwrap(),
            (
                "https://sqs.eu-west-1.amazonaws.com/".to_owned(),
                Some("eu-west-1".to_owned())
            )
        );
        assert_eq!(
            queue_endpoint("http://127.0.0.1:5000/123456789012/q").unwrap(),
            ("http://127.0.0.1:5000/".to_owned(), None)
        );
        assert!(queue_endpoint("q").is_err());
    }
}
