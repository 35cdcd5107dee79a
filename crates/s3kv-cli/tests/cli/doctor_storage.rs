//! `doctor --cache-alarm`: the cache's storage read from the stack's storage alarm in moto's CloudWatch (its JSON
//! protocol, as the CLI speaks it), the alarm defined as `template.yaml` defines it: OK with the usage against the
//! cap, FAIL with the fix when the alarm fires, FAIL naming the alarm when there is none.

use serde_json::json;

use crate::harness::{aws_env, moto_json, Local};

const ALARM: &str = "s3kv-cache-storage";

/// moto's CloudWatch.
async fn cloudwatch(moto: &str, action: &str, body: serde_json::Value) {
    let target = format!("GraniteServiceVersion20100801.{action}");
    moto_json(moto, "monitoring", &target, body).await;
}

/// The template's CacheStorageAlarm, deployed with CacheMaxStorageGB=1 and CacheStorageAlarmPercent=80.
fn storage_alarm(cache: &str) -> serde_json::Value {
    json!({
        "AlarmName": ALARM,
        "EvaluationPeriods": 1,
        "Threshold": 80,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "Metrics": [
            {"Id": "used", "ReturnData": false, "MetricStat": {
                "Metric": {"Namespace": "AWS/ElastiCache", "MetricName": "BytesUsedForCache",
                           "Dimensions": [{"Name": "clusterId", "Value": cache}]},
                "Period": 300, "Stat": "Maximum"}},
            {"Id": "percent", "Label": "Cache storage used (%)", "Expression": "100 * used / (1 * 1000000000)"}
        ]
    })
}

async fn used(moto: &str, cache: &str, bytes: f64) {
    let metric = json!({"MetricName": "BytesUsedForCache", "Value": bytes,
                        "Dimensions": [{"Name": "clusterId", "Value": cache}]});
    cloudwatch(
        moto,
        "PutMetricData",
        json!({"Namespace": "AWS/ElastiCache", "MetricData": [metric]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_storage_is_read_from_its_alarm_ok_below_it_and_a_failure_with_the_fix_above() {
    let local = Local::start("doctor-storage").await;
    let moto = tokio::task::spawn_blocking(testkit::Moto::start)
        .await
        .unwrap();
    let endpoint = moto.endpoint();
    cloudwatch(&endpoint, "PutMetricAlarm", storage_alarm("s3kv-cache")).await;
    // Another cache's usage must not be read as this one's.
    used(&endpoint, "another-cache", 990e6).await;
    used(&endpoint, "s3kv-cache", 3.1e6).await;
    let missing = local.dir.join("no-aws-config").display().to_string();
    let env = aws_env(&missing, &[("AWS_ENDPOINT_URL_CLOUDWATCH", &endpoint)]);

    let ok = local
        .s3kv_with(&["doctor", "--cache-alarm", ALARM], None, &env)
        .await
        .ok();
    assert!(
        ok.stdout.contains(
            "OK   cache storage: 3.1 MB of the 1.00 GB cap used (0.3%); the storage alarm is OK \
             (it fires above 80% of the cap)"
        ),
        "{}",
        ok.stdout
    );

    // Near the cap the alarm fires: a failed check, and what to do.
    used(&endpoint, "s3kv-cache", 850e6).await;
    let alarm =
        json!({"AlarmName": ALARM, "StateValue": "ALARM", "StateReason": "Threshold Crossed"});
    cloudwatch(&endpoint, "SetAlarmState", alarm).await;
    let full = local
        .s3kv_with(&["doctor", "--cache-alarm", ALARM], None, &env)
        .await
        .fails(1, "1 check failed");
    assert!(
        full.stdout.contains(
            "FAIL cache storage: 850.0 MB of the 1.00 GB cap used (85.0%); the storage alarm is ALARM"
        ),
        "{}",
        full.stdout
    );
    assert!(
        full.stdout.contains("fix: raise CacheMaxStorageGB"),
        "{}",
        full.stdout
    );

    // A wrong name: the check fails and says which output to pass.
    let wrong = local
        .s3kv_with(&["doctor", "--cache-alarm", "no-such-alarm"], None, &env)
        .await
        .fails(1, "1 check failed");
    assert!(
        wrong
            .stdout
            .contains("FAIL cache storage: no alarm named \"no-such-alarm\" in us-east-1"),
        "{}",
        wrong.stdout
    );
    assert!(
        wrong.stdout.contains("CacheStorageAlarmName"),
        "{}",
        wrong.stdout
    );
}
