//! OpenFeature (OFREP) evaluation through s3kv-local, against a plain `GET /items/{key}` of the same items in the
//! same run (issue #35: the goal is at least 0.9× GET's throughput), on the propagation section's s3kv-local:
//!
//! * single evaluation (`POST /ofrep/v1/evaluate/flags/{key}` with a context) vs `GET /items/flags/{key}`, at
//!   concurrency 1 and 8, the two alternating phase by phase so drift hits both alike;
//! * bulk evaluation of every flag (100), and its revalidation (`If-None-Match` → 304), which is what a web
//!   provider's poll costs while nothing changes.
//!
//! Every answer is checked (status, and the value for a 200): a wrong answer stops the run.

use std::sync::Arc;

use crate::http::{call, http_client, request, until_cached, HttpClient};
use crate::load::{run_phase, Sample};
use crate::report::{at_least, Metrics};
use crate::settings::Settings;

const SECTION: &str = "OpenFeature (OFREP) through s3kv-local vs GET";
/// Flags evaluated, each a small object (flags are small).
const FLAGS: usize = 100;
const CONTEXT: &str = r#"{"context":{"targetingKey":"user-1","plan":"pro"}}"#;

fn body(k: usize) -> String {
    format!("{{\"enabled\":true,\"rollout\":{k}}}")
}

pub(crate) async fn ofrep(settings: &Settings, api: &str, m: &mut Metrics) {
    eprintln!("OFREP evaluation through s3kv-local");
    let client = http_client();
    let item = |k: usize| format!("{api}/items/flags/bench/k{k:03}");
    for k in 0..FLAGS {
        let reply = call(&client, "PUT", &item(k), Some(&body(k))).await;
        assert!(matches!(reply.status, 200 | 201), "PUT {}", item(k));
    }
    for k in 0..FLAGS {
        until_cached(&client, &item(k), body(k).as_bytes()).await;
    }

    let api: Arc<str> = Arc::from(api);
    let get = {
        let (client, api) = (client.clone(), Arc::clone(&api));
        move |k: usize| {
            let (client, api) = (client.clone(), Arc::clone(&api));
            async move {
                let reply = call(
                    &client,
                    "GET",
                    &format!("{api}/items/flags/bench/k{k:03}"),
                    None,
                )
                .await;
                if reply.status == 200 && reply.body == body(k).as_bytes() {
                    Ok(())
                } else {
                    Err(format!("GET k{k:03}: {} {:?}", reply.status, reply.body))
                }
            }
        }
    };
    let evaluate = {
        let (client, api) = (client.clone(), Arc::clone(&api));
        move |k: usize| {
            let (client, api) = (client.clone(), Arc::clone(&api));
            async move {
                let url = format!("{api}/ofrep/v1/evaluate/flags/bench/k{k:03}");
                let reply = call(&client, "POST", &url, Some(CONTEXT)).await;
                let want = format!("\"value\":{}", body(k));
                let text = String::from_utf8_lossy(&reply.body);
                if reply.status == 200 && text.contains(&want) {
                    Ok(())
                } else {
                    Err(format!("evaluate k{k:03}: {} {text}", reply.status))
                }
            }
        }
    };

    for concurrency in [1, 8] {
        let (mut gets, mut evals) = (Sample::default(), Sample::default());
        for _ in 0..settings.rounds {
            gets.merge(run_phase(concurrency, settings.phase, FLAGS, get.clone()).await);
            evals.merge(run_phase(concurrency, settings.phase, FLAGS, evaluate.clone()).await);
        }
        let (get_ops, eval_ops) = (gets.ops_per_sec(), evals.ops_per_sec());
        let c = concurrency;
        m.add(
            SECTION,
            &format!("get_c{c}"),
            &format!("GET /items, c={c}"),
            "ops/s",
            get_ops,
        );
        m.add(
            SECTION,
            &format!("get_c{c}_p50"),
            &format!("GET /items, c={c}, p50"),
            "µs",
            gets.pct_us(50.0),
        );
        m.add(
            SECTION,
            &format!("eval_c{c}"),
            &format!("OFREP single evaluation, c={c}"),
            "ops/s",
            eval_ops,
        );
        m.add(
            SECTION,
            &format!("eval_c{c}_p50"),
            &format!("OFREP single evaluation, c={c}, p50"),
            "µs",
            evals.pct_us(50.0),
        );
        m.add_target(
            SECTION,
            &format!("eval_vs_get_c{c}"),
            &format!("OFREP evaluation / GET throughput, c={c}"),
            "×",
            eval_ops / get_ops,
            at_least(0.9),
        );
    }

    // Bulk: every flag in one answer, and the poll that finds nothing changed.
    let bulk = format!("{api}/ofrep/v1/evaluate/flags");
    let first = call(&client, "POST", &bulk, Some(CONTEXT)).await;
    assert_eq!(first.status, 200, "bulk evaluation");
    let etag = first.etag.clone().expect("a bulk ETag");
    let full = bulk_phase(&client, &bulk, None, 200, settings).await;
    let revalidate = bulk_phase(&client, &bulk, Some(etag), 304, settings).await;
    for (id, label, mut sample) in [
        ("bulk", "OFREP bulk evaluation of 100 flags, c=1", full),
        (
            "bulk_304",
            "OFREP bulk revalidation (If-None-Match → 304), c=1",
            revalidate,
        ),
    ] {
        m.add(SECTION, id, label, "ops/s", sample.ops_per_sec());
        m.add(
            SECTION,
            &format!("{id}_p50"),
            &format!("{label}, p50"),
            "µs",
            sample.pct_us(50.0),
        );
    }
}

async fn bulk_phase(
    client: &HttpClient,
    url: &str,
    etag: Option<String>,
    want: u16,
    settings: &Settings,
) -> Sample {
    let (client, url) = (client.clone(), Arc::<str>::from(url));
    let etag: Option<Arc<str>> = etag.map(Arc::from);
    let op = move |_| {
        let (client, url, etag) = (client.clone(), Arc::clone(&url), etag.clone());
        async move {
            let headers: Vec<(&str, &str)> = etag.iter().map(|e| ("if-none-match", &**e)).collect();
            let reply = request(&client, "POST", &url, Some(CONTEXT), &headers).await;
            let flags = String::from_utf8_lossy(&reply.body)
                .matches("\"reason\":\"STATIC\"")
                .count();
            match (reply.status, flags) {
                (304, 0) if want == 304 => Ok(()),
                (200, n) if want == 200 && n >= FLAGS => Ok(()),
                (status, n) => Err(format!("bulk: {status} with {n} flags, expected {want}")),
            }
        }
    };
    let mut sample = Sample::default();
    for _ in 0..settings.rounds {
        sample.merge(run_phase(1, settings.phase, 1, op.clone()).await);
    }
    sample
}
