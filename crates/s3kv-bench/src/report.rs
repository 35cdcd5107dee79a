//! Results and the report: every figure a run measured, with its target, and the Markdown report over runs.

use std::collections::HashMap;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `value >= bound` (`at_least`) or `value <= bound`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Target {
    pub(crate) at_least: bool,
    pub(crate) bound: f64,
}

impl Target {
    pub(crate) fn met(&self, value: f64) -> bool {
        if self.at_least {
            value >= self.bound
        } else {
            value <= self.bound
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {}",
            if self.at_least { "≥" } else { "≤" },
            fmt_num(self.bound)
        )
    }
}

pub(crate) fn at_least(bound: f64) -> Option<Target> {
    Some(Target {
        at_least: true,
        bound,
    })
}

pub(crate) fn at_most(bound: f64) -> Option<Target> {
    Some(Target {
        at_least: false,
        bound,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Metric {
    pub(crate) id: String,
    pub(crate) section: String,
    pub(crate) label: String,
    pub(crate) unit: String,
    pub(crate) value: f64,
    pub(crate) target: Option<Target>,
}

#[derive(Default)]
pub(crate) struct Metrics(pub(crate) Vec<Metric>);

impl Metrics {
    pub(crate) fn add(&mut self, section: &str, id: &str, label: &str, unit: &str, value: f64) {
        self.add_target(section, id, label, unit, value, None);
    }

    pub(crate) fn add_target(
        &mut self,
        section: &str,
        id: &str,
        label: &str,
        unit: &str,
        value: f64,
        target: Option<Target>,
    ) {
        assert!(value.is_finite(), "{id} is not a number: {value}");
        eprintln!("  {label}: {} {unit}", fmt_num(value));
        self.0.push(Metric {
            id: id.into(),
            section: section.into(),
            label: label.into(),
            unit: unit.into(),
            value,
            target,
        });
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileFact {
    pub(crate) path: String,
    pub(crate) arch: String,
    pub(crate) bytes: u64,
    pub(crate) modified_unix: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub(crate) started_unix: u64,
    pub(crate) seconds: f64,
    pub(crate) load_start: String,
    pub(crate) load_end: String,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) files: Vec<FileFact>,
}

pub(crate) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{v:.0}");
        let (sign, digits) = s.split_at(if v < 0.0 { 1 } else { 0 });
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

pub(crate) fn machine() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    vec![
        (
            "CPUs (nproc)".into(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into()),
        ),
        (
            "CPU model".into(),
            format!(
                "{} (family {}, model {})",
                field("model name"),
                field("cpu family"),
                field("model\t")
            ),
        ),
        (
            "Memory".into(),
            format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
        ),
        (
            "Kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
        ("rustc".into(), rustc),
    ]
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The Markdown report over one or more runs: min/median/max of every figure; targets judged on the median,
/// with how many runs met them.
pub(crate) fn report(runs: &[RunRecord]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let line = |w: &mut String, s: String| {
        w.push_str(&s);
        w.push('\n');
    };
    line(w, "# s3kv benchmark report\n".into());
    line(
        w,
        format!(
            "{} run(s); every figure is min / median / max over the runs. Targets are judged on the median; \
             \"runs\" says how many runs met them.\n",
            runs.len()
        ),
    );
    line(w, "| Machine | |\n| --- | --- |".into());
    for (k, v) in machine() {
        line(w, format!("| {k} | {v} |"));
    }
    line(w, String::new());
    line(
        w,
        "| Run | started (UTC) | duration | load average at start | at end |\n| --- | --- | --- | --- | --- |"
            .into(),
    );
    for (i, r) in runs.iter().enumerate() {
        line(
            w,
            format!(
                "| {} | {} | {:.0} s | {} | {} |",
                i + 1,
                chrono::DateTime::from_timestamp(r.started_unix as i64, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                r.seconds,
                r.load_start,
                r.load_end
            ),
        );
    }
    // Figures in the first run's order.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut values: HashMap<String, Vec<f64>> = HashMap::new();
    let mut meta: HashMap<String, Metric> = HashMap::new();
    for r in runs {
        for m in &r.metrics {
            if !meta.contains_key(&m.id) {
                order.push((m.section.clone(), m.id.clone()));
                meta.insert(m.id.clone(), m.clone());
            }
            values.entry(m.id.clone()).or_default().push(m.value);
        }
    }
    let mut sections: Vec<&String> = Vec::new();
    for (sec, _) in &order {
        if !sections.contains(&sec) {
            sections.push(sec);
        }
    }
    // The bill is derived from the other sections: it comes last.
    sections.sort_by_key(|s| s.as_str() == BILL);
    let order: Vec<&(String, String)> = sections
        .iter()
        .flat_map(|s| order.iter().filter(move |(sec, _)| sec == *s))
        .collect();
    let mut section = String::new();
    let mut targets = Vec::new();
    for (sec, id) in order {
        if *sec != section {
            section = sec.clone();
            line(w, format!("\n## {section}\n"));
            line(
                w,
                "| Figure | unit | min | median | max | target | runs |\n| --- | --- | --- | --- | --- | --- | --- |"
                    .into(),
            );
        }
        let m = &meta[id];
        let mut v = values[id].clone();
        v.sort_by(f64::total_cmp);
        let med = median(&v);
        let (target, verdict) = match m.target {
            Some(t) => {
                let met = values[id].iter().filter(|x| t.met(**x)).count();
                let verdict = format!(
                    "{} ({met}/{})",
                    if t.met(med) { "**met**" } else { "**missed**" },
                    v.len()
                );
                targets.push((m.label.clone(), t, med, verdict.clone()));
                (t.describe(), verdict)
            }
            None => (String::new(), String::new()),
        };
        line(
            w,
            format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                m.label,
                m.unit,
                fmt_num(v[0]),
                fmt_num(med),
                fmt_num(v[v.len() - 1]),
                target,
                verdict
            ),
        );
    }
    line(
        w,
        "\n## Targets (median of the runs)\n\n| Target | median | verdict (runs met) |\n| --- | --- | --- |"
            .into(),
    );
    for (label, t, med, verdict) in targets {
        line(
            w,
            format!(
                "| {label} {} | {} | {verdict} |",
                t.describe(),
                fmt_num(med)
            ),
        );
    }
    if let Some(last) = runs.last() {
        line(
            w,
            "\n## Binaries\n\n| File | architecture | size | MiB | built (UTC) |\n| --- | --- | --- | --- | --- |"
                .into(),
        );
        for f in &last.files {
            line(
                w,
                format!(
                    "| `{}` | {} | {} B | {:.2} | {} |",
                    f.path,
                    f.arch,
                    fmt_num(f.bytes as f64),
                    f.bytes as f64 / 1024.0 / 1024.0,
                    chrono::DateTime::from_timestamp(f.modified_unix as i64, 0)
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default()
                ),
            );
        }
    }
    out
}

pub(crate) const BILL: &str = "What it means for a Lambda bill (derived from the durations above)";

/// Lambda bills each invocation's duration rounded up to the next millisecond.
pub(crate) fn mean_billed_ms(durations_ns: &[u64]) -> f64 {
    let total: u64 = durations_ns.iter().map(|ns| ns.div_ceil(1_000_000)).sum();
    total as f64 / durations_ns.len() as f64
}
