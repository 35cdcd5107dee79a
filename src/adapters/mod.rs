//! The only modules that know the SDKs: S3 through aws-sdk-s3, Valkey through fred, AppSync Events and API
//! Gateway's key table through SigV4-signed requests on the SDK's HTTP connector ([`signed_http`]); all of
//! them trust the one set of TLS roots [`tls`] reads.

pub mod apigateway;
pub mod appsync;
pub mod iam_auth;
pub mod s3;
pub mod signed_http;
pub mod tls;
pub mod valkey;
