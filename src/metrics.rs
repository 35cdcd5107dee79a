//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per invocation, which CloudWatch
//! Logs turns into metrics by itself. No API call, no agent, nothing to wait for on the request path; the price is
//! one log line per invocation (about 300 bytes).
//!
//! The namespace comes from `S3KV_METRICS_NAMESPACE` (the template sets `s3kv/<stack name>`); every metric has one
//! dimension, `Function` (`reader`, `syncer`), so alarms need no function names. `S3KV_METRICS=off` stops the
//! lines (tests and `s3kv-local` keep their output readable).

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::read::CacheStatus;
use crate::sync::SyncReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// EMF accepts at most 100 values per metric in one line.
const MAX_VALUES: usize = 100;

/// One EMF document: `function` is the `Function` dimension; each metric has a unit and one or more values.
pub fn document(
    namespace: &str,
    function: &str,
    timestamp_ms: u64,
    metrics: &[(&str, Unit, Vec<f64>)],
) -> Value {
    let mut root = Map::new();
    let definitions: Vec<Value> = metrics
        .iter()
        .filter(|(_, _, values)| !values.is_empty())
        .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.as_str() }))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Function"]],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("Function".into(), json!(function));
    for (name, _, values) in metrics.iter().filter(|(_, _, v)| !v.is_empty()) {
        let value = match values.as_slice() {
            [one] => json!(one),
            many => json!(many[..many.len().min(MAX_VALUES)]),
        };
        root.insert((*name).into(), value);
    }
    Value::Object(root)
}

/// Where metrics go: built once from the configuration in the reader's and the syncer's entrypoints
/// (`src/bin`), written there after each invocation from what the handler reports ([`crate::api::Served`], the
/// [`SyncReport`]). The use cases never see it.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    enabled: bool,
    /// The line a single-item read writes, one per [`CacheStatus`], split around its timestamp: the reader's hot
    /// path then formats one integer instead of building a JSON document (which cost more than the Valkey GET
    /// itself, see BENCHMARKS.md).
    single_reads: [(String, String); 3],
}

/// A timestamp no real one equals, to split the precomputed lines at.
const TIMESTAMP_MARK: u64 = 9_191_919_191_919;

impl Metrics {
    pub fn from_config(config: &Config) -> Self {
        let single_read = |status| {
            let line = document(
                &config.metrics_namespace,
                "reader",
                TIMESTAMP_MARK,
                &for_reads(&[status]),
            )
            .to_string();
            let (before, after) = line
                .split_once(&TIMESTAMP_MARK.to_string())
                .unwrap_or((&line, ""));
            (before.to_owned(), format!("{after}\n"))
        };
        Self {
            namespace: config.metrics_namespace.clone(),
            enabled: config.metrics,
            // Indexed by `status as usize` in emit_read: the enum's order.
            single_reads: [CacheStatus::Hit, CacheStatus::Miss, CacheStatus::Bypass]
                .map(single_read),
        }
    }

    /// Writes one EMF line to stdout, where Lambda sends it to CloudWatch Logs.
    pub fn emit(&self, function: &str, metrics: &[(&str, Unit, Vec<f64>)]) {
        if !self.enabled {
            return;
        }
        println!("{}", document(&self.namespace, function, now_ms(), metrics));
    }

    /// The reader's line for one invocation, from the cache statuses of the items it read (none: no line).
    pub fn emit_reads(&self, statuses: &[CacheStatus]) {
        match statuses {
            [] => {}
            [one] => self.emit_read(*one),
            many => self.emit("reader", &for_reads(many)),
        }
    }

    /// The reader's line for one item: what `emit("reader", &for_reads(&[status]))` writes, in one write(2).
    pub fn emit_read(&self, status: CacheStatus) {
        if !self.enabled {
            return;
        }
        let (before, after) = &self.single_reads[status as usize];
        let mut line = String::with_capacity(before.len() + 20 + after.len());
        line.push_str(before);
        line.push_str(&now_ms().to_string());
        line.push_str(after);
        use std::io::Write;
        // Like println!, but a failed write (a closed stdout) must not panic the request.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The syncer's metrics for one invocation: what happened to its records, how long each applied change took from
/// S3's `eventTime` to the cache write, and whether the invocation failed (and will be redelivered).
pub fn for_sync(
    report: &SyncReport,
    invocation_failed: bool,
) -> Vec<(&'static str, Unit, Vec<f64>)> {
    vec![
        ("Records", Unit::Count, count(report.records)),
        ("Applied", Unit::Count, count(report.applied)),
        ("Stale", Unit::Count, count(report.stale)),
        ("Superseded", Unit::Count, count(report.superseded)),
        ("SkippedInvalid", Unit::Count, count(report.skipped)),
        ("CacheFull", Unit::Count, count(report.cache_full)),
        (
            "SchemaViolations",
            Unit::Count,
            count(report.schema_violations),
        ),
        ("FailedRecords", Unit::Count, count(report.failed)),
        (
            "SyncFailures",
            Unit::Count,
            count(usize::from(invocation_failed)),
        ),
        (
            "PropagationLag",
            Unit::Milliseconds,
            report.lag_ms.iter().map(|ms| *ms as f64).collect(),
        ),
    ]
}

/// The reaper's metrics for one run: objects deleted because they expired, members dropped without a delete, and
/// whether the run failed (it is run again a minute later).
pub fn for_reap(
    report: &crate::reap::ReapReport,
    run_failed: bool,
) -> Vec<(&'static str, Unit, Vec<f64>)> {
    vec![
        ("ExpiredDeleted", Unit::Count, count(report.deleted)),
        (
            "ExpiryKept",
            Unit::Count,
            count(report.kept + report.skipped),
        ),
        ("ReapFailures", Unit::Count, count(usize::from(run_failed))),
    ]
}

/// The reader's metrics for one request: where each item was answered from.
pub fn for_reads(statuses: &[CacheStatus]) -> Vec<(&'static str, Unit, Vec<f64>)> {
    let n = |wanted| statuses.iter().filter(|s| **s == wanted).count();
    vec![
        ("CacheHits", Unit::Count, count(n(CacheStatus::Hit))),
        ("CacheMisses", Unit::Count, count(n(CacheStatus::Miss))),
        ("CacheBypasses", Unit::Count, count(n(CacheStatus::Bypass))),
    ]
}

/// Counts as metric values.
pub fn count(n: usize) -> Vec<f64> {
    vec![n as f64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let doc = document(
            "s3kv/test",
            "syncer",
            1_700_000_000_000,
            &[
                ("Applied", Unit::Count, count(3)),
                ("PropagationLag", Unit::Milliseconds, vec![12.0, 40.0]),
                ("Unused", Unit::Count, vec![]),
            ],
        );
        let aws = &doc["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000u64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "s3kv/test");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                { "Name": "Applied", "Unit": "Count" },
                { "Name": "PropagationLag", "Unit": "Milliseconds" }
            ])
        );
        // Every metric and dimension named in the directive is a member of the root object.
        assert_eq!(doc["Function"], "syncer");
        assert_eq!(doc["Applied"], 3.0);
        assert_eq!(doc["PropagationLag"], json!([12.0, 40.0]));
        assert!(doc.get("Unused").is_none());
    }

    #[test]
    fn reads_are_counted_by_where_they_were_answered() {
        use CacheStatus::*;
        let metrics = for_reads(&[Hit, Hit, Miss, Bypass, Hit]);
        let get = |name| {
            metrics
                .iter()
                .find(|(n, _, _)| *n == name)
                .unwrap()
                .2
                .clone()
        };
        assert_eq!(get("CacheHits"), vec![3.0]);
        assert_eq!(get("CacheMisses"), vec![1.0]);
        assert_eq!(get("CacheBypasses"), vec![1.0]);
    }

    #[test]
    fn sync_failures_and_lag_are_reported() {
        let report = SyncReport {
            records: 3,
            applied: 2,
            failed: 1,
            lag_ms: vec![15, 30],
            ..SyncReport::default()
        };
        let metrics = for_sync(&report, true);
        let get = |name| {
            metrics
                .iter()
                .find(|(n, _, _)| *n == name)
                .unwrap()
                .2
                .clone()
        };
        assert_eq!(get("SyncFailures"), vec![1.0]);
        assert_eq!(get("FailedRecords"), vec![1.0]);
        assert_eq!(get("PropagationLag"), vec![15.0, 30.0]);
    }

    #[test]
    fn the_readme_example_is_what_the_syncer_writes() {
        let report = SyncReport {
            records: 2,
            applied: 2,
            lag_ms: vec![38, 41],
            ..SyncReport::default()
        };
        let line = document(
            "s3kv/prod",
            "syncer",
            1_763_719_200_000,
            &for_sync(&report, false),
        )
        .to_string();
        assert!(
            include_str!("../docs/src/metrics.md").contains(&line),
            "docs/src/metrics.md's example differs from {line}"
        );
    }

    #[test]
    fn the_single_read_line_is_the_document() {
        let config = crate::config::Config::from_lookup(|var| match var {
            "S3KV_BUCKET" => Some("b".into()),
            "S3KV_METRICS_NAMESPACE" => Some("s3kv/\"quoted\"".into()),
            _ => None,
        })
        .unwrap();
        let metrics = Metrics::from_config(&config);
        for status in [CacheStatus::Hit, CacheStatus::Miss, CacheStatus::Bypass] {
            let (before, after) = &metrics.single_reads[status as usize];
            let line = format!("{before}1763719200000{after}");
            let want = document(
                "s3kv/\"quoted\"",
                "reader",
                1_763_719_200_000,
                &for_reads(&[status]),
            );
            assert_eq!(line, format!("{want}\n"), "{status:?}");
        }
    }

    #[test]
    fn at_most_one_hundred_values_per_metric() {
        let doc = document("n", "f", 0, &[("Lag", Unit::Milliseconds, vec![1.0; 250])]);
        assert_eq!(doc["Lag"].as_array().unwrap().len(), 100);
    }
}
