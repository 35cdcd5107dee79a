//! Watch through s3kv-local (`GET /items/{key}?wait=25` with `If-None-Match`), on the propagation section's
//! s3kv-local and valkey-server:
//!
//! * wake latency: one waiter at a time waits on an item; once it waits, a PUT of a new value goes through the
//!   API, and the figure is the time from sending the PUT until the waiter's answer (200, the new body, the PUT's
//!   ETag) has arrived. It is compared with this run's propagation (the same PUT until a polling GET shows it);
//! * what waiting costs in Valkey commands, as Valkey counts them (`INFO commandstats`, less the INFO calls that
//!   read it): per waiting client per second while nothing changes, per waiter to start a wait, and per waiter
//!   for one change of the item they all wait on; each less the same window with no waiter at all.
//!
//! A waiter must not answer before the change, and must answer it: any other answer stops the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::data::json_body;
use crate::http::{call, http_client, request, until_visible, HttpClient, Reply};
use crate::load::percentile;
use crate::procs::Valkey;
use crate::report::{at_most, Metrics};
use crate::settings::Settings;
use crate::READ_BODY_BYTES;

const SECTION: &str = "Watch through s3kv-local (GET ?wait=25 with If-None-Match)";
/// The wait every waiter asks for: the longest, so none ends inside a measured window.
const WAIT: &str = "25";
/// Keys the wake latency cycles over.
const KEYS: usize = 10;
/// How long one waiter is given to start waiting (its request, the feed's tail and the item's GET) before the
/// write.
const SETTLE: Duration = Duration::from_millis(50);
/// The same for many waiters at once.
const SETTLE_MANY: Duration = Duration::from_secs(1);
/// How long a change's commands are counted from its PUT: the write, the sync, every waiter's wake (which may
/// include a waiter's 1 s poll when it cannot wait on the feed).
const CHANGE_WINDOW: Duration = Duration::from_secs(2);
/// Longer than the feed hub's blocking read (`XREAD BLOCK 5000`, src/adapters/valkey/feed.rs), after which a
/// hub that nobody listens to any more ends: the no-waiter baselines start after it, with no hub running.
const HUB_END: Duration = Duration::from_secs(6);
/// Concurrent waiters for the command counts.
const WAITERS: [usize; 2] = [1, 100];

pub(crate) async fn watch(settings: &Settings, api: &str, valkey: &Valkey, m: &mut Metrics) {
    eprintln!("watch through s3kv-local");
    let port = valkey
        .url
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {:?}", valkey.url));
    let client = http_client();
    let url = |k: usize| format!("{api}/items/watch/k{k:03}");
    let body = |i: usize| json_body("watch", i, READ_BODY_BYTES);

    // Write → waiter wakes, one write at a time, on items that are cached.
    let mut etags = Vec::with_capacity(KEYS);
    for k in 0..KEYS {
        let b = body(k);
        etags.push(put(&client, &url(k), &b).await);
        until_visible(&client, &url(k), &b).await;
    }
    // (wake, PUT answered), in ns from sending the PUT.
    let mut samples = Vec::with_capacity(settings.watch_writes);
    for i in KEYS..KEYS + settings.watch_writes {
        let (k, b) = (i % KEYS, body(i));
        let mut waiter = wait_on(&client, &url(k), &etags[k]);
        tokio::time::sleep(SETTLE).await;
        still_waiting(&mut waiter, &url(k)).await;
        let t0 = Instant::now();
        let etag = put(&client, &url(k), &b).await;
        let put_answered = t0.elapsed();
        let at = woken(waiter, &url(k), &b, &etag).await;
        let ns = |d: Duration| d.as_nanos() as u64;
        samples.push((ns(at.saturating_duration_since(t0)), ns(put_answered)));
        etags[k] = etag;
    }
    samples.sort_unstable();
    let slowest: Vec<String> = samples
        .iter()
        .rev()
        .take(5)
        .map(|(wake, put)| format!("{:.1} (PUT {:.1})", *wake as f64 / 1e6, *put as f64 / 1e6))
        .collect();
    eprintln!("  slowest wakes, ms: {}", slowest.join(", "));
    let wake: Vec<u64> = samples.iter().map(|(wake, _)| *wake).collect();
    // What watching adds to the write's own answer (negative when the waiter's answer came first).
    let mut after_put: Vec<f64> = samples
        .iter()
        .map(|(wake, put)| (*wake as f64 - *put as f64) / 1e6)
        .collect();
    after_put.sort_by(f64::total_cmp);
    let ms = |p: f64| percentile(&wake, p) as f64 / 1e6;
    m.add(
        SECTION,
        "watch.wake.p50",
        "API PUT → the waiting GET answers it: p50",
        "ms",
        ms(50.0),
    );
    m.add(
        SECTION,
        "watch.wake.p99",
        "API PUT → the waiting GET answers it: p99",
        "ms",
        ms(99.0),
    );
    m.add(
        SECTION,
        "watch.wake.max",
        "API PUT → the waiting GET answers it: slowest",
        "ms",
        wake[wake.len() - 1] as f64 / 1e6,
    );
    m.add(
        SECTION,
        "watch.wake.after_put.p99",
        "the waiting GET's answer after the PUT's own: p99",
        "ms",
        after_put[(after_put.len() * 99)
            .div_ceil(100)
            .clamp(1, after_put.len())
            - 1],
    );
    if let Some(prop) = m.0.iter().find(|x| x.id == "prop.api.p99").map(|x| x.value) {
        m.add_target(
            SECTION,
            "watch.wake.over_prop",
            "wake p99 − propagation p99 (API PUT → visible on GET), same run",
            "ms",
            ms(99.0) - prop,
            at_most(20.0),
        );
    }

    // Valkey commands. One item all waiters wait on, cached before the baselines.
    let shared = format!("{api}/items/watch/shared");
    let mut version = KEYS + settings.watch_writes;
    let mut b = body(version);
    let mut etag = put(&client, &shared, &b).await;
    until_visible(&client, &shared, &b).await;
    tokio::time::sleep(HUB_END).await;
    let idle = settings.watch_idle;
    let before = commands(port).await;
    tokio::time::sleep(idle).await;
    let idle_base = delta(&before, &commands(port).await);
    eprintln!("  no waiter, {idle:?}: {}", idle_base.1);
    version += 1;
    b = body(version);
    let before = commands(port).await;
    let t0 = Instant::now();
    etag = changed(&client, &shared, &b, &etag).await;
    tokio::time::sleep_until((t0 + CHANGE_WINDOW).into()).await;
    let change_base = delta(&before, &commands(port).await);
    eprintln!("  one change, no waiter: {}", change_base.1);
    let reply = call(&client, "GET", &shared, None).await;
    assert!(
        is_change(&reply, &b, &etag),
        "{shared} did not show its change within {CHANGE_WINDOW:?}: {} {:?}",
        reply.status,
        reply.etag
    );
    let idle_rate = idle_base.0 as f64 / idle.as_secs_f64();
    m.add(
        SECTION,
        "watch.cmds.idle.base",
        "Valkey commands per second with no waiter (baseline)",
        "/s",
        idle_rate,
    );
    m.add(
        SECTION,
        "watch.cmds.change.base",
        "Valkey commands for one API PUT with no waiter (writer and syncer; baseline)",
        "commands",
        change_base.0 as f64,
    );

    for n in WAITERS {
        let s0 = commands(port).await;
        let started = Instant::now();
        let mut waiters: Vec<_> = (0..n).map(|_| wait_on(&client, &shared, &etag)).collect();
        tokio::time::sleep(SETTLE_MANY).await;
        for waiter in &mut waiters {
            still_waiting(waiter, &shared).await;
        }
        let s1 = commands(port).await;
        let settle = started.elapsed();
        tokio::time::sleep(idle).await;
        let s2 = commands(port).await;
        let window = started.elapsed() - settle;
        for waiter in &mut waiters {
            still_waiting(waiter, &shared).await;
        }
        version += 1;
        b = body(version);
        let t0 = Instant::now();
        let new_etag = put(&client, &shared, &b).await;
        for waiter in waiters {
            woken(waiter, &shared, &b, &new_etag).await;
        }
        let all_woken = t0.elapsed();
        assert!(
            all_woken < CHANGE_WINDOW,
            "{n} waiters took {all_woken:?} to answer a change, longer than the {CHANGE_WINDOW:?} it is counted for"
        );
        tokio::time::sleep_until((t0 + CHANGE_WINDOW).into()).await;
        let s3 = commands(port).await;
        etag = new_etag;

        let (start, idle_cmds, change) = (delta(&s0, &s1), delta(&s1, &s2), delta(&s2, &s3));
        eprintln!("  {n} waiter(s) starting, {settle:?}: {}", start.1);
        eprintln!("  {n} waiter(s) waiting, {window:?}: {}", idle_cmds.1);
        eprintln!(
            "  {n} waiter(s), one change (all answered in {all_woken:?}): {}",
            change.1
        );
        let per = n as f64;
        m.add(
            SECTION,
            &format!("watch.cmds.start.{n}"),
            &format!("{n} waiter(s): Valkey commands to start a wait, per waiter"),
            "commands",
            (start.0 as f64 - idle_rate * settle.as_secs_f64()) / per,
        );
        m.add(
            SECTION,
            &format!("watch.cmds.idle.{n}"),
            &format!("{n} waiter(s), no change: Valkey commands per waiting client per second"),
            "/s",
            (idle_cmds.0 as f64 - idle_rate * window.as_secs_f64()) / (per * window.as_secs_f64()),
        );
        m.add(
            SECTION,
            &format!("watch.idle_wake.{n}"),
            &format!(
                "{n} waiter(s) after {:.0} s of waiting: API PUT → every waiter answered",
                (settle + window).as_secs_f64()
            ),
            "ms",
            all_woken.as_secs_f64() * 1e3,
        );
        m.add(
            SECTION,
            &format!("watch.cmds.change.{n}"),
            &format!("{n} waiter(s) on the changed item: Valkey commands per waiter per change"),
            "commands",
            (change.0 as f64 - change_base.0 as f64) / per,
        );
    }
}

/// Sends `GET url?wait=25` with `If-None-Match: etag`; its answer and when it arrived.
pub(crate) fn wait_on(client: &HttpClient, url: &str, etag: &str) -> JoinHandle<(Reply, Instant)> {
    let (client, url, etag) = (
        client.clone(),
        format!("{url}?wait={WAIT}"),
        etag.to_owned(),
    );
    tokio::spawn(async move {
        let reply = request(&client, "GET", &url, None, &[("if-none-match", &etag)]).await;
        (reply, Instant::now())
    })
}

/// Stops the run if the waiter has answered: nothing changed yet.
pub(crate) async fn still_waiting(waiter: &mut JoinHandle<(Reply, Instant)>, url: &str) {
    if waiter.is_finished() {
        let (reply, _) = waiter
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        panic!(
            "a wait on {url} answered {} (ETag {:?}) before the item changed",
            reply.status, reply.etag
        );
    }
}

/// When the waiter's answer arrived; stops the run unless it is the change (200, `body`, `etag`).
pub(crate) async fn woken(
    waiter: JoinHandle<(Reply, Instant)>,
    url: &str,
    body: &str,
    etag: &str,
) -> Instant {
    let (reply, at) = waiter
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    assert!(
        is_change(&reply, body, etag),
        "a wait on {url} answered {} (ETag {:?}, {} B), not the change to {etag}",
        reply.status,
        reply.etag,
        reply.body.len()
    );
    at
}

fn is_change(reply: &Reply, body: &str, etag: &str) -> bool {
    reply.status == 200 && reply.body == body.as_bytes() && reply.etag.as_deref() == Some(etag)
}

/// An API PUT that must replace or create the item; its ETag, quoted as sent.
pub(crate) async fn put(client: &HttpClient, url: &str, body: &str) -> String {
    let reply = call(client, "PUT", url, Some(body)).await;
    assert!(
        matches!(reply.status, 200 | 201),
        "PUT {url} answered {}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    reply
        .etag
        .unwrap_or_else(|| panic!("PUT {url} answered no ETag"))
}

/// A PUT that must replace the item, whose ETag was `old`.
async fn changed(client: &HttpClient, url: &str, body: &str, old: &str) -> String {
    let etag = put(client, url, body).await;
    assert_ne!(etag, old, "PUT {url} of a new value kept its ETag");
    etag
}

/// Calls so far per command, as Valkey's `INFO commandstats` counts them, without INFO (this module's probe).
async fn commands(port: u16) -> BTreeMap<String, u64> {
    let reply = tokio::task::spawn_blocking(move || {
        testkit::resp::command(port, &["INFO", "commandstats"])
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let text = match reply {
        Ok(testkit::resp::Reply::Bulk(Some(text))) => text,
        other => panic!("INFO commandstats answered {other:?}"),
    };
    text.lines()
        .filter_map(|line| {
            let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| name != "info")
        .collect()
}

/// The commands between two counts: how many, and which (`xrange 100, get 100, ...`).
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> (u64, String) {
    let mut total = 0;
    let mut which = Vec::new();
    for (name, calls) in after {
        let n = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
        if n > 0 {
            total += n;
            which.push(format!("{name} {n}"));
        }
    }
    if which.is_empty() {
        which.push("none".to_owned());
    }
    (total, format!("{total} commands ({})", which.join(", ")))
}
