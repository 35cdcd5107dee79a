//! Logging: JSON lines on stdout, which CloudWatch Logs indexes field by field; and the timing of a function's
//! start-up, step by step.

use std::time::Instant;

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; the level comes from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(false)
        .without_time()
        .try_init();
}

/// Times a function's init step by step, as debug events (`RUST_LOG=s3kv::telemetry=debug`): a cold start that
/// grew can then be attributed from the function's own log, here or in Lambda, without a profiler. A cold start
/// is billed and felt by the request that waits for it, so each step is worth knowing (docs/src/benchmarks).
#[derive(Debug)]
pub struct Startup {
    began: Instant,
    last: Instant,
}

impl Startup {
    /// Starts the clock; call it first thing in `main`.
    pub fn begin() -> Self {
        let now = Instant::now();
        Self {
            began: now,
            last: now,
        }
    }

    /// Ends the step `name`: its time since the previous step ended, and the time since `begin`.
    pub fn step(&mut self, name: &'static str) {
        let now = Instant::now();
        tracing::debug!(
            step = name,
            step_us = (now - self.last).as_micros() as u64,
            total_us = (now - self.began).as_micros() as u64,
            "start-up step"
        );
        self.last = now;
    }
}
