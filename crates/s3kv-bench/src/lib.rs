//! s3kv's read and sync paths measured against their physical limits and the reference designs, every comparison
//! taken in the same run, against real servers this harness starts on 127.0.0.1 (each its own process, a
//! [`testkit::ChildServer`] whose output is kept and which is killed when dropped):
//!
//! * `valkey-server` ([`testkit::Valkey`]: `S3KV_VALKEY_SERVER`, as the tests find it), ready once it answers PING;
//! * the project's own S3 endpoint (`s3kv_local::s3_endpoint::NotifyingFs` over s3s-fs, built by the very function
//!   `s3kv-local` serves), run by this very executable re-started with `S3KV_BENCH_ROLE=s3` on a reserved port;
//!   its notifications are dropped, so nothing else runs during a measurement. The S3 baseline and the reader's S3
//!   path use this one endpoint;
//! * `target/release/s3kv-local` for propagation, watch and push, and `target/release/{reader,writer,syncer}` behind a
//!   minimal Lambda Runtime API for cold starts and peak RSS.
//!
//! `scripts/bench` builds what this needs, runs it `S3KV_BENCH_RUNS` times and prints the Markdown report
//! (min/median/max over the runs). `cargo bench -p s3kv-bench --bench s3kv` alone does one run and prints its
//! report.
//!
//! Environment: `S3KV_BENCH_OUT` (append this run's results, one JSON line), `S3KV_BENCH_REPORT` (only print the
//! report of a results file), `S3KV_BENCH_ITEMS` (1000), `S3KV_BENCH_PHASE_MS` (1000), `S3KV_BENCH_ROUNDS` (2),
//! `S3KV_BENCH_SYNC_ROUNDS` (15), `S3KV_BENCH_PROPAGATION_WRITES` (1000), `S3KV_BENCH_COLD_STARTS` (10),
//! `S3KV_BENCH_INVOCATIONS` (2000), `S3KV_BENCH_IMPORT_ITEMS` (1000), `S3KV_BENCH_WATCH_WRITES` (200),
//! `S3KV_BENCH_WATCH_IDLE_MS` (10000), `S3KV_BENCH_SCHEMA_WRITES` (300), `S3KV_BENCH_PUSH_SUBSCRIBERS` (10000),
//! `S3KV_BENCH_PUSH_WRITES` (50), `S3KV_BENCH_PUSH_WAITERS` (100), `S3KV_BENCH_ONLY` and `S3KV_BENCH_READ_VARIANTS` ([`settings`]),
//! `S3KV_BENCH_S3_NODELAY` ([`procs`]), `S3KV_BENCH_BASELINE_BIN_DIR` (another build's functions, cold-started
//! in the same run: [`settings`]).
//!
//! Every answer is checked (a reader answer must be 200 with `X-Cache: HIT` and the exact body, a sync must apply
//! every record, a function's first answer must be a correct response): a number measured on failures would be
//! meaningless, so any wrong answer stops the run.
//!
//! The modules follow a run: [`settings`], the servers ([`procs`]), [`load`] generation, test [`data`], the
//! [`read_path`] and [`sync_path`], the Lambda [`functions`] behind a local Runtime API ([`testkit::runtime_api`]),
//! what schema validation costs a write ([`schema_cost`]), [`propagation`], [`watch`] and [`push`] (opt-in:
//! `S3KV_BENCH_ONLY=push`, 10,000 WebSocket subscribers) through s3kv-local, a bulk [`cli_import`] (`s3kv import`
//! against `aws s3 cp`), the [`binaries`] it lists, and the [`report`]; [`run`] ties them together.

mod binaries;
mod cli_import;
mod data;
mod expiry;
mod functions;
mod http;
mod load;
mod ofrep;
mod procs;
mod propagation;
mod push;
mod read_path;
mod reconcile_scale;
mod report;
mod run;
mod schema_cost;
mod settings;
mod sync_path;
mod watch;

const BUCKET: &str = "s3kv-bench";
const PREFIX: &str = "items/";
const READ_BODY_BYTES: usize = 1024;
const SYNC_BODY_BYTES: usize = 4096;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// The reader's Valkey timeout, as tests/it/common sets it for loaded machines (default 50 ms): on a busy 2-core
/// machine a lookup can stall past 50 ms, and its answer (BYPASS, from S3) would stop the run. The timeout only
/// decides when to give up on Valkey; a hit costs the same either way.
const READER_CACHE_TIMEOUT_MS: &str = "1000";

/// The bench's entry point (`benches/s3kv.rs`): a run, a role of a child process (`S3KV_BENCH_ROLE`), or a
/// report of earlier runs (`S3KV_BENCH_REPORT`).
pub fn main() {
    run::main()
}
