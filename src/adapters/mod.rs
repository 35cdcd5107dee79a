//! The only modules that know the SDKs: S3 through aws-sdk-s3, Valkey through fred.

pub mod iam_auth;
pub mod s3;
pub mod valkey;
