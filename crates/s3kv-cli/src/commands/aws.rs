//! AWS's own APIs, for the commands that need them beyond s3kv's (`redrive`: SQS and Lambda; `doctor`: SQS and
//! CloudWatch): the standard credential chain and region, and calls signed with SigV4 over
//! [`s3kv::adapters::signed_http`]. A handful of JSON-protocol calls does not justify a generated SDK crate each.

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use s3kv::adapters::signed_http::SignedHttp;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Credentials and the default region, from the standard chain (environment, profile, SSO, instance role).
pub(super) struct Aws {
    credentials: SharedCredentialsProvider,
    region: Option<String>,
}

impl Aws {
    pub(super) async fn load() -> Result<Self, String> {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let credentials = shared.credentials_provider().ok_or(
            "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run `aws sso login`",
        )?;
        Ok(Self {
            credentials,
            region: shared.region().map(|r| r.as_ref().to_owned()),
        })
    }

    /// A signer for `region`: the one the resource names, else the configured one.
    pub(super) fn client(&self, region: Option<&str>) -> Result<SignedHttp, String> {
        let region = region
            .map(str::to_owned)
            .or_else(|| self.region.clone())
            .ok_or("no AWS region: set AWS_REGION (or the profile's region)")?;
        Ok(SignedHttp::new(self.credentials.clone(), &region, TIMEOUT))
    }
}

/// A service's endpoint: `AWS_ENDPOINT_URL_<SERVICE>` (the SDKs' own override, e.g. `AWS_ENDPOINT_URL_LAMBDA`),
/// else `https://<host>.<region>.amazonaws.com`.
pub(super) fn endpoint(service_env: &str, host: &str, region: &str) -> String {
    std::env::var(format!("AWS_ENDPOINT_URL_{service_env}"))
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("https://{host}.{region}.amazonaws.com"))
}

/// One call of an AWS JSON 1.0 protocol API (`X-Amz-Target: <target>`), signed for `service`; `label` names the
/// call in errors (e.g. "SQS ReceiveMessage"). A non-200 answer is an error with AWS's type and message.
pub(super) async fn json_call(
    http: &SignedHttp,
    service: &str,
    origin: &str,
    target: &str,
    label: &str,
    body: &Value,
) -> Result<Value, String> {
    let answer = http
        .send(
            service,
            "POST",
            origin,
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", target),
            ],
            body.to_string().into_bytes(),
        )
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let value: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if answer.status != 200 {
        let kind = value["__type"].as_str().unwrap_or_default();
        let message = value["message"]
            .as_str()
            .or(value["Message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
        return Err(format!("{label}: HTTP {} {kind} {message}", answer.status));
    }
    Ok(value)
}
