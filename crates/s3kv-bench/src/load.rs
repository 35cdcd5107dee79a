//! Load generation: concurrent callers back to back for a phase, and their latencies.

use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Sample {
    pub(crate) elapsed: Duration,
    pub(crate) lat_ns: Vec<u64>,
}

impl Sample {
    pub(crate) fn merge(&mut self, other: Sample) {
        self.elapsed += other.elapsed;
        self.lat_ns.extend(other.lat_ns);
    }

    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.lat_ns.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, in microseconds.
    pub(crate) fn pct_us(&mut self, p: f64) -> f64 {
        self.lat_ns.sort_unstable();
        percentile(&self.lat_ns, p) as f64 / 1000.0
    }
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty(), "no samples");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `concurrency` tasks call `op(i)` back to back (each starting at its own place among `n` items) until `duration`
/// has passed; throughput counts until the last call in flight has finished.
pub(crate) async fn run_phase<F, Fut>(
    concurrency: usize,
    duration: Duration,
    n: usize,
    op: F,
) -> Sample
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let stop = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                let mut i = t * n / concurrency;
                loop {
                    let t0 = Instant::now();
                    if t0 >= stop {
                        break;
                    }
                    op(i % n).await?;
                    lat.push(t0.elapsed().as_nanos() as u64);
                    i += 1;
                }
                Ok::<_, String>(lat)
            })
        })
        .collect();
    let mut lat_ns = Vec::new();
    for task in tasks {
        match task.await.expect("load task") {
            Ok(l) => lat_ns.extend(l),
            Err(e) => panic!("a wrong answer makes the measurement meaningless: {e}"),
        }
    }
    Sample {
        elapsed: start.elapsed(),
        lat_ns,
    }
}
