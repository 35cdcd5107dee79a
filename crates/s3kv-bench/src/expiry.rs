//! What per-key expiry costs a read (issue #37), through s3kv-local on the propagation section's servers: `GET
//! /items/{key}` of items written with `?ttl=` (a year: they never expire during the run) against items written
//! without one, alternating phase by phase at concurrency 1 and 8, so drift hits both alike. An expiring item's
//! read also compares its expiry with the clock and answers `X-S3kv-Expires-At`.
//!
//! Every answer is checked (status, body, and the expiry header exactly when the item has one).

use std::sync::Arc;

use crate::http::{call, http_client, until_cached};
use crate::load::{run_phase, Sample};
use crate::report::Metrics;
use crate::settings::Settings;

const SECTION: &str = "Expiry: GET of items with a TTL vs without, through s3kv-local";
const ITEMS: usize = 100;
/// A year: no item expires while the section runs.
const TTL_SECS: u32 = 31_536_000;

fn body(k: usize) -> String {
    format!("{{\"banner\":\"maintenance at 18:00\",\"n\":{k}}}")
}

pub(crate) async fn expiry(settings: &Settings, api: &str, m: &mut Metrics) {
    eprintln!("expiry on the read path through s3kv-local");
    let client = http_client();
    let url = |kind: &str, k: usize| format!("{api}/items/expiry/{kind}/k{k:03}");
    for k in 0..ITEMS {
        let with = call(
            &client,
            "PUT",
            &format!("{}?ttl={TTL_SECS}", url("ttl", k)),
            Some(&body(k)),
        )
        .await;
        let without = call(&client, "PUT", &url("none", k), Some(&body(k))).await;
        assert!(
            matches!(with.status, 200 | 201) && matches!(without.status, 200 | 201),
            "PUT k{k:03}: {} / {}",
            with.status,
            without.status
        );
    }
    for kind in ["ttl", "none"] {
        for k in 0..ITEMS {
            until_cached(&client, &url(kind, k), body(k).as_bytes()).await;
        }
    }

    let api: Arc<str> = Arc::from(api);
    let reader = |kind: &'static str| {
        let (client, api) = (client.clone(), Arc::clone(&api));
        move |k: usize| {
            let (client, api) = (client.clone(), Arc::clone(&api));
            async move {
                let url = format!("{api}/items/expiry/{kind}/k{k:03}");
                let reply = crate::http::request(&client, "GET", &url, None, &[]).await;
                let expiring = reply.expires_at.is_some();
                if reply.status == 200
                    && reply.cache.as_deref() == Some("HIT")
                    && reply.body == body(k).as_bytes()
                    && expiring == (kind == "ttl")
                {
                    Ok(())
                } else {
                    Err(format!(
                        "GET {kind}/k{k:03}: {} {:?} expires {:?}",
                        reply.status, reply.body, reply.expires_at
                    ))
                }
            }
        }
    };
    for concurrency in [1, 8] {
        let (mut plain, mut expiring) = (Sample::default(), Sample::default());
        for _ in 0..settings.rounds {
            plain.merge(run_phase(concurrency, settings.phase, ITEMS, reader("none")).await);
            expiring.merge(run_phase(concurrency, settings.phase, ITEMS, reader("ttl")).await);
        }
        let c = concurrency;
        let (plain_ops, expiring_ops) = (plain.ops_per_sec(), expiring.ops_per_sec());
        m.add(
            SECTION,
            &format!("plain_c{c}"),
            &format!("GET, no TTL, c={c}"),
            "ops/s",
            plain_ops,
        );
        m.add(
            SECTION,
            &format!("plain_c{c}_p50"),
            &format!("GET, no TTL, c={c}, p50"),
            "µs",
            plain.pct_us(50.0),
        );
        m.add(
            SECTION,
            &format!("ttl_c{c}"),
            &format!("GET, with a TTL, c={c}"),
            "ops/s",
            expiring_ops,
        );
        m.add(
            SECTION,
            &format!("ttl_c{c}_p50"),
            &format!("GET, with a TTL, c={c}, p50"),
            "µs",
            expiring.pct_us(50.0),
        );
        m.add(
            SECTION,
            &format!("ttl_vs_plain_c{c}"),
            &format!("with a TTL / without, throughput, c={c}"),
            "×",
            expiring_ops / plain_ops,
        );
    }
}
