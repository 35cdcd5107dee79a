//! ElastiCache IAM authentication: the password is a SigV4-presigned `connect` request, signed with the
//! function's own role. Nothing secret is stored; a token lives 15 minutes, so the client re-authenticates
//! every 10 (fred's credential-provider refresh), and a new connection always signs a fresh one.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use fred::error::{Error, ErrorKind};
use fred::types::config::{CredentialProvider, Server};

const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
const REFRESH_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct IamTokenProvider {
    user: String,
    cache_name: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl IamTokenProvider {
    /// `cache_name` is the serverless cache's name (not its endpoint); `user` the ElastiCache user id.
    pub fn new(
        user: &str,
        cache_name: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        Self {
            user: user.to_owned(),
            // ElastiCache lower-cases cache names at creation, and the signature covers the name.
            cache_name: cache_name.to_ascii_lowercase(),
            region: region.to_owned(),
            credentials,
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for IamTokenProvider {
    async fn fetch(
        &self,
        _server: Option<&Server>,
    ) -> Result<(Option<String>, Option<String>), Error> {
        let credentials = self.credentials.provide_credentials().await.map_err(|e| {
            Error::new(
                ErrorKind::Auth,
                format!("no AWS credentials to sign the Valkey token: {e}"),
            )
        })?;
        let token = presign_token(
            &self.cache_name,
            &self.user,
            &self.region,
            &credentials,
            SystemTime::now(),
        )
        .map_err(|e| {
            Error::new(
                ErrorKind::Auth,
                format!("cannot sign the Valkey token: {e}"),
            )
        })?;
        Ok((Some(self.user.clone()), Some(token)))
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(REFRESH_EVERY)
    }
}

/// The token AWS documents: `GET http://{cache}/?Action=connect&User={user}&ResourceType=ServerlessCache`,
/// presigned for service `elasticache` for 15 minutes, without the scheme.
pub fn presign_token(
    cache_name: &str,
    user: &str,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let url = format!(
        "http://{cache_name}/?Action=connect&User={}&ResourceType=ServerlessCache",
        crate::percent::encode_path(user).replace('/', "%2F")
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("elasticache")
        .time(time)
        .settings(settings)
        .build()?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )?;
    let (instructions, _signature) = sign(request, &params)?.into_parts();
    let mut signed = http::Request::builder().uri(&url).body(())?;
    instructions.apply_to_request_http1x(&mut signed);
    Ok(signed
        .uri()
        .to_string()
        .trim_start_matches("http://")
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(secret: &str) -> Credentials {
        Credentials::new("AKIDEXAMPLE", secret, Some("session".into()), None, "test")
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn token_is_a_presigned_connect_request_without_scheme() {
        let token = presign_token(
            "s3kv-cache",
            "s3kv-app",
            "eu-west-1",
            &creds("secret"),
            at(1_795_000_000),
        )
        .unwrap();
        assert!(
            token.starts_with(
                "s3kv-cache/?Action=connect&User=s3kv-app&ResourceType=ServerlessCache&"
            ),
            "{token}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20261118%2Feu-west-1%2Felasticache%2Faws4_request",
            "X-Amz-Date=20261118T110640Z", // 1,795,000,000 s after the epoch
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Security-Token=session",
            "X-Amz-Signature=",
        ] {
            assert!(token.contains(part), "{part} missing from {token}");
        }
        let signature = token
            .split('&')
            .find_map(|p| p.strip_prefix("X-Amz-Signature="))
            .unwrap();
        assert!(
            signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()),
            "{signature}"
        );
    }

    #[test]
    fn the_signature_depends_on_the_secret_and_the_time() {
        let token =
            |secret, secs| presign_token("c", "u", "us-east-1", &creds(secret), at(secs)).unwrap();
        assert_eq!(token("a", 1_795_000_000), token("a", 1_795_000_000));
        assert_ne!(token("a", 1_795_000_000), token("b", 1_795_000_000));
        assert_ne!(token("a", 1_795_000_000), token("a", 1_795_000_001));
    }
}
