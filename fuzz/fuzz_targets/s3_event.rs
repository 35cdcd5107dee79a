//! S3 event decoding: any bytes delivered to the syncer either fail to parse as an event (the invocation fails
//! loudly) or decode record by record without panicking; every record that decodes re-encodes, in AWS's format,
//! to a record that decodes to the same change; and sequencer order is a total order consistent with equality.
#![no_main]

use std::cmp::Ordering;
use std::hash::{DefaultHasher, Hash, Hasher};

use aws_lambda_events::s3::S3Event;
use libfuzzer_sys::fuzz_target;
use s3kv::s3_event::{self, EventName, ObjectChange};
use s3kv::sequencer::Sequencer;
use s3kv::sync::Change;

fn hash(s: &Sequencer) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<S3Event>(data) else {
        return;
    };
    let decoded: Vec<_> = event
        .records
        .iter()
        .filter_map(|r| s3_event::decode(r).ok().flatten())
        .collect();
    for record in &decoded {
        let (name, etag) = match &record.change {
            Change::Created { etag } => (EventName::Put, etag.clone()),
            Change::Removed => (EventName::Delete, None),
        };
        let rebuilt = s3_event::record(&ObjectChange {
            name,
            bucket: "b",
            object_key: &record.object_key,
            etag: etag.as_ref(),
            size: 0,
            version_id: None,
            sequencer: &record.sequencer,
        });
        let again = s3_event::decode(&rebuilt)
            .expect("a record we built decodes")
            .expect("and is acted on");
        assert_eq!(again.object_key, record.object_key);
        assert_eq!(again.sequencer, record.sequencer);
        assert_eq!(again.change, record.change);
    }
    for a in &decoded {
        for b in &decoded {
            let (x, y) = (&a.sequencer, &b.sequencer);
            assert_eq!(x.cmp(y), y.cmp(x).reverse());
            assert_eq!(x == y, x.cmp(y) == Ordering::Equal);
            if x == y {
                assert_eq!(hash(x), hash(y));
            }
        }
    }
});
