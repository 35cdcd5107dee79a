//! The doctor's write, cache and delete checks: what only the syncer can make a cached read serve.

use std::time::{Duration, Instant};

use s3kv::key::ItemKey;

use super::{key_fix, Report};
use crate::api::{Api, ApiError, Condition};

pub(super) const SYNC_FIX: &str = "the syncer is not applying S3's notifications: check its logs and errors (sam logs \
     --stack-name STACK), the bucket's notification configuration, and the failure queue (then `s3kv redrive`); \
     or allow more time with --within";

/// The write check and the cache check. A read fills the cache only on a miss, so a cached first version could
/// come from a read; an update replacing it in the cache can only come from the syncer. So: once the first
/// version is cached, write a second and wait for a cached read of it.
pub(super) async fn synced(
    api: &Api,
    report: &mut Report,
    scratch: &ItemKey,
    first: &str,
    within: Duration,
) {
    if let Err(last) = wait_for(api, scratch, Some(first), within).await {
        report.ok("write", &format!("wrote {scratch}"));
        report.fail(
            "cache",
            &format!(
                "the write was not served from the cache within {} s (last read: {last})",
                within.as_secs()
            ),
            SYNC_FIX,
        );
        return;
    }
    let second = match api
        .put(
            scratch,
            "{\"s3kv-doctor\":2}".into(),
            Condition::Matches(first),
            None,
        )
        .await
    {
        Ok((written, _)) => written.etag,
        Err(e) => {
            report.fail(
                "write",
                &format!("PUT {scratch} (the second version): {e}"),
                key_fix(&e),
            );
            return;
        }
    };
    report.ok("write", &format!("wrote {scratch}, twice"));
    match wait_for(api, scratch, Some(&second), within).await {
        Ok(after) => report.ok(
            "cache",
            &format!(
                "the syncer put the update in the cache after {:.1} s (a read: X-Cache: HIT, the new ETag)",
                after.as_secs_f64()
            ),
        ),
        Err(last) => report.fail(
            "cache",
            &format!("the update was not in the cache within {} s (last read: {last})", within.as_secs()),
            SYNC_FIX,
        ),
    }
}

/// Reads through the cache until it serves `etag` (`X-Cache: HIT`), or no item (`None`): how long that took, or
/// the last read's answer when `within` ran out.
pub(super) async fn wait_for(
    api: &Api,
    key: &ItemKey,
    etag: Option<&str>,
    within: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let last = match (api.get(key, None, false).await, etag) {
            (Ok(item), Some(etag)) if item.cache.as_deref() == Some("HIT") && item.etag == etag => {
                return Ok(started.elapsed());
            }
            (
                Err(ApiError::Status {
                    status: 404,
                    code: Some(_),
                    ..
                }),
                None,
            ) => {
                return Ok(started.elapsed());
            }
            (Ok(item), _) => format!(
                "X-Cache: {}, ETag {}",
                item.cache.as_deref().unwrap_or("(none)"),
                item.etag
            ),
            (Err(e), _) => e.to_string(),
        };
        if started.elapsed() >= within {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
