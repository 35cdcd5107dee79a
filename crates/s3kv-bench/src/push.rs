//! Push through s3kv-local (AppSync Events' WebSocket protocol, src/push/mod.rs), on the propagation section's
//! s3kv-local, beside the watch section's long-poll as a baseline measured on the same writes:
//!
//! * `S3KV_BENCH_PUSH_SUBSCRIBERS` (10,000) WebSocket connections, each subscribed to the prefix topic `push/`, and
//!   one in [`KEY_SHARE`] also to one of the [`KEYS`] key topics; each connection is one tokio task of this
//!   process reading frames off its socket (a minimal client: the handshake, masked text frames out, unmasked
//!   frames in), so the client costs little beside the server on the same cores;
//! * `S3KV_BENCH_PUSH_WRITES` (50) API PUTs, one at a time, each once [`S3KV_BENCH_PUSH_WAITERS`](Settings)
//!   (100) long-poll waiters (`GET ?wait=25` with `If-None-Match`, the watch section's) wait on the written key;
//!   per delivery the time from sending the PUT (and from its answer) to the subscriber's receipt, over all
//!   deliveries; per write the first delivery (about when the sync finished: s3kv-local publishes once the
//!   syncer has applied the change) and the spread to the last; per waiter the same PUT to its answer;
//! * s3kv-local's resident memory (`VmRSS`) before and after opening the connections, per subscriber.
//!
//! Every delivery must be the write's key and exact body, once per subscription; every waiter must answer the
//! change with its body and ETag: anything else stops the run. Each process needs a file descriptor per
//! connection: this one checks its limit first (s3kv-local, its child, inherits it); scripts/bench raises the soft
//! limit to the hard one.

mod client;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use s3kv::push::Change;
use serde_json::Value;

use crate::data::json_body;
use crate::http::{http_client, until_visible};
use crate::load::percentile;
use crate::procs::status_field;
use crate::report::{at_most, Metrics};
use crate::settings::Settings;
use crate::watch::{put, still_waiting, wait_on, woken};
use crate::READ_BODY_BYTES;
use client::{open, read_frame, Socket};

const SECTION: &str = "Push through s3kv-local (WebSocket subscribers, AppSync Events' protocol)";
const API_KEY: &str = "bench-key-0123456789ab";
/// Keys the writes cycle over, all under the prefix every subscriber follows.
const KEYS: usize = 10;
const PREFIX: &str = "push/";
/// One subscriber in this many also follows a key topic.
const KEY_SHARE: usize = 10;
/// Handshakes in flight at once while the connections open.
const OPENING: usize = 128;
/// How long every delivery of one write may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the waiters are given to start waiting before the write (the watch section's, for 100 waiters).
const SETTLE: Duration = Duration::from_secs(1);
/// File descriptors this process needs beside its connections.
const SPARE_FDS: u64 = 256;

/// What the subscribers expect and what they saw.
#[derive(Default)]
struct Shared {
    /// The write in flight: its index, key and body.
    expect: RwLock<Option<Arc<(usize, String, String)>>>,
    received: AtomicUsize,
    /// (write index, receipt) per delivery.
    receipts: Mutex<Vec<(usize, Instant)>>,
    failure: Mutex<Option<String>>,
    closing: AtomicBool,
}

impl Shared {
    fn fail(&self, why: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(why);
    }

    fn check(&self) {
        if let Some(why) = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            panic!("push: {why}");
        }
    }
}

pub(crate) async fn push(settings: &Settings, api: &str, local_pid: u32, m: &mut Metrics) {
    let n = settings.push_subscribers;
    eprintln!("push through s3kv-local: {n} subscribers");
    let soft = open_files_limit();
    assert!(
        soft >= n as u64 + SPARE_FDS,
        "{n} subscribers need about {} open files in this process and in s3kv-local; the limit is {soft}: raise it \
         (`ulimit -n {}`; scripts/bench raises the soft limit to the hard one) or lower S3KV_BENCH_PUSH_SUBSCRIBERS",
        n as u64 + SPARE_FDS,
        n as u64 + SPARE_FDS
    );
    let client = http_client();
    let host = api.trim_start_matches("http://").to_owned();
    let url = |k: usize| format!("{api}/items/{PREFIX}k{k:03}");
    let body = |i: usize| json_body("push", i, READ_BODY_BYTES);

    let mut etags = Vec::with_capacity(KEYS);
    for k in 0..KEYS {
        let b = body(k);
        etags.push(put(&client, &url(k), &b).await);
        until_visible(&client, &url(k), &b).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = || status_field(local_pid, "VmRSS:").expect("s3kv-local's VmRSS") as f64;
    let own_rss = || status_field(std::process::id(), "VmRSS:").expect("own VmRSS") as f64;
    let (rss_before, own_before) = (rss(), own_rss());

    // Open every connection; each, once subscribed, is read by its own task.
    let shared = Arc::new(Shared::default());
    let key_of = |c: usize| (c.is_multiple_of(KEY_SHARE)).then_some((c / KEY_SHARE) % KEYS);
    let mut key_subscribers = [0usize; KEYS];
    (0..n)
        .filter_map(key_of)
        .for_each(|k| key_subscribers[k] += 1);
    let started = Instant::now();
    let mut opening = futures::stream::iter(0..n)
        .map(|c| {
            let host = host.clone();
            async move {
                let socket = tokio::time::timeout(Duration::from_secs(60), open(&host, key_of(c)))
                    .await
                    .unwrap_or_else(|_| Err("no answer within 60 s".to_owned()))
                    .unwrap_or_else(|e| panic!("subscriber {c}: {e}"));
                (c, socket)
            }
        })
        .buffer_unordered(OPENING);
    let mut readers = Vec::with_capacity(n);
    while let Some((c, socket)) = opening.next().await {
        let key = key_of(c).map(|k| format!("{PREFIX}k{k:03}"));
        readers.push(tokio::spawn(read(c, socket, key, shared.clone())));
    }
    let opened = started.elapsed();
    eprintln!("  {n} subscribers connected and subscribed in {opened:.1?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.check();
    let (rss_after, own_after) = (rss(), own_rss());

    // The writes, each with long-poll waiters on its key.
    let waiters_n = settings.push_waiters;
    let mut times = Vec::with_capacity(settings.push_writes);
    let mut waits = Vec::with_capacity(settings.push_writes * waiters_n);
    for w in 0..settings.push_writes {
        let i = KEYS + w;
        let (k, b) = (i % KEYS, body(i));
        let mut waiters: Vec<_> = (0..waiters_n)
            .map(|_| wait_on(&client, &url(k), &etags[k]))
            .collect();
        tokio::time::sleep(SETTLE).await;
        for waiter in &mut waiters {
            still_waiting(waiter, &url(k)).await;
        }
        shared.check();
        let expected = n + key_subscribers[k];
        shared.received.store(0, Ordering::SeqCst);
        *shared.expect.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new((w, format!("{PREFIX}k{k:03}"), b.clone())));
        let t0 = Instant::now();
        let etag = put(&client, &url(k), &b).await;
        let ack = Instant::now();
        let deadline = t0 + DELIVERY_TIMEOUT;
        while shared.received.load(Ordering::SeqCst) < expected {
            shared.check();
            assert!(
                Instant::now() < deadline,
                "write {w}: {} of {expected} deliveries within {DELIVERY_TIMEOUT:?}",
                shared.received.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for waiter in waiters {
            let at = woken(waiter, &url(k), &b, &etag).await;
            waits.push(ns(at.saturating_duration_since(t0)));
        }
        shared.check();
        let got = shared.received.load(Ordering::SeqCst);
        assert_eq!(
            got, expected,
            "write {w}: deliveries beyond one per subscription"
        );
        *shared.expect.write().unwrap_or_else(|e| e.into_inner()) = None;
        etags[k] = etag;
        times.push((t0, ack));
    }
    shared.closing.store(true, Ordering::SeqCst);
    readers.iter().for_each(|r| r.abort());
    let receipts = std::mem::take(&mut *shared.receipts.lock().unwrap_or_else(|e| e.into_inner()));

    // Per delivery: from the PUT sent, from its answer; per write: the first delivery and the spread.
    let mut from_put = Vec::with_capacity(receipts.len());
    let mut from_ack = Vec::with_capacity(receipts.len());
    let mut before_ack = 0usize;
    let mut span = vec![(u64::MAX, 0u64); times.len()];
    for (w, at) in &receipts {
        let (t0, ack) = times[*w];
        let d = ns(at.saturating_duration_since(t0));
        from_put.push(d);
        if *at < ack {
            before_ack += 1;
        }
        from_ack.push(ns(at.saturating_duration_since(ack)));
        span[*w] = (span[*w].0.min(d), span[*w].1.max(d));
    }
    let put_ms: Vec<u64> = times.iter().map(|(t0, ack)| ns(*ack - *t0)).collect();
    let mut first: Vec<u64> = span.iter().map(|s| s.0).collect();
    let mut spread: Vec<u64> = span.iter().map(|s| s.1 - s.0).collect();
    let mut put_sorted = put_ms.clone();
    for v in [
        &mut from_put,
        &mut from_ack,
        &mut first,
        &mut spread,
        &mut waits,
        &mut put_sorted,
    ] {
        v.sort_unstable();
    }
    let ms = |v: &[u64], p: f64| percentile(v, p) as f64 / 1e6;
    let max = |v: &[u64]| v[v.len() - 1] as f64 / 1e6;
    eprintln!(
        "  {} deliveries ({before_ack} before the PUT's answer), {} waits",
        receipts.len(),
        waits.len()
    );
    m.add(
        SECTION,
        "push.subscribers",
        "subscribers (WebSocket connections)",
        "connections",
        n as f64,
    );
    m.add(
        SECTION,
        "push.key_subscriptions",
        "of which also on a key topic",
        "connections",
        key_subscribers.iter().sum::<usize>() as f64,
    );
    m.add(
        SECTION,
        "push.deliveries",
        "deliveries checked (key and exact body)",
        "deliveries",
        receipts.len() as f64,
    );
    m.add(
        SECTION,
        "push.open.s",
        "open and subscribe every connection",
        "s",
        opened.as_secs_f64(),
    );
    m.add(
        SECTION,
        "push.put.p50",
        "API PUT answered: p50",
        "ms",
        ms(&put_sorted, 50.0),
    );
    m.add(
        SECTION,
        "push.deliver.p50",
        "API PUT sent → a subscriber has the change: p50",
        "ms",
        ms(&from_put, 50.0),
    );
    m.add(
        SECTION,
        "push.deliver.p99",
        "API PUT sent → a subscriber has the change: p99",
        "ms",
        ms(&from_put, 99.0),
    );
    m.add(
        SECTION,
        "push.deliver.max",
        "API PUT sent → a subscriber has the change: slowest",
        "ms",
        max(&from_put),
    );
    m.add(
        SECTION,
        "push.after_ack.p50",
        "API PUT answered → a subscriber has the change: p50",
        "ms",
        ms(&from_ack, 50.0),
    );
    m.add(
        SECTION,
        "push.after_ack.p99",
        "API PUT answered → a subscriber has the change: p99",
        "ms",
        ms(&from_ack, 99.0),
    );
    m.add(
        SECTION,
        "push.first.p50",
        "API PUT sent → the first subscriber has it (≈ the sync done): p50",
        "ms",
        ms(&first, 50.0),
    );
    m.add(
        SECTION,
        "push.spread.p50",
        "first → last subscriber of one write (the fan-out): p50",
        "ms",
        ms(&spread, 50.0),
    );
    m.add(
        SECTION,
        "push.spread.p99",
        "first → last subscriber of one write (the fan-out): p99",
        "ms",
        ms(&spread, 99.0),
    );
    m.add(
        SECTION,
        "push.longpoll.p50",
        &format!(
            "baseline, {waiters_n} long-poll waiters on the same writes: API PUT sent → wake, p50"
        ),
        "ms",
        ms(&waits, 50.0),
    );
    m.add(
        SECTION,
        "push.longpoll.p99",
        &format!(
            "baseline, {waiters_n} long-poll waiters on the same writes: API PUT sent → wake, p99"
        ),
        "ms",
        ms(&waits, 99.0),
    );
    m.add_target(
        SECTION,
        "push.over_longpoll",
        "push p99 − long-poll wake p99, same writes",
        "ms",
        ms(&from_put, 99.0) - ms(&waits, 99.0),
        at_most(50.0),
    );
    m.add(
        SECTION,
        "push.rss.before",
        "s3kv-local RSS before the connections",
        "MiB",
        rss_before / 1024.0,
    );
    m.add(
        SECTION,
        "push.rss.subscribed",
        "s3kv-local RSS with every subscriber",
        "MiB",
        rss_after / 1024.0,
    );
    m.add(
        SECTION,
        "push.rss.per_subscriber",
        "s3kv-local memory per subscriber (RSS growth / subscribers)",
        "KiB",
        (rss_after - rss_before) / n as f64,
    );
    m.add(
        SECTION,
        "push.client_rss.per_subscriber",
        "the bench's own (client) memory per subscriber",
        "KiB",
        (own_after - own_before) / n as f64,
    );
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// This process's soft limit on open files (`/proc/self/limits`).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .map(|v| v.parse().unwrap_or(u64::MAX))
        .unwrap_or(u64::MAX)
}

/// Reads one connection's frames until the run ends; each delivery must be the write in flight, once per
/// subscription.
async fn read(c: usize, mut socket: Socket, key: Option<String>, shared: Arc<Shared>) {
    let mut last = [None::<usize>; 2];
    loop {
        let frame = read_frame(&mut socket).await;
        let at = Instant::now();
        let payload = match frame {
            Ok((0x1, payload)) => payload,
            Ok((0x9 | 0xA, _)) => continue,
            ended => {
                if !shared.closing.load(Ordering::SeqCst) {
                    let why = match ended {
                        Ok((op, _)) => format!("frame opcode {op:#x}"),
                        Err(e) => e.to_string(),
                    };
                    shared.fail(format!("subscriber {c}'s connection ended: {why}"));
                }
                return;
            }
        };
        let message: Value = match serde_json::from_slice(&payload) {
            Ok(v) => v,
            Err(e) => return shared.fail(format!("subscriber {c}: not JSON: {e}")),
        };
        if message["type"] == "ka" {
            continue;
        }
        let expect = shared
            .expect
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let verdict = (|| {
            let (w, want_key, want_body) = expect.as_deref().ok_or("no write in flight")?;
            if message["type"] != "data" {
                return Err("not a data message");
            }
            let change: Change = serde_json::from_str(message["event"].as_str().ok_or("no event")?)
                .map_err(|_| "the event is not a change")?;
            if change.key != *want_key
                || change.deleted
                || change.body.as_deref() != Some(want_body.as_str())
            {
                return Err("not the write's key and exact body");
            }
            let slot = match message["id"].as_str() {
                Some("p") => 0,
                Some("k") if key.as_deref() == Some(want_key.as_str()) => 1,
                _ => return Err("on a subscription that does not cover the key"),
            };
            if last[slot] == Some(*w) {
                return Err("a second delivery of one write on one subscription");
            }
            last[slot] = Some(*w);
            Ok(*w)
        })();
        match verdict {
            Ok(w) => {
                shared
                    .receipts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((w, at));
                shared.received.fetch_add(1, Ordering::SeqCst);
            }
            Err(why) => {
                let text = String::from_utf8_lossy(&payload);
                let head: String = text.chars().take(300).collect();
                return shared.fail(format!("subscriber {c}: {why}: {head}"));
            }
        }
    }
}
