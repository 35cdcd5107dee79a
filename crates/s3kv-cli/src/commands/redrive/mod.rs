//! `s3kv redrive --queue-url URL`: replays the syncs that failed after Lambda's retries. Each message in the
//! syncer's failure queue is the record Lambda's on-failure destination writes for an asynchronous invocation
//! (`requestContext.functionArn`, `requestPayload`: the S3 event as it was delivered); redrive invokes that
//! function again, asynchronously, with exactly that event, and deletes the message once Lambda has accepted the
//! invocation. Replaying is safe: the syncer applies each change only if its sequencer is newer than what the
//! cache holds, so an event overtaken by a later change is dropped, and a change already applied changes nothing.
//! The CLI cannot repair the cache itself (Valkey is inside the VPC); it has the syncer do it.
//!
//! SQS (its JSON protocol) and Lambda's Invoke are called through [`super::aws`]: signed, no SDK crates. The
//! queue's calls are in [`queue`].

mod queue;

use std::collections::HashSet;

use clap::Args;
use serde_json::Value;

use super::aws::{endpoint, Aws};
use crate::output::{Failure, Output};
pub(super) use queue::queue_depth;
use queue::{Message, Queue};

/// How long a received message stays hidden while it is replayed; a replay that failed leaves it to come back.
const VISIBILITY_SECS: u64 = 120;

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The syncer's failure queue: the stack's SyncFailureQueueUrl output
    #[arg(long, value_name = "URL")]
    queue_url: String,
    /// List the failed syncs (each message's object keys and function) without replaying or deleting anything
    #[arg(long)]
    dry_run: bool,
    /// Invoke this function instead of the one each record names (its name or ARN)
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// Stop after this many messages
    #[arg(long, value_name = "N")]
    max: Option<usize>,
}

/// What a failure record says: the function, the event to replay, and the object keys in it.
#[derive(Debug)]
struct Failed {
    function: String,
    region: Option<String>,
    condition: String,
    payload: Value,
    changes: Vec<(String, String)>,
}

/// `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` to its name and region; a bare name as is.
fn function_of(arn_or_name: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = arn_or_name.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", region, _, "function", name, ..] => {
            ((*name).to_owned(), Some((*region).to_owned()))
        }
        _ => (arn_or_name.to_owned(), None),
    }
}

/// S3 event object keys are form-encoded (`+` for a space).
fn object_key(raw: &str) -> String {
    s3kv::percent::decode(raw, s3kv::percent::Encoding::Form).unwrap_or_else(|_| raw.to_owned())
}

fn parse_record(body: &str, function: Option<&str>) -> Result<Failed, String> {
    let record: Value =
        serde_json::from_str(body).map_err(|e| format!("not a Lambda failure record: {e}"))?;
    let payload = record
        .get("requestPayload")
        .filter(|p| !p.is_null())
        .cloned()
        .ok_or("the record has no requestPayload (too large for the queue?); nothing to replay")?;
    let named = function
        .map(str::to_owned)
        .or_else(|| {
            record["requestContext"]["functionArn"]
                .as_str()
                .map(str::to_owned)
        })
        .ok_or("the record names no function (requestContext.functionArn); pass --function")?;
    let (function, region) = function_of(&named);
    let changes = payload["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| {
                    (
                        object_key(r["s3"]["object"]["key"].as_str().unwrap_or("?")),
                        r["eventName"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Failed {
        function,
        region,
        condition: record["requestContext"]["condition"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
        payload,
        changes,
    })
}

/// An asynchronous invocation (`X-Amz-Invocation-Type: Event`): accepted is 202.
async fn invoke(aws: &Aws, failed: &Failed) -> Result<(), String> {
    let http = aws.client(failed.region.as_deref())?;
    let url = format!(
        "{}/2015-03-31/functions/{}/invocations",
        endpoint("LAMBDA", "lambda", http.region()),
        s3kv::percent::encode_path(&failed.function)
    );
    let answer = http
        .send(
            "lambda",
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("x-amz-invocation-type", "Event"),
            ],
            failed.payload.to_string().into_bytes(),
        )
        .await
        .map_err(|e| format!("Lambda Invoke: {e}"))?;
    if answer.status == 202 {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let message = value["message"]
        .as_str()
        .or(value["Message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
    Err(format!(
        "Lambda Invoke {}: HTTP {} {message}",
        failed.function, answer.status
    ))
}

fn say(
    out: Output,
    message: &Message,
    action: &str,
    failed: Option<&Failed>,
    problem: Option<&str>,
) {
    let changes = failed.map(|f| f.changes.as_slice()).unwrap_or_default();
    match out {
        Output::Text => {
            let function = failed.map_or(String::new(), |f| {
                format!(" ({} via {})", f.condition, f.function)
            });
            match problem {
                Some(problem) => println!("{action} message {}{function}: {problem}", message.id),
                None => println!("{action} message {}{function}", message.id),
            }
            for (key, event) in changes {
                println!("  {key} ({event})");
            }
        }
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "message": message.id,
                "action": action,
                "function": failed.map(|f| &f.function),
                "condition": failed.map(|f| &f.condition),
                "keys": changes.iter().map(|(key, event)| serde_json::json!({"key": key, "event": event})).collect::<Vec<_>>(),
                "problem": problem,
            })
        ),
    }
}

pub(super) async fn exec(out: Output, args: RedriveArgs) -> Result<(), Failure> {
    let aws = Aws::load().await.map_err(Failure::Other)?;
    let queue = Queue::open(&aws, &args.queue_url)
        .await
        .map_err(Failure::Usage)?;
    let visibility = if args.dry_run { 30 } else { VISIBILITY_SECS };
    let mut seen = HashSet::new();
    let (mut replayed, mut failures) = (0usize, 0usize);
    let mut held = Vec::new();
    'receiving: loop {
        let messages = queue.receive(visibility).await.map_err(Failure::Other)?;
        if messages.is_empty() || messages.iter().all(|m| seen.contains(&m.id)) {
            break;
        }
        for message in messages {
            if args.max.is_some_and(|max| seen.len() >= max) {
                held.push(message.receipt);
                break 'receiving;
            }
            if !seen.insert(message.id.clone()) {
                continue;
            }
            let failed = match parse_record(&message.body, args.function.as_deref()) {
                Ok(failed) => failed,
                Err(problem) => {
                    failures += 1;
                    say(out, &message, "skipped", None, Some(&problem));
                    held.push(message.receipt);
                    continue;
                }
            };
            if args.dry_run {
                say(out, &message, "would replay", Some(&failed), None);
                held.push(message.receipt);
                continue;
            }
            match invoke(&aws, &failed).await {
                Ok(()) => match queue.delete(&message.receipt).await {
                    Ok(()) => {
                        replayed += 1;
                        say(out, &message, "replayed", Some(&failed), None);
                    }
                    Err(problem) => {
                        // Replayed, but it will come back: replaying it again is harmless.
                        replayed += 1;
                        say(
                            out,
                            &message,
                            "replayed, not deleted",
                            Some(&failed),
                            Some(&problem),
                        );
                    }
                },
                Err(problem) => {
                    failures += 1;
                    say(out, &message, "failed", Some(&failed), Some(&problem));
                }
            }
        }
    }
    // What was only looked at goes back in the queue at once; a failed replay waits out its visibility timeout.
    for receipt in held {
        if let Err(problem) = queue.release(&receipt).await {
            eprintln!("s3kv: {problem}");
        }
    }
    if args.dry_run {
        eprintln!(
            "{} failed syncs in the queue (dry run: nothing replayed)",
            seen.len()
        );
    } else {
        eprintln!("{replayed} replayed, {failures} not");
    }
    if failures > 0 {
        return Err(Failure::Other(format!(
            "{failures} messages could not be replayed; they stay in the queue"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_record_gives_the_function_and_the_event() {
        let body = r#"{"version":"1.0","timestamp":"2026-01-01T00:00:00.000Z",
            "requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:eu-west-1:123456789012:function:s3kv-syncer:$LATEST",
              "condition":"RetriesExhausted","approximateInvokeCount":3},
            "requestPayload":{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"items/a+b%2Fc.json","sequencer":"01"}}}]},
            "responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"}}"#;
        let failed = parse_record(body, None).unwrap();
        assert_eq!(failed.function, "s3kv-syncer");
        assert_eq!(failed.region.as_deref(), Some("eu-west-1"));
        assert_eq!(failed.condition, "RetriesExhausted");
        assert_eq!(
            failed.changes,
            vec![(
                "items/a b/c.json".to_owned(),
                "ObjectCreated:Put".to_owned()
            )]
        );
        assert_eq!(
            failed.payload["Records"][0]["s3"]["object"]["sequencer"],
            "01"
        );
        assert!(parse_record(r#"{"requestContext":{}}"#, None).is_err());
        assert!(parse_record("nope", None).is_err());
    }
}
