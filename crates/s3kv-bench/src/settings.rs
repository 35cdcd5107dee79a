//! What a run measures and how much of it (`S3KV_BENCH_*`), and where the binaries it starts are.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) struct Settings {
    pub(crate) items: usize,
    pub(crate) phase: Duration,
    pub(crate) rounds: usize,
    pub(crate) sync_rounds: usize,
    pub(crate) propagation_writes: usize,
    /// `S3KV_BENCH_WATCH_WRITES`: writes a waiter waits for, one at a time (the wake latency).
    pub(crate) watch_writes: usize,
    /// `S3KV_BENCH_WATCH_IDLE_MS`: how long waiters wait on an item that does not change while Valkey's commands
    /// are counted (at most 23 s: a wait lasts 25).
    pub(crate) watch_idle: Duration,
    /// `S3KV_BENCH_PUSH_SUBSCRIBERS`: WebSocket subscribers the push section opens (10,000).
    pub(crate) push_subscribers: usize,
    /// `S3KV_BENCH_PUSH_WRITES`: writes the push section fans out, one at a time (50).
    pub(crate) push_writes: usize,
    /// `S3KV_BENCH_PUSH_WAITERS`: long-poll waiters on each of those writes, the same-run baseline (100).
    pub(crate) push_waiters: usize,
    pub(crate) cold_starts: usize,
    pub(crate) invocations: usize,
    /// `S3KV_BENCH_ONLY`: comma-separated sections to run (read, functions, sync, schema, propagation, watch, ofrep, expiry, import; and
    /// reconcile and push, which only run when named); default all but reconcile and push. Watch runs on propagation's s3kv-local and
    /// compares its wake latency with propagation's when both run (`S3KV_BENCH_ONLY=propagation,watch`); push runs on
    /// the same s3kv-local, with its own long-poll baseline.
    pub(crate) only: Option<Vec<String>>,
    /// `S3KV_BENCH_READ_VARIANTS`: which read variants to run (raw_get, raw_entry, reader, reader_quiet, s3); default all.
    pub(crate) read_variants: Option<Vec<String>>,
    /// `S3KV_BENCH_BASELINE_BIN_DIR`: a directory with another build's `reader`, `writer` and `syncer` (an older
    /// commit's `target/release`). The functions section then cold-starts those too, alternating with the current
    /// binaries start by start, so that a change in start-up time is told apart from the machine's own drift:
    /// figures from two runs on a shared machine differ by more than the changes worth finding.
    pub(crate) baseline_bin_dir: Option<PathBuf>,
}

impl Settings {
    pub(crate) fn from_env() -> Self {
        let n = |var: &str, default: usize| -> usize {
            std::env::var(var)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{var}={v:?}: expected a number"))
                })
                .unwrap_or(default)
                .max(1)
        };
        Self {
            items: n("S3KV_BENCH_ITEMS", 1000),
            phase: Duration::from_millis(n("S3KV_BENCH_PHASE_MS", 1000) as u64),
            rounds: n("S3KV_BENCH_ROUNDS", 2),
            sync_rounds: n("S3KV_BENCH_SYNC_ROUNDS", 15),
            propagation_writes: n("S3KV_BENCH_PROPAGATION_WRITES", 1000),
            watch_writes: n("S3KV_BENCH_WATCH_WRITES", 200),
            watch_idle: Duration::from_millis(
                n("S3KV_BENCH_WATCH_IDLE_MS", 10_000).min(23_000) as u64
            ),
            push_subscribers: n("S3KV_BENCH_PUSH_SUBSCRIBERS", 10_000),
            push_writes: n("S3KV_BENCH_PUSH_WRITES", 50),
            push_waiters: n("S3KV_BENCH_PUSH_WAITERS", 100),
            cold_starts: n("S3KV_BENCH_COLD_STARTS", 10),
            invocations: n("S3KV_BENCH_INVOCATIONS", 2000),
            only: list("S3KV_BENCH_ONLY"),
            read_variants: list("S3KV_BENCH_READ_VARIANTS"),
            baseline_bin_dir: std::env::var_os("S3KV_BENCH_BASELINE_BIN_DIR")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Whether `S3KV_BENCH_ONLY` names `section` (for sections that only run when asked for).
    pub(crate) fn selects(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_some_and(|only| only.iter().any(|s| s == section))
    }

    pub(crate) fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

pub(crate) fn list(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// CPU time a process has used so far (every thread), from the scheduler's nanosecond counters.
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The workspace's root (this crate is `crates/s3kv-bench` in it), where `target/` is.
pub(crate) fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `CARGO_TARGET_DIR` (a relative one from the workspace's root, where scripts/bench runs cargo), or the
/// workspace's `target/`.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace_dir().join(dir))
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// `name` in the baseline's directory (`S3KV_BENCH_BASELINE_BIN_DIR`), which must hold it.
pub(crate) fn baseline_binary(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: S3KV_BENCH_BASELINE_BIN_DIR must hold the baseline's release reader, writer and syncer \
         (e.g. `git worktree add /tmp/base <commit>` and `CARGO_TARGET_DIR=/tmp/base-target cargo build --release \
         -p s3kv --bins` there, then /tmp/base-target/release)",
        path.display()
    );
    path
}

pub(crate) fn release_binary(name: &str) -> PathBuf {
    let path = target_dir().join("release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --release -p s3kv --bins -p s3kv-local -p s3kv-cli` (scripts/bench does)",
        path.display()
    );
    path
}
