//! SigV4-signed HTTPS requests to AWS APIs the functions call without an SDK of their own (AppSync Events'
//! publish, API Gateway's `GetApiKeys`): the AWS SDK's own HTTP connector (hyper + rustls with aws-lc, already in
//! every function for S3), signed by aws-sigv4 with the function's role. Two small JSON calls do not justify two
//! more generated SDK crates.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

/// A signer and a connection pool; one per function instance.
pub struct SignedHttp {
    connector: aws_smithy_http_client::Connector,
    credentials: SharedCredentialsProvider,
    region: String,
    timeout: Duration,
}

impl std::fmt::Debug for SignedHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedHttp")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What came back: the status and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: bytes::Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no AWS credentials to sign with: {0}")]
    Credentials(String),
    #[error("cannot sign the request: {0}")]
    Signing(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl SignedHttp {
    /// `timeout` bounds each request, connect to last byte.
    pub fn new(credentials: SharedCredentialsProvider, region: &str, timeout: Duration) -> Self {
        let connector = super::tls::sdk_connector();
        Self {
            connector,
            credentials,
            region: region.to_owned(),
            timeout,
        }
    }

    /// The function's own credentials and region, from the standard AWS environment.
    pub async fn from_env(timeout: Duration) -> Result<Self, HttpError> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(super::tls::sdk_http_client())
            .load()
            .await;
        let credentials = shared
            .credentials_provider()
            .ok_or_else(|| HttpError::Credentials("no credentials provider".into()))?;
        let region = shared
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| HttpError::Credentials("no region (AWS_REGION)".into()))?;
        Ok(Self::new(credentials, &region, timeout))
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Sends `method url` with `headers` and `body`, signed for `service`.
    pub async fn send(
        &self,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, HttpError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| HttpError::Credentials(e.to_string()))?;
        let request = signed(
            service,
            &self.region,
            &credentials,
            SystemTime::now(),
            method,
            url,
            headers,
            body,
        )?;
        let request = aws_smithy_runtime_api::http::Request::try_from(request)
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .connector
                .call(request)
                .await
                .map_err(|e| HttpError::Transport(format!("{e:?}")))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| HttpError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }
}

/// The request, with SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) added; `host` is set
/// from the URL and signed with `headers`.
#[allow(clippy::too_many_arguments)]
pub fn signed(
    service: &str,
    region: &str,
    credentials: &aws_credential_types::Credentials,
    time: SystemTime,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<http::Request<SdkBody>, HttpError> {
    let signing = |e: &dyn std::fmt::Display| HttpError::Signing(e.to_string());
    let uri: http::Uri = url.parse().map_err(|e| signing(&e))?;
    let host = uri
        .authority()
        .ok_or_else(|| HttpError::Signing(format!("{url} has no host")))?
        .as_str()
        .to_owned();
    let mut all: Vec<(&str, &str)> = vec![("host", host.as_str())];
    all.extend_from_slice(headers);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| signing(&e))?
        .into();
    let signable =
        SignableRequest::new(method, url, all.iter().copied(), SignableBody::Bytes(&body))
            .map_err(|e| signing(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| signing(&e))?
        .into_parts();
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in &all {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(SdkBody::from(body)).map_err(|e| signing(&e))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

/// A recording HTTP server for the adapters' tests (shared with the CLI's tests through testkit).
#[cfg(test)]
pub(crate) use testkit::recorder as test_server;

#[cfg(test)]
pub(crate) fn test_client() -> SignedHttp {
    let credentials = aws_credential_types::Credentials::new(
        "AKIDEXAMPLE",
        "secret",
        Some("session-token".into()),
        None,
        "test",
    );
    SignedHttp::new(
        SharedCredentialsProvider::new(credentials),
        "eu-west-1",
        Duration::from_secs(5),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_goes_over_the_wire_is_what_was_signed() {
        let (url, received) = test_server::serve(vec![(200, "{}".into())]).await;
        let http = test_client();
        let answer = http
            .send(
                "appsync",
                "POST",
                &format!("{url}/event"),
                &[("content-type", "application/json")],
                b"{\"a\":1}".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!((answer.status, &answer.body[..]), (200, &b"{}"[..]));
        let got = received.lock().unwrap()[0].clone();
        // Recompute the signature from what arrived, at the time it says it was signed.
        let date = got.header("x-amz-date").unwrap();
        let time = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        let credentials = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session-token".into()),
            None,
            "test",
        );
        let expected = signed(
            "appsync",
            "eu-west-1",
            &credentials,
            time.into(),
            "POST",
            &format!("{url}/event"),
            &[("content-type", "application/json")],
            got.body.clone(),
        )
        .unwrap();
        assert_eq!(
            got.header("authorization"),
            expected.headers()["authorization"].to_str().ok()
        );
        assert_eq!(got.header("host"), url.strip_prefix("http://"));
        assert_eq!(got.header("x-amz-security-token"), Some("session-token"));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let mut http = test_client();
        http.timeout = Duration::from_millis(200);
        let error = http
            .send("appsync", "GET", &url, &[], Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(error, HttpError::Timeout(_)), "{error}");
        drop(listener);
    }
}
