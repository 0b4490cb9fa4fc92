//! The one thread that writes to the store.
//!
//! Requests hand it validated batches through a queue bounded by a budget
//! of data points; when the budget is spent, the request is answered 503
//! instead of queued. The thread commits whatever is waiting in one
//! transaction (group commit), then answers each request, and prunes raw
//! points past the retention period once a minute.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::store::Store;
use crate::validate::{MAX_POINTS_PER_REQUEST, Validated};

/// Most batches committed in one transaction.
const MAX_BATCHES_PER_COMMIT: usize = 64;
/// How often raw points past the retention period are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Whether a submitted batch was committed (the writer logs why not).
pub type Committed = bool;

struct Job {
    batch: Validated,
    done: oneshot::Sender<Committed>,
    _budget: OwnedSemaphorePermit,
}

/// Handle to the writer thread.
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    budget: Arc<Semaphore>,
    thread: Option<JoinHandle<()>>,
}

/// The queue is full: answer 503 and let the sender retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the collector is busy; retry later")]
pub struct Overloaded;

impl Writer {
    /// Starts the writer thread on `store`; at most `max_queued_points`
    /// points wait for it at any time.
    pub fn start(
        store: Store,
        retention: Duration,
        max_queued_points: usize,
    ) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("survey-collector-writer".into())
            .spawn(move || run(store, queue, retention))?;
        Ok(Writer {
            jobs: Some(jobs),
            budget: Arc::new(Semaphore::new(
                max_queued_points.max(MAX_POINTS_PER_REQUEST),
            )),
            thread: Some(thread),
        })
    }

    /// Queues `batch`; the receiver gets the outcome once it is committed.
    pub fn submit(&self, batch: Validated) -> Result<oneshot::Receiver<Committed>, Overloaded> {
        let n = u32::try_from(batch.points.len().max(1)).map_err(|_| Overloaded)?;
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Overloaded)?;
        let (done, outcome) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or(Overloaded)?;
        jobs.send(Job {
            batch,
            done,
            _budget: permit,
        })
        .map_err(|_| Overloaded)?;
        Ok(outcome)
    }

    /// Commits what is queued and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut store: Store, queue: mpsc::Receiver<Job>, retention: Duration) {
    let retention = i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX);
    let mut last_prune: Option<Instant> = None;
    loop {
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            match store.prune(crate::now_nanos().saturating_sub(retention)) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "raw points past retention deleted"),
                Err(error) => tracing::error!(%error, "cannot delete raw points past retention"),
            }
        }
        let first = match queue.recv_timeout(PRUNE_EVERY) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCHES_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let batches: Vec<&Validated> = jobs.iter().map(|j| &j.batch).collect();
        let committed = match store.ingest(&batches) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "cannot store {} export requests", jobs.len());
                false
            }
        };
        for job in jobs {
            let _ = job.done.send(committed);
        }
    }
}
