//! S3 notifications in, sync records out; and the reverse, for anything that has to emit AWS-shaped events.
//!
//! Decoding is per record: one malformed record is counted and skipped, and never blocks the good records
//! delivered beside it.

use std::time::Instant;

use aws_lambda_events::s3::{S3Event, S3EventRecord};
use serde_json::json;

use crate::percent::{self, Encoding};
use crate::ports::{Cache, Etag, ExpiryIndex, Feed, ObjectStore};
use crate::sequencer::Sequencer;
use crate::sync::{Change, SyncError, SyncRecord, SyncReport, Syncer};

/// Decodes one record. `Ok(None)` for event types s3kv does not act on (restore, replication, ...).
pub fn decode(record: &S3EventRecord) -> Result<Option<SyncRecord>, String> {
    let name = record
        .event_name
        .as_deref()
        .ok_or("record has no eventName")?;
    let name = name.strip_prefix("s3:").unwrap_or(name);
    let object = &record.s3.object;
    let change = if name.starts_with("ObjectCreated:") {
        Change::Created {
            etag: object
                .e_tag
                .as_deref()
                .map(Etag::new)
                .filter(|e| !e.as_str().is_empty()),
        }
    } else if name.starts_with("ObjectRemoved:") {
        Change::Removed
    } else {
        return Ok(None);
    };
    let raw_key = object.key.as_deref().ok_or("record has no s3.object.key")?;
    let object_key = percent::decode(raw_key, Encoding::Form)
        .map_err(|e| format!("object key {raw_key:?} cannot be decoded: {e}"))?;
    let sequencer = object
        .sequencer
        .as_deref()
        .ok_or_else(|| format!("record for {object_key:?} has no sequencer"))?;
    let sequencer = Sequencer::parse(sequencer).map_err(|e| e.to_string())?;
    // A record without a plausible eventTime (hand-made events) gets no lag measurement rather than a wrong one.
    let event_time = Some(std::time::SystemTime::from(record.event_time))
        .filter(|t| *t > std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400));
    Ok(Some(SyncRecord {
        object_key,
        sequencer,
        change,
        event_time,
        principal: record.principal_id.principal_id.clone(),
    }))
}

/// The syncer Lambda's entry: S3's `s3:TestEvent` (sent once when the notification is configured, and without
/// `Records`) is acknowledged; anything else must be an [`S3Event`].
pub async fn handle_json<S: ObjectStore, C: Cache + Feed + ExpiryIndex>(
    syncer: &Syncer<S, C>,
    event: serde_json::Value,
    deadline: Instant,
) -> Result<SyncReport, EventError> {
    if event.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        tracing::info!(bucket = ?event.get("Bucket"), "S3 test event: the notification reaches the syncer");
        return Ok(SyncReport::default());
    }
    let event: S3Event = serde_json::from_value(event).map_err(EventError::NotAnEvent)?;
    Ok(handle(syncer, event, deadline).await?)
}

/// Why an invocation of the syncer failed; either way Lambda retries it and then sends it to the failure queue.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not an S3 notification: {0}")]
    NotAnEvent(#[source] serde_json::Error),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl EventError {
    /// What the invocation did before it failed, for the failure's metrics.
    pub fn report(&self) -> Option<&SyncReport> {
        match self {
            EventError::NotAnEvent(_) => None,
            EventError::Sync(error) => Some(&error.report),
        }
    }

    /// Whether a retry can succeed: a payload that is not an S3 event never will.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EventError::Sync(_))
    }
}

/// The syncer Lambda's handler: every record of `event`, in one report, or an error that fails the invocation.
pub async fn handle<S: ObjectStore, C: Cache + Feed + ExpiryIndex>(
    syncer: &Syncer<S, C>,
    event: S3Event,
    deadline: Instant,
) -> Result<SyncReport, SyncError> {
    let mut ignored = 0;
    let records: Vec<Result<SyncRecord, String>> = event
        .records
        .iter()
        .filter_map(|record| match decode(record) {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                ignored += 1;
                None
            }
            Err(reason) => {
                tracing::warn!(%reason, "malformed S3 record skipped");
                Some(Err(reason))
            }
        })
        .collect();
    let result = syncer.run(records, deadline).await.map(|mut report| {
        report.records += ignored;
        report.ignored += ignored;
        report
    });
    match &result {
        Ok(report) => tracing::info!(?report, "sync done"),
        Err(error) => tracing::error!(report = ?error.report, %error, "sync failed"),
    }
    result
}

/// What happened to an object, for building a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Put,
    Post,
    Copy,
    CompleteMultipartUpload,
    Delete,
    DeleteMarkerCreated,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Put => "ObjectCreated:Put",
            EventName::Post => "ObjectCreated:Post",
            EventName::Copy => "ObjectCreated:Copy",
            EventName::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
            EventName::Delete => "ObjectRemoved:Delete",
            EventName::DeleteMarkerCreated => "ObjectRemoved:DeleteMarkerCreated",
        }
    }
}

/// The facts one notification record carries about its object.
#[derive(Debug, Clone)]
pub struct ObjectChange<'a> {
    pub name: EventName,
    pub bucket: &'a str,
    /// The object key as stored (not encoded); it is form-encoded into the record like S3 does.
    pub object_key: &'a str,
    pub etag: Option<&'a Etag>,
    pub size: u64,
    pub version_id: Option<&'a str>,
    pub sequencer: &'a Sequencer,
}

/// Builds a record in exactly the shape AWS delivers (event version 2.1), by going through AWS's JSON, so that
/// anything built here also proves the handler's input type reads real notifications.
pub fn record(change: &ObjectChange<'_>) -> S3EventRecord {
    let mut object = json!({
        "key": percent::encode_form(change.object_key),
        "sequencer": change.sequencer.as_str(),
    });
    if change.name.as_str().starts_with("ObjectCreated:") {
        object["size"] = json!(change.size);
        if let Some(etag) = change.etag {
            object["eTag"] = json!(etag.as_str());
        }
    }
    if let Some(version) = change.version_id {
        object["versionId"] = json!(version);
    }
    let value = json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": now_rfc3339(),
        "eventName": change.name.as_str(),
        "userIdentity": { "principalId": "s3kv-local" },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": { "x-amz-request-id": "s3kv", "x-amz-id-2": "s3kv" },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "s3kv-sync",
            "bucket": {
                "name": change.bucket,
                "ownerIdentity": { "principalId": "s3kv-local" },
                "arn": format!("arn:aws:s3:::{}", change.bucket),
            },
            "object": object,
        },
    });
    serde_json::from_value(value).expect("a record built from AWS's documented shape deserializes")
}

pub fn event(records: Vec<S3EventRecord>) -> S3Event {
    let mut event = S3Event::default();
    event.records = records;
    event
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(
        name: EventName,
        key: &'a str,
        etag: Option<&'a Etag>,
        seq: &'a Sequencer,
    ) -> ObjectChange<'a> {
        ObjectChange {
            name,
            bucket: "b",
            object_key: key,
            etag,
            size: 2,
            version_id: None,
            sequencer: seq,
        }
    }

    #[test]
    fn built_records_decode_back_to_the_same_change() {
        let seq = Sequencer::from_counter(42);
        let etag = Etag::new("abc");
        let record = record(&change(
            EventName::Put,
            "dir/my file+1 é.json",
            Some(&etag),
            &seq,
        ));
        assert_eq!(
            record.s3.object.key.as_deref(),
            Some("dir/my+file%2B1+%C3%A9.json")
        );
        let decoded = decode(&record).unwrap().unwrap();
        assert_eq!(decoded.object_key, "dir/my file+1 é.json");
        assert_eq!(decoded.sequencer, seq);
        assert_eq!(decoded.change, Change::Created { etag: Some(etag) });
    }

    #[test]
    fn an_etag_of_only_quotes_counts_as_no_etag() {
        // Otherwise the syncer would read with `If-Match: ""`, get 412, and drop the record as superseded.
        let seq = Sequencer::from_counter(1);
        for raw in ["", "\"\"", "W/\"\"", " "] {
            let mut r = record(&change(EventName::Put, "a.json", None, &seq));
            r.s3.object.e_tag = Some(raw.into());
            assert_eq!(
                decode(&r).unwrap().unwrap().change,
                Change::Created { etag: None },
                "{raw:?}"
            );
        }
    }

    #[test]
    fn removed_and_unknown_event_names() {
        let seq = Sequencer::from_counter(1);
        let removed = record(&change(
            EventName::DeleteMarkerCreated,
            "a.json",
            None,
            &seq,
        ));
        assert_eq!(decode(&removed).unwrap().unwrap().change, Change::Removed);
        let mut restore = removed.clone();
        restore.event_name = Some("ObjectRestore:Completed".into());
        assert_eq!(decode(&restore), Ok(None));
    }

    #[test]
    fn malformed_records_give_reasons() {
        let seq = Sequencer::from_counter(1);
        let good = record(&change(EventName::Put, "a.json", None, &seq));
        let mut no_seq = good.clone();
        no_seq.s3.object.sequencer = None;
        assert!(decode(&no_seq).unwrap_err().contains("no sequencer"));
        let mut bad_key = good.clone();
        bad_key.s3.object.key = Some("100%.json".into());
        assert!(decode(&bad_key).unwrap_err().contains("cannot be decoded"));
        let mut no_name = good;
        no_name.event_name = None;
        assert!(decode(&no_name).is_err());
    }

    #[test]
    fn event_time_is_now() {
        let record = record(&change(
            EventName::Put,
            "a.json",
            None,
            &Sequencer::from_counter(1),
        ));
        assert!((chrono::Utc::now() - record.event_time).num_seconds().abs() < 60);
    }
}
