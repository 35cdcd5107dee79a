//! The doctor's cache-storage check. The stack's storage alarm (the `CacheStorageAlarmName` output) is where the
//! cache's `BytesUsedForCache` meets its cap (`CacheMaxStorageGB`, inside the alarm's expression) and the
//! threshold (`CacheStorageAlarmPercent`), so the doctor reads that alarm rather than a copy of the stack's
//! parameters: its state, and the usage it watches (CloudWatch over its JSON protocol, through [`super::super::aws`]).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::super::aws::{endpoint, json_call, Aws};
use super::Report;

const CHECK: &str = "cache storage";
const FIX: &str = "raise CacheMaxStorageGB (sam deploy --parameter-overrides CacheMaxStorageGB=N): at the cap the \
     cache refuses writes, the syncer counts CacheFull, and those items' reads go to S3";
/// How far back the usage is read: the alarm's period is 5 minutes, and an idle cache reports sparsely.
const LOOKBACK_SECS: u64 = 3 * 3600;

/// What the storage alarm says, in the doctor's terms.
#[derive(Debug, PartialEq)]
pub(super) struct Storage {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// The alarm fires above this percentage of the cap.
    pub threshold: f64,
    /// The cap in bytes, when the alarm's expression has the template's form.
    pub cap: Option<f64>,
    /// The latest `BytesUsedForCache` (the period's maximum), if any was reported lately.
    pub used: Option<f64>,
}

pub(super) async fn check(report: &mut Report, alarm: Option<&str>) {
    let Some(alarm) = alarm else {
        report.skip(
            CHECK,
            "not checked here without --cache-alarm (the CacheStorageAlarmName output)",
        );
        return;
    };
    match read(alarm).await {
        Ok(storage) => {
            let detail = storage.describe();
            if storage.state == "ALARM" {
                report.fail(CHECK, &detail, FIX);
            } else {
                report.ok(CHECK, &detail);
            }
        }
        Err(e) => report.fail(
            CHECK,
            &e,
            "pass the CacheStorageAlarmName output to --cache-alarm, with the stack's region (AWS_REGION) and \
             credentials allowed cloudwatch:DescribeAlarms and cloudwatch:GetMetricData",
        ),
    }
}

async fn read(alarm: &str) -> Result<Storage, String> {
    let aws = Aws::load().await?;
    let http = aws.client(None)?;
    let origin = format!("{}/", endpoint("CLOUDWATCH", "monitoring", http.region()));
    let call = async |action: &str, body: Value| {
        let target = format!("GraniteServiceVersion20100801.{action}");
        let label = format!("CloudWatch {action}");
        json_call(&http, "monitoring", &origin, &target, &label, &body).await
    };
    let described = call("DescribeAlarms", json!({ "AlarmNames": [alarm] })).await?;
    let Some(found) = described["MetricAlarms"].get(0) else {
        return Err(format!(
            "no alarm named {alarm:?} in {} (the CacheStorageAlarmName output)",
            http.region()
        ));
    };
    let usage = usage_query(found)
        .ok_or_else(|| format!("{alarm:?} does not watch the cache's BytesUsedForCache"))?;
    let mut storage = Storage::of_alarm(found);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let data = call(
        "GetMetricData",
        json!({
            "StartTime": now.saturating_sub(LOOKBACK_SECS),
            // Past now: a datapoint of this second is after a truncated `now`, and would be left out.
            "EndTime": now + 60,
            "ScanBy": "TimestampDescending",
            "MetricDataQueries": [usage],
        }),
    )
    .await?;
    storage.used = data["MetricDataResults"][0]["Values"][0].as_f64();
    Ok(storage)
}

/// The alarm's query of `BytesUsedForCache`, to be read on its own (the alarm does not return it).
fn usage_query(alarm: &Value) -> Option<Value> {
    let mut query = alarm["Metrics"]
        .as_array()?
        .iter()
        .find(|q| q["MetricStat"]["Metric"]["MetricName"] == "BytesUsedForCache")?
        .clone();
    query["ReturnData"] = Value::Bool(true);
    Some(query)
}

impl Storage {
    /// What the alarm says before its usage is read.
    fn of_alarm(alarm: &Value) -> Self {
        let cap = alarm["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|q| q["Expression"].as_str().and_then(cap_of));
        Self {
            state: alarm["StateValue"].as_str().unwrap_or("unknown").to_owned(),
            threshold: alarm["Threshold"].as_f64().unwrap_or(f64::NAN),
            cap,
            used: None,
        }
    }

    fn describe(&self) -> String {
        let usage = match (self.used, self.cap) {
            (Some(used), Some(cap)) => format!(
                "{} of the {} cap used ({:.1}%)",
                size(used),
                size(cap),
                100.0 * used / cap
            ),
            (Some(used), None) => format!("{} used", size(used)),
            (None, Some(cap)) => format!(
                "no usage reported in the last {} hours (the {} cap)",
                LOOKBACK_SECS / 3600,
                size(cap)
            ),
            (None, None) => format!(
                "no usage reported in the last {} hours",
                LOOKBACK_SECS / 3600
            ),
        };
        format!(
            "{usage}; the storage alarm is {} (it fires above {}% of the cap)",
            self.state, self.threshold
        )
    }
}

/// The cap in bytes from the template's expression, `100 * used / (GB * 1000000000)`.
fn cap_of(expression: &str) -> Option<f64> {
    let gb = expression
        .trim()
        .strip_prefix("100 * used / (")?
        .strip_suffix(" * 1000000000)")?;
    gb.trim().parse::<f64>().ok().map(|gb| gb * 1e9)
}

/// Decimal units, as ElastiCache's GB.
fn size(bytes: f64) -> String {
    match bytes {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The doctor reads the cap from the alarm the template defines: the template's expression, deployed with
    /// CacheMaxStorageGB=5, must parse.
    #[test]
    fn the_templates_storage_expression_gives_the_cap() {
        let template = include_str!("../../../../../template.yaml");
        let line = template
            .lines()
            .find(|l| l.contains("Expression:") && l.contains("${CacheMaxStorageGB}"))
            .expect("the storage alarm's expression in template.yaml");
        let expression = line
            .split_once("!Sub \"")
            .and_then(|(_, rest)| rest.strip_suffix('"'))
            .expect("a quoted !Sub")
            .replace("${CacheMaxStorageGB}", "5");
        assert_eq!(cap_of(&expression), Some(5e9));
        assert_eq!(cap_of("100 * used / x"), None);
    }

    #[test]
    fn sizes_read_as_elasticache_counts_them() {
        assert_eq!(size(3_100_000.0), "3.1 MB");
        assert_eq!(size(1e9), "1.00 GB");
        assert_eq!(size(512.0), "512 B");
    }
}
