//! S3 changes as EventBridge delivers them to the notifier, decoded into the syncer's [`SyncRecord`]s.
//!
//! With `EventBridgeEnabled` on the bucket, S3 sends every object event to the account's default bus; the stack's
//! rule forwards `Object Created` and `Object Deleted` under the item prefix (Amazon S3 User Guide, "EventBridge
//! event message structure", <https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>):
//!
//! ```json
//! {"version": "0", "detail-type": "Object Created", "source": "aws.s3", "time": "2021-11-12T00:00:00Z",
//!  "detail": {"version": "0", "bucket": {"name": "b"},
//!             "object": {"key": "items/a.json", "size": 5, "etag": "b1946ac9…", "version-id": "…",
//!                        "sequencer": "617f08299329d189"},
//!             "request-id": "…", "requester": "123456789012", "reason": "PutObject"}}
//! ```
//!
//! `Object Deleted` has no `etag` or `size`, and says `deletion-type` (`Delete Marker Created` or `Permanently
//! Deleted`). The key is decoded as the other S3 notification destinations encode it (form encoding, `+` for a
//! space), as AWS Lambda Powertools does for this event (`S3EventBridgeNotificationObject.key`, `unquote_plus`).
//! The user guide's examples show only plain keys, so that encoding is not confirmed by AWS's documentation.
//! Lifecycle expirations (`reason: Lifecycle Expiration`) are skipped, as the syncer skips S3's
//! `LifecycleExpiration:*` notifications: here they only ever remove old versions and lone delete markers.

use serde::Deserialize;

use crate::percent::{self, Encoding};
use crate::ports::Etag;
use crate::sequencer::Sequencer;
use crate::sync::{Change, SyncRecord};

pub const OBJECT_CREATED: &str = "Object Created";
pub const OBJECT_DELETED: &str = "Object Deleted";

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: Option<String>,
    time: Option<String>,
    detail: Detail,
}

#[derive(Debug, Deserialize)]
struct Detail {
    object: Object,
    reason: Option<String>,
    requester: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Object {
    key: String,
    etag: Option<String>,
    sequencer: Option<String>,
}

/// One EventBridge event → the record the notifier publishes; `Ok(None)` for events s3kv does not act on (other
/// detail types, lifecycle expirations). An `Err` says why the event is malformed.
pub fn decode(event: serde_json::Value) -> Result<Option<SyncRecord>, String> {
    let event: Event = serde_json::from_value(event)
        .map_err(|e| format!("not an S3 event from EventBridge: {e}"))?;
    if event.source.as_deref().is_some_and(|s| s != "aws.s3") {
        return Ok(None);
    }
    let change = match event.detail_type.as_str() {
        OBJECT_CREATED => Change::Created {
            etag: event
                .detail
                .object
                .etag
                .as_deref()
                .map(Etag::new)
                .filter(|e| !e.as_str().is_empty()),
        },
        OBJECT_DELETED => Change::Removed,
        _ => return Ok(None),
    };
    if event.detail.reason.as_deref() == Some("Lifecycle Expiration") {
        return Ok(None);
    }
    let raw_key = &event.detail.object.key;
    let object_key = percent::decode(raw_key, Encoding::Form)
        .map_err(|e| format!("object key {raw_key:?} cannot be decoded: {e}"))?;
    let sequencer = event
        .detail
        .object
        .sequencer
        .as_deref()
        .ok_or_else(|| format!("event for {object_key:?} has no sequencer"))?;
    let sequencer = Sequencer::parse(sequencer).map_err(|e| e.to_string())?;
    let event_time = event
        .time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(std::time::SystemTime::from);
    Ok(Some(SyncRecord {
        object_key,
        sequencer,
        change,
        event_time,
        principal: event.detail.requester,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The user guide's examples, with s3kv's keys.
    fn created(key: &str) -> serde_json::Value {
        json!({
            "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
            "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1", "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
            "detail": {
                "version": "0", "bucket": {"name": "amzn-s3-demo-bucket1"},
                "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                           "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
                "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4",
                "reason": "PutObject"
            }
        })
    }

    fn deleted(key: &str, reason: &str) -> serde_json::Value {
        json!({
            "version": "0", "id": "2ee9cc15-d022-99ea-1fb8-1b1bac4850f9", "detail-type": "Object Deleted",
            "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1", "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
            "detail": {
                "version": "0", "bucket": {"name": "amzn-s3-demo-bucket1"},
                "object": {"key": key, "version-id": "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF", "sequencer": "617f0837b476e463"},
                "request-id": "0BH729840619AG5K", "requester": "123456789012", "source-ip-address": "1.2.3.4",
                "reason": reason, "deletion-type": "Delete Marker Created"
            }
        })
    }

    #[test]
    fn a_created_object_carries_its_etag_sequencer_time_and_requester() {
        let record = decode(created("items/flags/a.json")).unwrap().unwrap();
        assert_eq!(record.object_key, "items/flags/a.json");
        assert_eq!(
            record.change,
            Change::Created {
                etag: Some(Etag::new("b1946ac92492d2347c6235b4d2611184"))
            }
        );
        assert_eq!(record.sequencer.as_str(), "617F08299329D189");
        assert_eq!(record.principal.as_deref(), Some("123456789012"));
        let time = record.event_time.unwrap();
        assert_eq!(
            time.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_636_675_200
        );
    }

    #[test]
    fn a_deleted_object_is_a_removal_and_lifecycle_expirations_are_skipped() {
        let record = decode(deleted("items/a.json", "DeleteObject"))
            .unwrap()
            .unwrap();
        assert_eq!(record.change, Change::Removed);
        assert_eq!(record.sequencer.as_str(), "617F0837B476E463");
        assert_eq!(
            decode(deleted("items/a.json", "Lifecycle Expiration")).unwrap(),
            None
        );
    }

    #[test]
    fn keys_are_form_decoded_like_the_other_s3_notifications() {
        let record = decode(created("items/a+b%2Bc%C3%A7.json"))
            .unwrap()
            .unwrap();
        assert_eq!(record.object_key, "items/a b+cç.json");
    }

    #[test]
    fn other_events_are_ignored_and_malformed_ones_say_why() {
        let mut restore = created("items/a.json");
        restore["detail-type"] = json!("Object Restore Completed");
        assert_eq!(decode(restore).unwrap(), None);
        let mut other = created("items/a.json");
        other["source"] = json!("aws.ec2");
        assert_eq!(decode(other).unwrap(), None);
        let mut no_sequencer = created("items/a.json");
        no_sequencer["detail"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("sequencer");
        assert!(decode(no_sequencer).unwrap_err().contains("sequencer"));
        assert!(decode(json!({"Records": []})).is_err());
        assert!(decode(created("items/%zz.json"))
            .unwrap_err()
            .contains("decoded"));
    }
}
