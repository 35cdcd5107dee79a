//! Bounded retries with jitter: the only module that knows the `backoff` crate.
//!
//! `backoff` is flagged unmaintained (RUSTSEC-2025-0012); keeping it behind [`with_deadline`] means swapping it
//! out touches this file only. Retries end before the Lambda invocation's deadline, so a failing dependency turns
//! into a failed invocation (which Lambda retries) rather than a timed-out one, and only errors that say a retry
//! can help ([`Retryable`]) are retried: 404 and 412 are answers, not faults. The SDK's own retries are turned
//! off in the S3 adapter so that the two never multiply.

use std::future::Future;
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;

/// Whether trying the same call again could succeed.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
    /// The error for an attempt cut off by the deadline.
    fn deadline_reached() -> Self;
}

/// Attempts end this long before the deadline, leaving time to answer (an API response, a failed invocation).
const ANSWER_MARGIN: Duration = Duration::from_millis(50);

/// Time kept back for one more attempt after a wait: no wait is started that would leave less than this.
const RESERVE: Duration = Duration::from_millis(200);

/// Runs `op` until it succeeds, fails permanently, or the next wait would run into `deadline`.
pub async fn with_deadline<T, E, F, Fut>(deadline: Instant, what: &str, mut op: F) -> Result<T, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    backoff::future::retry_notify(
        UntilDeadline::new(deadline),
        || {
            let cutoff = deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline);
            let attempt = tokio::time::timeout_at(cutoff.into(), op());
            async move {
                attempt.await.unwrap_or_else(|_| Err(E::deadline_reached())).map_err(|e| {
                    if e.is_retryable() {
                        backoff::Error::transient(e)
                    } else {
                        backoff::Error::permanent(e)
                    }
                })
            }
        },
        |err: E, wait: Duration| tracing::warn!(operation = what, error = %err, retry_in_ms = wait.as_millis() as u64, "retrying"),
    )
    .await
}

/// Converts Lambda's deadline (milliseconds since the Unix epoch) to an `Instant` for [`with_deadline`].
pub fn deadline_from_epoch_millis(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

struct UntilDeadline {
    inner: ExponentialBackoff,
    deadline: Instant,
}

impl UntilDeadline {
    /// Waits of 20 ms doubling to 2 s, each drawn from ±50% around its step, so that the many invocations a
    /// shared outage fails at once do not come back in lockstep.
    fn new(deadline: Instant) -> Self {
        Self {
            inner: ExponentialBackoff {
                // Both, since `reset` is what copies the initial interval into the current one.
                current_interval: Duration::from_millis(20),
                initial_interval: Duration::from_millis(20),
                randomization_factor: 0.5,
                multiplier: 2.0,
                max_interval: Duration::from_secs(2),
                max_elapsed_time: None,
                ..ExponentialBackoff::default()
            },
            deadline,
        }
    }
}

impl Backoff for UntilDeadline {
    fn reset(&mut self) {
        self.inner.reset();
    }

    fn next_backoff(&mut self) -> Option<Duration> {
        let wait = self.inner.next_backoff()?;
        (Instant::now() + wait + RESERVE <= self.deadline).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(bool);
    impl Retryable for E {
        fn is_retryable(&self) -> bool {
            self.0
        }
        fn deadline_reached() -> Self {
            E(false)
        }
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "retryable={}", self.0)
        }
    }

    #[test]
    fn lambda_deadlines_become_instants() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let remaining = deadline_from_epoch_millis(now_ms + 3_000) - Instant::now();
        assert!(
            remaining > Duration::from_millis(2_900) && remaining <= Duration::from_millis(3_000),
            "{remaining:?}"
        );
        assert!(deadline_from_epoch_millis(0) <= Instant::now() + Duration::from_millis(1));
    }

    #[test]
    fn waits_are_jittered_around_a_doubling_step() {
        let deadline = Instant::now() + Duration::from_secs(600);
        let schedules: Vec<Vec<Duration>> = (0..20)
            .map(|_| {
                let mut policy = UntilDeadline::new(deadline);
                (0..6).map(|_| policy.next_backoff().unwrap()).collect()
            })
            .collect();
        for (step, base) in [20u64, 40, 80, 160, 320, 640].into_iter().enumerate() {
            let waits: Vec<Duration> = schedules.iter().map(|s| s[step]).collect();
            for wait in &waits {
                let base = Duration::from_millis(base);
                assert!(
                    *wait >= base / 2 && *wait <= base * 3 / 2,
                    "step {step}: {wait:?}"
                );
            }
            assert!(
                waits.iter().any(|w| *w != waits[0]),
                "step {step}: 20 clients waited exactly alike: {waits:?}"
            );
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let result = with_deadline(deadline, "t", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(E(true))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let result: Result<(), E> = with_deadline(deadline, "t", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(E(false))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_stop_before_the_deadline() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(600);
        let result: Result<(), E> = with_deadline(deadline, "t", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(E(true))
        })
        .await;
        assert!(result.is_err());
        assert!(Instant::now() <= deadline, "gave up after the deadline");
        assert!(
            calls.load(Ordering::SeqCst) >= 2,
            "should retry while time remains"
        );
    }

    #[tokio::test]
    async fn a_slow_attempt_is_cut_off_at_the_deadline() {
        let start = Instant::now();
        let result: Result<(), E> =
            with_deadline(start + Duration::from_millis(300), "t", || async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            })
            .await;
        assert!(result.is_err());
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_deadline_already_near_means_one_attempt() {
        let calls = AtomicU32::new(0);
        let result: Result<(), E> =
            with_deadline(Instant::now() + ANSWER_MARGIN * 2, "t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(true))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
