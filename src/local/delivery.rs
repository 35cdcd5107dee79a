//! At-least-once delivery of local notifications to the syncer, like S3 → Lambda async invocation.
//!
//! Each notification becomes a one-record S3 event, as S3 sends them, and is handed to the same
//! [`crate::s3_event::handle`] the Lambda runs. A failed delivery is retried with capped backoff until it
//! succeeds: it is logged, never dropped. Deliveries run concurrently, as Lambda invocations would; their order is
//! enforced by sequencers, not by the queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, Semaphore};

use crate::local::s3_endpoint::Notification;
use crate::ports::{Cache, ObjectStore};
use crate::s3_event::{self, ObjectChange};
use crate::sync::Syncer;

const WORKERS: usize = 8;
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts notifications not yet synced, so callers can wait until the cache has caught up.
#[derive(Default)]
pub struct Backlog {
    pending: AtomicUsize,
    idle: Notify,
}

impl Backlog {
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Waits until every notification emitted so far has been synced; false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return self.pending() == 0;
            }
        }
    }

    pub(super) fn add(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

pub async fn run<S, C>(
    syncer: Arc<Syncer<S, C>>,
    mut rx: mpsc::UnboundedReceiver<Notification>,
    backlog: Arc<Backlog>,
) where
    S: ObjectStore + 'static,
    C: Cache + 'static,
{
    let workers = Arc::new(Semaphore::new(WORKERS));
    while let Some(notification) = rx.recv().await {
        let Ok(permit) = workers.clone().acquire_owned().await else {
            break;
        };
        let (syncer, backlog) = (syncer.clone(), backlog.clone());
        tokio::spawn(async move {
            deliver(&syncer, &notification).await;
            backlog.done();
            drop(permit);
        });
    }
}

async fn deliver<S: ObjectStore, C: Cache>(syncer: &Syncer<S, C>, n: &Notification) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1.. {
        let record = s3_event::record(&ObjectChange {
            name: n.name,
            bucket: &n.bucket,
            object_key: &n.key,
            etag: n.etag.as_ref(),
            size: n.size,
            version_id: None,
            sequencer: &n.sequencer,
        });
        let deadline = Instant::now() + INVOCATION_TIMEOUT;
        match s3_event::handle(syncer, s3_event::event(vec![record]), deadline).await {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(key = %n.key, attempt, retry_in_ms = wait.as_millis() as u64, %error, "delivery failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}
