//! A full cache, as ElastiCache Serverless is at its storage cap: a real valkey-server with `noeviction` and a
//! `maxmemory` below what it already uses, so it answers every write with OOM. Syncs must count the changes as
//! not cached (never fail and re-queue every event), drop the stale entries, and reads must serve what S3 holds.

use crate::common;

use common::{Stack, ValkeyClient, S3};
use fred::prelude::*;
use s3kv::metrics;
use testkit::valkey::{Options, Valkey};

async fn stack_with_noeviction() -> Stack {
    let valkey = tokio::task::spawn_blocking(|| {
        Valkey::try_start(Options {
            args: vec!["--maxmemory-policy".into(), "noeviction".into()],
            ..Options::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap();
    let s3 = S3::start().await;
    let client = s3.client.clone();
    Stack::assemble(valkey, s3, client, &[]).await
}

/// `maxmemory` in bytes; 1 is below any server's own footprint, 0 is no limit.
async fn set_maxmemory(stack: &Stack, bytes: u64) {
    let answer = testkit::resp::command(
        stack.valkey.port,
        &["CONFIG", "SET", "maxmemory", &bytes.to_string()],
    );
    assert_eq!(answer, Ok(testkit::resp::Reply::Simple("OK".into())));
}

#[tokio::test]
async fn a_full_cache_counts_changes_as_not_cached_and_reads_serve_s3() {
    let stack = stack_with_noeviction().await;
    let etag = stack.s3.upload("items/flag.json", b"{\"v\": 1}").await;
    let report = stack
        .sync(vec![stack.created("items/flag.json", &etag)])
        .await
        .unwrap();
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(stack.get("flag").await.header("x-cache"), Some("HIT"));

    set_maxmemory(&stack, 1).await;
    // Really full: the server itself refuses a plain write.
    let refused: Result<(), _> = stack
        .valkey
        .client()
        .await
        .set("s3kv:probe", "x", None, None, false)
        .await;
    let refused = refused.expect_err("a write over maxmemory is refused");
    assert!(refused.details().starts_with("OOM"), "{refused:?}");

    let v2 = stack.s3.upload("items/flag.json", b"{\"v\": 2}").await;
    let new = stack
        .s3
        .upload("items/new.json", b"{\"fresh\": true}")
        .await;
    let report = stack
        .sync(vec![
            stack.created("items/flag.json", &v2),
            stack.created("items/new.json", &new),
        ])
        .await
        .expect("a full cache is counted, not a failed invocation");
    assert_eq!(
        (report.cache_full, report.failed, report.applied),
        (2, 0, 0),
        "{report:?}"
    );
    let emitted = metrics::for_sync(&report, false);
    let cache_full = emitted.iter().find(|(name, _, _)| *name == "CacheFull");
    assert_eq!(cache_full.map(|(_, _, v)| v.clone()), Some(vec![2.0]));

    // The stale entry is gone, so the reader cannot serve the version before the change.
    assert!(stack.cache_entry("flag").await.is_empty());
    let read = stack.get("flag").await;
    assert_eq!((read.status, read.body.as_str()), (200, "{\"v\": 2}"));
    assert_eq!(read.header("x-cache"), Some("MISS"));
    let read = stack.get("new").await;
    assert_eq!(
        (read.status, read.body.as_str()),
        (200, "{\"fresh\": true}")
    );
    // Its fill was refused too: still a miss, still right.
    assert_eq!(stack.get("new").await.header("x-cache"), Some("MISS"));

    // Room again: the next read fills, and the one after is a hit with the newest value.
    set_maxmemory(&stack, 0).await;
    assert_eq!(stack.get("flag").await.header("x-cache"), Some("MISS"));
    let read = stack.get("flag").await;
    assert_eq!(
        (read.header("x-cache"), read.body.as_str()),
        (Some("HIT"), "{\"v\": 2}")
    );
}

#[tokio::test]
async fn a_delete_into_a_full_cache_drops_the_entry_so_the_item_reads_as_gone() {
    let stack = stack_with_noeviction().await;
    let etag = stack.s3.upload("items/gone.json", b"[1]").await;
    stack
        .sync(vec![stack.created("items/gone.json", &etag)])
        .await
        .unwrap();
    set_maxmemory(&stack, 1).await;
    stack.s3.remove("items/gone.json").await;
    let report = stack
        .sync(vec![stack.removed("items/gone.json")])
        .await
        .expect("counted, not failed");
    assert_eq!((report.cache_full, report.failed), (1, 0), "{report:?}");
    let read = stack.get("gone").await;
    assert_eq!(read.status, 404, "{}", read.body);
}

#[tokio::test]
async fn a_reconcile_into_a_full_cache_counts_the_refused_fills_and_does_not_fail() {
    let stack = stack_with_noeviction().await;
    // Uploaded without notifications: only reconcile would load them.
    for key in ["a", "b", "c"] {
        stack
            .s3
            .upload(&format!("items/missed/{key}.json"), b"{\"missed\": true}")
            .await;
    }
    set_maxmemory(&stack, 1).await;
    let report = stack
        .reconcile()
        .await
        .expect("a full cache is counted, not a failed run");
    assert_eq!(
        (
            report.checked,
            report.cache_full,
            report.loaded,
            report.failed
        ),
        (3, 3, 0, 0),
        "{report:?}"
    );
    let read = stack.get("missed/b").await;
    assert_eq!((read.status, read.header("x-cache")), (200, Some("MISS")));
}
