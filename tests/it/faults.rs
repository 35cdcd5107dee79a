//! Faults injected into the real servers: S3 answering 503, and valkey-server killed and restarted in the middle
//! of a stream of writes. What must hold: a sync that could not complete fails its invocation (so Lambda
//! redelivers it), retries stay inside the invocation's time and never multiply with the SDK's, and once the
//! faults end, redelivery and reconcile leave the cache equal to S3.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use common::{Fault, FaultyS3, Stack, Valkey, S3};
use futures::StreamExt;
use http::Method;
use s3kv::adapters::s3::S3Store;
use s3kv::api;
use s3kv::config::Config;
use s3kv::ports::{Etag, ObjectStore, StoreError};
use s3kv::{percent, s3_event::EventName};

fn etag_of(response: &common::Response) -> Etag {
    Etag::new(response.header("etag").expect("ETag header"))
}

/// Runs the writer's handler as API Gateway would, with `budget` left in the invocation.
async fn write_within(stack: &Stack, key: &str, body: &str, budget: Duration) -> common::Response {
    let request = common::request(Method::PUT, &percent::encode_path(key), Some(body));
    api::handle_write(
        &stack.writer,
        &stack.access,
        &request,
        Instant::now() + budget,
    )
    .await
    .into()
}

#[tokio::test]
async fn the_s3_client_the_functions_use_makes_one_request_per_attempt() {
    let s3 = S3::start().await;
    let proxy = FaultyS3::start(s3.port()).await;
    proxy.set(Fault::All);

    // The production constructor (what writer, reader, syncer and reconcile call), pointed at the proxy.
    let env = HashMap::from([
        ("S3KV_BUCKET", common::BUCKET.to_owned()),
        ("AWS_ENDPOINT_URL_S3", proxy.endpoint.clone()),
    ]);
    let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&proxy.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "static",
        ));
    let production = S3Store::from_loader(loader, &config).await;
    // And the one the local stack uses.
    let local = S3Store::new(proxy.client(), common::BUCKET);

    for (name, store) in [("from_config", &production), ("endpoint_client", &local)] {
        proxy.reset_counts();
        let result = store.get("items/k.json", None, 1024).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{name}: a 503 is an outage worth retrying: {result:?}"
        );
        assert_eq!(
            proxy.seen(),
            1,
            "{name}: the SDK retried on its own; s3kv's retries would multiply with it"
        );
    }
}

#[tokio::test]
async fn s3_503s_are_retried_inside_the_deadline_and_fail_the_invocation_when_they_persist() {
    let s3 = S3::start().await;
    let proxy = FaultyS3::start(s3.port()).await;
    let stack = Stack::assemble(Valkey::start(), s3, proxy.client(), &[]).await;
    let object_key = stack.object_key("k");

    // Every other request fails: each call succeeds on its retry, and nothing is lost or doubled.
    proxy.set(Fault::EveryOther);
    let mut expected = BTreeMap::new();
    for i in 0..10 {
        let key = format!("k{i}");
        let body = format!("{{\"v\":{i}}}");
        let put = write_within(&stack, &key, &body, Duration::from_secs(10)).await;
        assert_eq!(put.status, 201, "{}", put.body);
        let record = stack.created(&stack.object_key(&key), &etag_of(&put));
        let report = stack
            .sync(vec![record])
            .await
            .expect("sync succeeds on retry");
        assert_eq!(report.applied, 1);
        expected.insert(key, body);
    }
    assert!(proxy.failed() >= 20, "the fault was not injected");
    for (key, body) in &expected {
        let read = stack.get(key).await;
        assert_eq!((read.status, read.body.as_str()), (200, body.as_str()));
        assert_eq!(
            stack.s3.body(&stack.object_key(key)).await.as_deref(),
            Some(body.as_bytes())
        );
    }

    // S3 down for good: the writer answers 503 within its time, after retrying; nothing is written.
    let etag = etag_of(&stack.put("k", "{\"v\":\"old\"}").await);
    stack
        .sync(vec![stack.created(&object_key, &etag)])
        .await
        .unwrap();
    proxy.set(Fault::All);
    proxy.reset_counts();
    let budget = Duration::from_millis(1500);
    let started = Instant::now();
    let put = write_within(&stack, "k", "{\"v\":\"new\"}", budget).await;
    assert_eq!(
        (put.status, put.json()["error"].as_str()),
        (503, Some("unavailable")),
        "{}",
        put.body
    );
    assert!(
        started.elapsed() < budget,
        "answered after the deadline: {:?}",
        started.elapsed()
    );
    assert!(
        proxy.seen() >= 2,
        "a 503 must be retried while time remains"
    );

    // The syncer fails the invocation (Lambda redelivers it) and leaves the cache as it was.
    proxy.reset_counts();
    let update = stack.created(
        &object_key,
        &Etag::new("\"0123456789abcdef0123456789abcdef\""),
    );
    let error = stack
        .sync_within(vec![update], Duration::from_millis(1500))
        .await
        .unwrap_err();
    assert_eq!((error.failed, error.records), (1, 1));
    assert!(proxy.seen() >= 2, "the sync's read was not retried");

    // Reads go on: a hit from Valkey, a miss as a clear 503.
    let hit = stack.get("k").await;
    assert_eq!(
        (hit.status, hit.body.as_str(), hit.header("x-cache")),
        (200, "{\"v\":\"old\"}", Some("HIT"))
    );
    let reader_request = common::request(Method::GET, "never-written", None);
    let miss: common::Response = api::handle_read(
        &stack.reader,
        &stack.access,
        &reader_request,
        Instant::now() + Duration::from_secs(1),
    )
    .await
    .into();
    assert_eq!(
        (miss.status, miss.json()["error"].as_str()),
        (503, Some("unavailable"))
    );

    // S3 is back: the write that got a 503 was not applied, and writing again works.
    proxy.set(Fault::None);
    assert_eq!(
        stack.s3.body(&object_key).await.as_deref(),
        Some(&b"{\"v\":\"old\"}"[..])
    );
    assert_eq!(stack.put("k", "{\"v\":\"new\"}").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn valkey_killed_and_restarted_mid_stream_loses_nothing_after_redelivery() {
    // 1,000 writes before the outage, 500 during it (the syncs that must fail, and 100 keys written only then),
    // 1,000 after it (every rotating key is written again after its outage-time records, so a redelivered old
    // record that rolled a key back would show). It was 10,000 writes around the same 500-write outage: the
    // longer stream only repeated the before and after parts, and took 8 of the suite's 15 minutes against moto.
    const WRITES: usize = 2_500;
    const OUTAGE: std::ops::Range<usize> = 1_000..1_500;
    let s3 = S3::start().await;
    let client = s3.client.clone();
    let stack = Stack::assemble(
        Valkey::start_persistent(),
        s3,
        client,
        // Short cache timeouts so that failing calls fail quickly; the invocation budget below bounds retries.
        &[
            ("S3KV_SYNC_CACHE_TIMEOUT_MS", "200"),
            ("S3KV_CACHE_TIMEOUT_MS", "100"),
        ],
    )
    .await;

    // Keys: 500 written over and over (with deletes), and one key per fifth write inside the outage that is
    // written only then, so a sync swallowed during the outage could not be repaired by a later write.
    let key_of = |i: usize| {
        if OUTAGE.contains(&i) && i.is_multiple_of(5) {
            format!("outage/{i}")
        } else {
            format!("k/{}", i % 500)
        }
    };
    let failed_invocations = Mutex::new(Vec::new());
    let succeeded = std::sync::atomic::AtomicUsize::new(0);
    let bad_reads = Mutex::new(Vec::new());

    futures::stream::iter(0..WRITES)
        .map(|i| {
            let (stack, key) = (&stack, key_of(i));
            let (failed_invocations, succeeded, bad_reads) =
                (&failed_invocations, &succeeded, &bad_reads);
            async move {
                if i == OUTAGE.start {
                    stack.valkey.stop();
                }
                if i == OUTAGE.end {
                    stack.valkey.restart();
                }
                let object_key = stack.object_key(&key);
                let record = if i % 10 == 9 && key.starts_with("k/") {
                    let response = stack.delete(&key).await;
                    match response.status {
                        204 => stack.record(EventName::Delete, &object_key, None),
                        404 => return, // nothing deleted, nothing notified
                        _ => panic!("delete failed: {}", response.body),
                    }
                } else {
                    let response = stack.put(&key, &format!("{{\"write\":{i}}}")).await;
                    assert!(matches!(response.status, 200 | 201), "{}", response.body);
                    stack.created(&object_key, &etag_of(&response))
                };
                // One record per invocation, as S3 delivers them, with a tight Lambda budget.
                match stack
                    .sync_within(vec![record.clone()], Duration::from_millis(600))
                    .await
                {
                    Ok(report) => {
                        assert_eq!(report.failed, 0);
                        succeeded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(_) => failed_invocations.lock().unwrap().push(record),
                }
                // Reads never fail, whether Valkey is up or not.
                let read = stack.get(&key).await;
                if !matches!(read.status, 200 | 404) {
                    bad_reads
                        .lock()
                        .unwrap()
                        .push((key, read.status, read.body));
                }
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;

    let failed = failed_invocations.into_inner().unwrap();
    assert!(
        failed.len() >= OUTAGE.len() / 2,
        "only {} invocations failed during a {}-write outage: syncs that could not reach Valkey must fail",
        failed.len(),
        OUTAGE.len()
    );
    assert_eq!(bad_reads.into_inner().unwrap(), vec![]);

    // Lambda redelivers every failed invocation (in any order, here newest first), after Valkey is back.
    for record in failed.into_iter().rev() {
        stack
            .sync(vec![record])
            .await
            .expect("redelivery succeeds once Valkey is back");
    }

    // Zero keys differ from S3: compare every key ever written, through the reader and in the raw cache.
    let mut keys: Vec<String> = (0..WRITES).map(key_of).collect();
    keys.sort();
    keys.dedup();
    let mut differ = Vec::new();
    for key in &keys {
        let truth = stack.s3.body(&stack.object_key(key)).await;
        let entry = stack.cache_entry(key).await;
        let cached = entry.get("b").map(|b| b.as_bytes().to_vec());
        if cached != truth {
            differ.push(key.clone());
        }
    }
    assert_eq!(
        differ,
        Vec::<String>::new(),
        "keys whose cache differs from S3"
    );

    // With nothing left to repair, a reconcile finds exactly that.
    let report = stack.reconcile().await.unwrap();
    assert_eq!(
        (report.loaded, report.removed, report.failed),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(
        report.checked,
        keys.len() - count_deleted(&stack, &keys).await
    );
}

async fn count_deleted(stack: &Stack, keys: &[String]) -> usize {
    let mut deleted = 0;
    for key in keys {
        if stack.s3.body(&stack.object_key(key)).await.is_none() {
            deleted += 1;
        }
    }
    deleted
}
