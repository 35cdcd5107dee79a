//! Test data: JSON documents, the items uploaded for a section, and the S3 records and API requests for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use aws_lambda_events::s3::S3EventRecord;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http::Method;

use s3kv::adapters::{s3::S3Store, valkey::ValkeyCache};
use s3kv::config::Config;
use s3kv::percent;
use s3kv::ports::Etag;
use s3kv::read::Reader;
use s3kv::s3_event::{self, EventName, ObjectChange};
use s3kv::sequencer::Sequencer;
use s3kv::sync::Syncer;

use crate::BUCKET;

pub(crate) fn json_body(tag: &str, i: usize, size: usize) -> String {
    let head = format!(
        "{{\"id\":{i},\"name\":\"{tag}-{i}\",\"enabled\":{},\"tags\":[\"bench\",\"s3kv\"],\"pad\":\"",
        i.is_multiple_of(2)
    );
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = head;
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    debug_assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok());
    s
}

pub(crate) static SEQUENCE: AtomicU64 = AtomicU64::new(1_000_000);

pub(crate) fn next_sequencer() -> Sequencer {
    Sequencer::from_counter(SEQUENCE.fetch_add(1, Ordering::SeqCst))
}

pub(crate) fn created(object_key: &str, etag: &Etag, size: usize) -> S3EventRecord {
    s3_event::record(&ObjectChange {
        name: EventName::Put,
        bucket: BUCKET,
        object_key,
        etag: Some(etag),
        size: size as u64,
        version_id: None,
        sequencer: &next_sequencer(),
    })
}

/// An API Gateway REST proxy request for `/items/{key+}`, as tests/it/common builds them.
pub(crate) fn request(method: Method, key: &str, body: Option<&str>) -> ApiGatewayProxyRequest {
    let encoded = percent::encode_path(key);
    let mut request = ApiGatewayProxyRequest::default();
    request.http_method = method;
    request.resource = Some("/items/{key+}".into());
    request.path = Some(format!("/items/{encoded}"));
    request.path_parameters = HashMap::from([("key".to_owned(), encoded)]);
    request.body = body.map(str::to_owned);
    request
}

pub(crate) struct Item {
    pub(crate) key: String,
    pub(crate) object_key: String,
    pub(crate) cache_key: String,
    pub(crate) body: Bytes,
    pub(crate) etag: Etag,
}

/// Uploads `n` objects of `size` bytes under `tag/`, 16 at a time.
pub(crate) async fn upload_items(
    s3: &aws_sdk_s3::Client,
    config: &Config,
    tag: &str,
    n: usize,
    size: usize,
) -> Vec<Item> {
    let keys = config.key_map();
    stream::iter(0..n)
        .map(|i| {
            let key = format!("{tag}/item-{i:05}");
            let item_key = s3kv::key::ItemKey::parse(&key).expect("item key");
            let object_key = keys.object_key(&item_key);
            let cache_key = keys.cache_key(&item_key);
            let body = Bytes::from(json_body(tag, i, size));
            async move {
                let out = s3
                    .put_object()
                    .bucket(BUCKET)
                    .key(&object_key)
                    .content_type("application/json")
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await
                    .expect("upload");
                Item {
                    key,
                    object_key,
                    cache_key,
                    body,
                    etag: Etag::new(out.e_tag().expect("etag")),
                }
            }
        })
        .buffered(16)
        .collect()
        .await
}

pub(crate) type BenchReader = Reader<S3Store, ValkeyCache>;
pub(crate) type BenchSyncer = Syncer<S3Store, ValkeyCache>;

/// A create record per item, as S3 would send them.
pub(crate) fn created_records(items: &[Item]) -> Vec<S3EventRecord> {
    items
        .iter()
        .map(|it| created(&it.object_key, &it.etag, it.body.len()))
        .collect()
}

/// Syncs `records` through the real syncer in one event, and checks every record was applied.
pub(crate) async fn sync_all(syncer: &BenchSyncer, records: Vec<S3EventRecord>) -> Duration {
    let n = records.len();
    let event = s3_event::event(records);
    let t0 = Instant::now();
    let report = s3_event::handle(syncer, event, Instant::now() + Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("sync failed: {e}"));
    let elapsed = t0.elapsed();
    assert_eq!(
        (report.applied, report.failed),
        (n, 0),
        "every record must be applied: {report:?}"
    );
    elapsed
}
