//! The local S3 endpoint's notifications, from the change that emits one to the syncer that applies it: the
//! [`Outbox`] assigns sequencers and counts each notification in the [`Backlog`] until it is synced, and [`run`]
//! delivers them at least once, like S3 → Lambda async invocation.
//!
//! Each notification becomes a one-record S3 event, as S3 sends them, and is handed to the same
//! [`s3kv::s3_event::handle`] the Lambda runs. A failed delivery is retried with capped backoff until it
//! succeeds: it is logged, never dropped. Deliveries run concurrently, as Lambda invocations would; their order is
//! enforced by sequencers, not by the queue.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, Semaphore};

use s3kv::ports::{Cache, Etag, Feed, ObjectStore};
use s3kv::push::{Notifier, Publisher};
use s3kv::s3_event::{self, EventName, ObjectChange};
use s3kv::sequencer::Sequencer;
use s3kv::sync::Syncer;

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

    fn add(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// One change, ready to be turned into an S3 event record.
#[derive(Debug, Clone)]
pub struct Notification {
    pub name: EventName,
    pub bucket: String,
    pub key: String,
    pub etag: Option<Etag>,
    pub size: u64,
    pub sequencer: Sequencer,
}

/// Where notifications go: sequencers are assigned here, and the backlog counts them until they are synced.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Notification>,
    last: Arc<AtomicU64>,
    backlog: Arc<Backlog>,
}

impl Outbox {
    pub fn new(tx: mpsc::UnboundedSender<Notification>, backlog: Arc<Backlog>) -> Self {
        Self {
            tx,
            last: Arc::new(AtomicU64::new(0)),
            backlog,
        }
    }

    /// Strictly increasing, even when the clock stalls or steps back.
    fn next_sequencer(&self) -> Sequencer {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let next = |last: u64| now.max(last + 1);
        let previous = self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(next(last)));
        Sequencer::from_counter(next(previous.unwrap_or_default()))
    }

    /// Emits a notification; call it while the change it describes is still serialized against others.
    pub fn emit(
        &self,
        name: EventName,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
        size: Option<i64>,
    ) {
        let notification = Notification {
            name,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.map(Etag::new),
            size: size.unwrap_or_default().max(0) as u64,
            sequencer: self.next_sequencer(),
        };
        self.backlog.add();
        if self.tx.send(notification).is_err() {
            // Only during shutdown, when the delivery task is gone.
            tracing::warn!(%key, "notification not delivered: shutting down");
        }
    }
}

/// Delivers each notification to the syncer, then to the push notifier: a change is pushed once the cache holds
/// it, and counted in the backlog until both are done.
pub async fn run<S, C, P>(
    syncer: Arc<Syncer<S, C>>,
    notifier: Arc<Notifier<S, P>>,
    mut rx: mpsc::UnboundedReceiver<Notification>,
    backlog: Arc<Backlog>,
) where
    S: ObjectStore + 'static,
    C: Cache + Feed + s3kv::ports::ExpiryIndex + 'static,
    P: Publisher + 'static,
{
    let workers = Arc::new(Semaphore::new(WORKERS));
    while let Some(notification) = rx.recv().await {
        let Ok(permit) = workers.clone().acquire_owned().await else {
            break;
        };
        let (syncer, notifier, backlog) = (syncer.clone(), notifier.clone(), backlog.clone());
        tokio::spawn(async move {
            deliver(&syncer, &notification).await;
            push(&notifier, &notification).await;
            backlog.done();
            drop(permit);
        });
    }
}

/// The S3 event record S3 would send for `n`.
fn record_of(n: &Notification) -> aws_lambda_events::s3::S3EventRecord {
    s3_event::record(&ObjectChange {
        name: n.name,
        bucket: &n.bucket,
        object_key: &n.key,
        etag: n.etag.as_ref(),
        size: n.size,
        version_id: None,
        sequencer: &n.sequencer,
    })
}

/// Publishes the change to push subscribers, a few times if the publisher fails; subscribers that miss one catch
/// up from the change feed, so a failure here is logged, not retried forever.
async fn push<S: ObjectStore, P: Publisher>(notifier: &Notifier<S, P>, n: &Notification) {
    let record = match s3_event::decode(&record_of(n)) {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(reason) => {
            return tracing::warn!(key = %n.key, %reason, "not pushed: the record does not decode")
        }
    };
    for attempt in 1..=3 {
        match notifier.notify(&record).await {
            Ok(_) => return,
            Err(error) if error.is_retryable() && attempt < 3 => {
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await
            }
            Err(error) => return tracing::warn!(key = %n.key, %error, "change not pushed"),
        }
    }
}

async fn deliver<S: ObjectStore, C: Cache + Feed + s3kv::ports::ExpiryIndex>(
    syncer: &Syncer<S, C>,
    n: &Notification,
) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1.. {
        let record = record_of(n);
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
