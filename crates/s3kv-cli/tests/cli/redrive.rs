//! `redrive`: the failure queue's records read from moto's SQS (its JSON protocol, as the CLI speaks it), each
//! replayed as an asynchronous Lambda invoke to a local server that records what it got (moto's Lambda would run
//! the function in Docker), and deleted once the invoke is accepted; and `doctor --queue-url` on the same queue.

use std::sync::{Arc, Mutex};

use testkit::recorder::Received;

use crate::harness::{aws_env, moto_json, Local};

const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:s3kv-syncer:$LATEST";

/// A failure record as Lambda's on-failure destination writes it, for one S3 change.
fn record(object_key: &str, sequencer: &str) -> String {
    serde_json::json!({
        "version": "1.0",
        "timestamp": "2026-12-07T10:00:00.000Z",
        "requestContext": {
            "requestId": "0f1e2d3c-aaaa-bbbb-cccc-000000000000",
            "functionArn": FUNCTION_ARN,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": {"Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "eu-west-1",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "s3kv-items"},
                "object": {"key": object_key, "size": 2, "eTag": "abc", "sequencer": sequencer}
            }
        }]},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "SyncFailed", "errorMessage": "the cache did not answer"}
    })
    .to_string()
}

/// moto's SQS.
async fn sqs(moto: &str, action: &str, body: serde_json::Value) -> serde_json::Value {
    moto_json(moto, "sqs", &format!("AmazonSQS.{action}"), body).await
}

async fn depth(moto: &str, queue: &str) -> u64 {
    let answer = sqs(
        moto,
        "GetQueueAttributes",
        serde_json::json!({"QueueUrl": queue, "AttributeNames": ["All"]}),
    )
    .await;
    let count = |name: &str| {
        answer["Attributes"][name]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    count("ApproximateNumberOfMessages") + count("ApproximateNumberOfMessagesNotVisible")
}

/// Lambda's Invoke as a server that records each request and answers each with `status`.
async fn lambda(status: u16) -> (String, Arc<Mutex<Vec<Received>>>) {
    testkit::recorder::serve(std::iter::repeat((status, String::new()))).await
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_replays_each_failed_event_to_its_function_and_empties_the_queue() {
    let local = Local::start("redrive").await;
    let moto = tokio::task::spawn_blocking(testkit::Moto::start)
        .await
        .unwrap();
    let endpoint = moto.endpoint();
    let queue = sqs(
        &endpoint,
        "CreateQueue",
        serde_json::json!({"QueueName": "sync-failures"}),
    )
    .await;
    let queue = queue["QueueUrl"].as_str().unwrap().to_owned();
    let first = record("items/flags/a+b.json", "0055AED6DCD90281E5");
    let second = record("items/notes/n%C3%A9.json", "0055AED6DCD90281E6");
    for body in [&first, &second] {
        sqs(
            &endpoint,
            "SendMessage",
            serde_json::json!({"QueueUrl": queue, "MessageBody": body}),
        )
        .await;
    }
    let (lambda_url, invoked) = lambda(202).await;
    let missing = local.dir.join("no-aws-config").display().to_string();
    let env = aws_env(&missing, &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_url)]);

    // doctor sees them.
    let doctor = local
        .s3kv_with(&["doctor", "--queue-url", &queue], None, &env)
        .await
        .fails(1, "1 check failed");
    assert!(
        doctor
            .stdout
            .contains("FAIL failure queue: about 2 failed syncs"),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains("s3kv redrive --queue-url"),
        "{}",
        doctor.stdout
    );

    // A dry run lists the keys and leaves the messages where they were.
    let dry = local
        .s3kv_with(&["redrive", "--queue-url", &queue, "--dry-run"], None, &env)
        .await
        .ok();
    assert!(
        dry.stdout.contains("would replay message"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("items/flags/a b.json (ObjectCreated:Put)"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("items/notes/né.json"), "{}", dry.stdout);
    assert!(invoked.lock().unwrap().is_empty());
    assert_eq!(depth(&endpoint, &queue).await, 2);

    let run = local
        .s3kv_with(
            &["redrive", "--queue-url", &queue, "--output", "json"],
            None,
            &env,
        )
        .await
        .ok();
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines
            .iter()
            .all(|l| l["action"] == "replayed" && l["function"] == "s3kv-syncer"),
        "{}",
        run.stdout
    );
    assert_eq!(depth(&endpoint, &queue).await, 0);

    // Each invoke: asynchronous, to the function the record names, in its region, signed, with the event as it was.
    let invoked = invoked.lock().unwrap().clone();
    assert_eq!(invoked.len(), 2);
    let mut payloads = Vec::new();
    for request in &invoked {
        assert_eq!(
            request.target,
            "/2015-03-31/functions/s3kv-syncer/invocations"
        );
        assert_eq!(request.header("x-amz-invocation-type"), Some("Event"));
        let authorization = request.header("authorization").unwrap_or_default();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && authorization.contains("/eu-west-1/lambda/aws4_request"),
            "{authorization}"
        );
        payloads.push(serde_json::from_slice::<serde_json::Value>(&request.body).unwrap());
    }
    for sent in [&first, &second] {
        let sent: serde_json::Value = serde_json::from_str(sent).unwrap();
        assert!(payloads.contains(&sent["requestPayload"]), "{payloads:?}");
    }

    let doctor = local
        .s3kv_with(&["doctor", "--queue-url", &queue], None, &env)
        .await
        .ok();
    assert!(
        doctor.stdout.contains("OK   failure queue: empty"),
        "{}",
        doctor.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_invoke_or_an_unreadable_message_stays_in_the_queue() {
    let local = Local::start("redrive-refused").await;
    let moto = tokio::task::spawn_blocking(testkit::Moto::start)
        .await
        .unwrap();
    let endpoint = moto.endpoint();
    let queue = sqs(
        &endpoint,
        "CreateQueue",
        serde_json::json!({"QueueName": "sync-failures"}),
    )
    .await;
    let queue = queue["QueueUrl"].as_str().unwrap().to_owned();
    for body in [record("items/a.json", "01"), "not a record".to_owned()] {
        sqs(
            &endpoint,
            "SendMessage",
            serde_json::json!({"QueueUrl": queue, "MessageBody": body}),
        )
        .await;
    }
    let (lambda_url, invoked) = lambda(403).await;
    let missing = local.dir.join("no-aws-config").display().to_string();
    let run = local
        .s3kv_with(
            &["redrive", "--queue-url", &queue],
            None,
            &aws_env(&missing, &[("AWS_ENDPOINT_URL_LAMBDA", &lambda_url)]),
        )
        .await
        .fails(1, "2 messages could not be replayed");
    assert!(run.stdout.contains("failed message"), "{}", run.stdout);
    assert!(run.stdout.contains("HTTP 403"), "{}", run.stdout);
    assert!(run.stdout.contains("skipped message"), "{}", run.stdout);
    assert!(
        run.stdout.contains("not a Lambda failure record"),
        "{}",
        run.stdout
    );
    assert_eq!(invoked.lock().unwrap().len(), 1);
    assert_eq!(depth(&endpoint, &queue).await, 2);
}
