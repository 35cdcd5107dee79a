//! Who wrote an item, and when: recorded with every write through the API (S3 user metadata on the object),
//! carried into the cache entry by the syncer, and returned on reads as `X-S3kv-Writer` and `Last-Modified`.
//!
//! An object without s3kv's metadata was uploaded some other way (console, CLI, another program). The syncer
//! then knows who from the event (`userIdentity.principalId`); a read straight from S3 knows only that it was an
//! upload. [`Provenance::writer`] is already in its header form, so a cache hit serves it without parsing.

/// The writer of an upload whose principal is unknown.
pub const UPLOAD: &str = "s3";

/// The caller of a write through the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Author {
    /// API Gateway's key id (`requestContext.identity.apiKeyId`).
    pub key_id: Option<String>,
    /// The key's name from the grants, where known.
    pub key_name: Option<String>,
    /// API Gateway's request id, to find the request in the access log.
    pub request_id: Option<String>,
    /// The version a restore brought back (`POST /restore/{key}`).
    pub restored_from: Option<String>,
    /// When the written item expires (`?ttl=`, `?expiresAt=`). Not part of who wrote it, but stored with it in the
    /// same metadata, so that it belongs to exactly this version of the object.
    pub expires: Option<crate::expiry::Expiry>,
}

impl Author {
    /// The `X-S3kv-Writer` form: `key=a1b2c3; name=flags-bot; request=6f1c...`, unknown parts left out. With
    /// nothing known the object carries no s3kv metadata, so it reads as an [`upload`], and so does this.
    pub fn header(&self) -> String {
        let parts: Vec<String> = [
            ("key", &self.key_id),
            ("name", &self.key_name),
            ("request", &self.request_id),
            ("restored", &self.restored_from),
        ]
        .into_iter()
        .filter_map(|(label, value)| value.as_deref().map(|v| format!("{label}={}", clean(v))))
        .collect();
        if parts.is_empty() {
            upload(None)
        } else {
            parts.join("; ")
        }
    }
}

/// The `X-S3kv-Writer` form of an upload: `s3; principal=AWS:AIDA...`, or `s3` when the principal is unknown.
pub fn upload(principal: Option<&str>) -> String {
    match principal.map(clean).filter(|p| !p.is_empty()) {
        Some(principal) => format!("{UPLOAD}; principal={principal}"),
        None => UPLOAD.to_owned(),
    }
}

/// What is known of an object's last write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// `X-S3kv-Writer`'s value ([`Author::header`] or [`upload`]).
    pub writer: Option<String>,
    /// When S3 stored the object, in whole seconds since the epoch (S3's own resolution for `Last-Modified`).
    pub modified: Option<i64>,
    /// When the object stops being served, if its write said so ([`crate::expiry`]).
    pub expires: Option<crate::expiry::Expiry>,
}

impl Provenance {
    /// `Last-Modified`'s value (an HTTP date).
    pub fn last_modified(&self) -> Option<String> {
        let time = chrono::DateTime::from_timestamp(self.modified?, 0)?;
        Some(time.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
    }

    /// Whether the object is expired at `now` (seconds since the epoch).
    pub fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|at| at.has_passed(now))
    }

    pub fn is_empty(&self) -> bool {
        self.writer.is_none() && self.modified.is_none() && self.expires.is_none()
    }
}

/// Visible ASCII and spaces only, without `;` (the separator): header values, S3 metadata and cache entry
/// headers all take it unchanged.
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && c != ';' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_read_as_headers() {
        let author = Author {
            key_id: Some("a1b2".into()),
            key_name: Some("flags-bot".into()),
            request_id: Some("req-1".into()),
            restored_from: None,
            expires: Some(crate::expiry::Expiry::at(1)),
        };
        assert_eq!(author.header(), "key=a1b2; name=flags-bot; request=req-1");
        let restore = Author {
            restored_from: Some("3HL4kqtJlcpXroDTDmJ".into()),
            ..author
        };
        assert_eq!(
            restore.header(),
            "key=a1b2; name=flags-bot; request=req-1; restored=3HL4kqtJlcpXroDTDmJ"
        );
        assert_eq!(Author::default().header(), "s3");
        assert_eq!(upload(Some("AWS:AIDA;x\n")), "s3; principal=AWS:AIDA?x?");
        assert_eq!(upload(None), "s3");
    }

    #[test]
    fn last_modified_is_an_http_date() {
        let provenance = Provenance {
            writer: None,
            modified: Some(1_445_412_480),
            expires: None,
        };
        assert_eq!(
            provenance.last_modified().as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(Provenance::default().last_modified(), None);
    }
}
