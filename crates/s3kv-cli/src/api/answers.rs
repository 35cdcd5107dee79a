//! The API's answers and errors in the CLI's terms: what [`super::Api`]'s methods return, and the shapes of the
//! JSON they read (its own fields only; a value stays the `RawValue` the API sent).

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
    /// Where the answer came from (`X-Cache`: `HIT`, `MISS`, `BYPASS`), when the API said.
    pub cache: Option<String>,
    /// When the item expires (`X-S3kv-Expires-At`), if it does.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Written {
    pub etag: String,
    /// When the written item expires (RFC 3339), if the write said.
    #[serde(rename = "expiresAt", default)]
    pub expires_at: Option<String>,
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
pub(super) struct ListPage {
    pub(super) items: Vec<Listed>,
    pub(super) cursor: Option<String>,
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
pub(super) struct SchemaList {
    pub(super) schemas: Vec<ListedSchema>,
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
pub(super) struct BatchAnswer {
    pub(super) items: Vec<BatchItem>,
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
pub(super) struct VersionPage {
    pub(super) versions: Vec<Version>,
    pub(super) cursor: Option<String>,
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
