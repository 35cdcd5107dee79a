//! `s3kv doctor`: a stack checked end to end through its API, one line per check (`OK`, `FAIL` with the fix, or
//! `SKIP` with why), as the first command after a deploy. The API must answer and refuse a wrong key; the key must
//! read, consistently (from S3, through the reader in the VPC: S3's reachability); a write key must write a
//! scratch item that a cached read then serves (`X-Cache: HIT`) within `--within` seconds, and delete it again
//! (always, even when a check on the way failed; [`sync`]). With AWS credentials, the failure queue is empty
//! (`--queue-url`) and the cache's storage is below its alarm (`--cache-alarm`, [`storage`]); without those flags
//! these two are skipped, saying which output to pass.

mod report;
mod storage;
mod sync;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use s3kv::key::ItemKey;

use crate::api::{Api, ApiError, Condition};
use crate::output::{Failure, Output};
use report::{finish, Report};
use sync::{synced, wait_for, SYNC_FIX};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Seconds a write has to reach the cache (a read answered `X-Cache: HIT` with the written version)
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    within: u64,
    /// Where the scratch item is written and deleted (a write key limited to prefixes needs one of its own)
    #[arg(long, default_value = ".s3kv-doctor/", value_name = "PREFIX")]
    scratch_prefix: String,
    /// The syncer's failure queue (the stack's SyncFailureQueueUrl output): checked to be empty, with the
    /// standard AWS credentials
    #[arg(long, value_name = "URL")]
    queue_url: Option<String>,
    /// The cache's storage alarm (the stack's CacheStorageAlarmName output): its state and the cache's usage
    /// against the cap, with the standard AWS credentials
    #[arg(long, value_name = "NAME")]
    cache_alarm: Option<String>,
}

/// The fix for an answer the key got where it should have been let in.
fn key_fix(error: &ApiError) -> &'static str {
    match error {
        ApiError::Unreachable { .. } => {
            "check the endpoint (--endpoint, S3KV_ENDPOINT or the profile): the stage URL without /items, e.g. \
             https://ID.execute-api.REGION.amazonaws.com/v1"
        }
        ApiError::Status { status: 401 | 403, .. } => {
            "use a key of this stack (--api-key, S3KV_API_KEY or `s3kv configure`): `aws apigateway get-api-key \
             --include-value --api-key ID` with the ReadKeyId or WriteKeyId output; a new key takes up to a \
             minute to work"
        }
        ApiError::Status { status: 404, .. } => {
            "the endpoint is not s3kv's API: use the stage URL without /items (ApiUrl minus items/)"
        }
        _ => "see the message; the functions' logs (sam logs --stack-name STACK) say more",
    }
}

fn scratch_key(prefix: &str) -> Result<ItemKey, Failure> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let raw = format!("{prefix}{:x}-{nanos:x}", std::process::id());
    ItemKey::parse(&raw).map_err(|e| {
        Failure::Usage(format!(
            "--scratch-prefix {prefix:?} makes no valid key ({raw:?}): {e}"
        ))
    })
}

pub(super) async fn exec(api: &Api, out: Output, args: DoctorArgs) -> Result<(), Failure> {
    let scratch = scratch_key(&args.scratch_prefix)?;
    let mut report = Report { out, failed: 0 };

    // 1. The API answers, and refuses a wrong key.
    let stranger = Api::new(api.endpoint(), Some("s3kv-doctor-not-a-key".into()));
    match stranger.get(&scratch, None, true).await {
        Err(e @ ApiError::Unreachable { .. }) => {
            report.fail("api", &e.to_string(), key_fix(&e));
            return finish(report);
        }
        Err(ApiError::Status { status, .. }) if matches!(status, 401 | 403) => report.ok(
            "api",
            &format!("{} answers; a wrong key gets {status}", api.endpoint()),
        ),
        Err(ApiError::Status {
            status: 404,
            code: Some(_),
            ..
        })
        | Ok(_) => report.fail(
            "api",
            &format!("{} answers, and lets a wrong key read", api.endpoint()),
            "give the API keys (s3kv-local: --api-key; AWS: the stage's methods require API keys)",
        ),
        Err(e) => report.fail(
            "api",
            &format!("{} answers a wrong key with {e}", api.endpoint()),
            key_fix(&e),
        ),
    }

    // 2. The key reads (the scratch key is absent: 404 not_found is a read that worked).
    if api.api_key().is_none() {
        report.fail(
            "key",
            "no API key given",
            "pass --api-key, set S3KV_API_KEY, or save a profile with `s3kv configure`",
        );
        return finish(report);
    }
    // A consistent read goes to S3 from the reader, which runs in the VPC: its answer is S3's reachability too.
    match api.get(&scratch, None, true).await {
        Ok(_)
        | Err(ApiError::Status {
            status: 404,
            code: Some(_),
            ..
        }) => report.ok(
            "S3 from the VPC",
            "the reader read the scratch key straight from S3 (consistent=true)",
        ),
        Err(e @ ApiError::Status { status: 503, .. }) => {
            report.fail("S3 from the VPC", &e.to_string(), S3_FIX);
            return finish(report);
        }
        Err(e) => {
            report.fail("key reads", &e.to_string(), key_fix(&e));
            return finish(report);
        }
    }

    // 3. A write, seen in the cache, then deleted: a read key is told so by the write's refusal.
    let body = format!(
        "{{\"s3kv-doctor\":{}}}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let written = match api.put(&scratch, body, Condition::Absent, None).await {
        Ok((written, _)) => written,
        Err(e) if e.is_read_only_refusal() => {
            report.ok("key", "a read key: reads work");
            for check in ["write", "cache", "delete"] {
                report.skip(
                    check,
                    "a read key cannot write; run doctor with a write key to check writes",
                );
            }
            aws_checks(&mut report, &args).await;
            return finish(report);
        }
        Err(e) => {
            report.ok("key", "reads work");
            let fix = match &e {
                ApiError::Status { status: 403, .. } => {
                    "the key may not write under --scratch-prefix: pass one it may write under"
                }
                ApiError::Status {
                    status: 400 | 422, ..
                } => "a schema refuses the scratch item: pass a --scratch-prefix no schema covers",
                _ => key_fix(&e),
            };
            report.fail("write", &format!("PUT {scratch}: {e}"), fix);
            aws_checks(&mut report, &args).await;
            return finish(report);
        }
    };
    report.ok("key", "a write key: reads and writes work");
    let within = Duration::from_secs(args.within);
    synced(api, &mut report, &scratch, &written.etag, within).await;

    // Always, whatever came before.
    match api.delete(&scratch, Condition::None).await {
        Ok(()) | Err(ApiError::Status { status: 404, .. }) => {
            match wait_for(api, &scratch, None, within).await {
                Ok(after) => report.ok(
                    "delete",
                    &format!(
                        "deleted {scratch}; the cache stopped serving it after {:.1} s",
                        after.as_secs_f64()
                    ),
                ),
                Err(last) => report.fail(
                    "delete",
                    &format!(
                        "deleted {scratch}, but the cache still served it after {} s (last read: {last})",
                        args.within
                    ),
                    SYNC_FIX,
                ),
            }
        }
        Err(e) => report.fail(
            "delete",
            &format!("DELETE {scratch}: {e}"),
            &format!("delete it by hand: s3kv rm '{scratch}'"),
        ),
    }

    aws_checks(&mut report, &args).await;
    finish(report)
}

const S3_FIX: &str = "the reader cannot reach S3: every private subnet's route table needs the S3 gateway \
     endpoint's route (docs: Deploying to AWS, route tables; CreateS3Endpoint), and the reader's role its S3 actions; \
     its log says what failed (sam logs --stack-name STACK)";

/// The checks that need AWS's own APIs (and credentials): each skipped without its flag.
async fn aws_checks(report: &mut Report, args: &DoctorArgs) {
    queue_check(report, args.queue_url.as_deref()).await;
    storage::check(report, args.cache_alarm.as_deref()).await;
}

/// The failure queue holds no message (SQS's approximate counts, visible and in flight).
async fn queue_check(report: &mut Report, queue_url: Option<&str>) {
    let Some(queue_url) = queue_url else {
        report.skip(
            "failure queue",
            "not checked here without --queue-url (the SyncFailureQueueUrl output); it should be empty",
        );
        return;
    };
    match super::redrive::queue_depth(queue_url).await {
        Ok(0) => report.ok("failure queue", "empty"),
        Ok(n) => report.fail(
            "failure queue",
            &format!("about {n} failed syncs wait in the queue"),
            &format!("replay them: s3kv redrive --queue-url {queue_url}"),
        ),
        Err(e) => report.fail(
            "failure queue",
            &e,
            "check the URL (the SyncFailureQueueUrl output) and the AWS credentials and region \
             (sqs:GetQueueAttributes)",
        ),
    }
}
