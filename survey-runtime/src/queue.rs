//! The bounded event queue between instrumented calls and the recording
//! worker. Pushing never blocks: when the queue is full the oldest event is
//! dropped and counted.
//!
//! Lifecycle events and inference records wait in two rings of the same
//! capacity, so a burst of requests can never push a launch, an unload or
//! an exit out of the queue. A lifecycle event wakes the worker at once;
//! inference records wake it only from its long sleep, and while it naps
//! after recording some ([`EventQueue::nap`]) they gather, so a node
//! serving a thousand requests a second wakes survey's worker a few
//! dozen times a second, not a thousand.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::inference::Measured;
use crate::model::ModelFacts;
use crate::schema::{FailureKind, LaunchKind};

/// Something that happened to a model, waiting to be recorded.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A launch began.
    LaunchStarted {
        facts: Arc<ModelFacts>,
        kind: LaunchKind,
    },
    /// A launch ended.
    LaunchFinished {
        facts: Arc<ModelFacts>,
        kind: LaunchKind,
        duration: Duration,
        failure: Option<FailureKind>,
    },
    /// A loaded model went away; `kind` and `uptime` are known when survey
    /// saw it launch.
    Ended {
        ending: Ending,
        facts: Arc<ModelFacts>,
        kind: Option<LaunchKind>,
        uptime: Option<Duration>,
    },
    /// A loaded model answered (or failed) an inference request.
    Inference {
        facts: Arc<ModelFacts>,
        measured: Measured,
    },
}

impl Event {
    /// The instance the event is about.
    pub(crate) fn instance(&self) -> crate::model::InstanceKey {
        match self {
            Event::LaunchStarted { facts, .. }
            | Event::LaunchFinished { facts, .. }
            | Event::Ended { facts, .. }
            | Event::Inference { facts, .. } => facts.instance(),
        }
    }
}

/// How a loaded model went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Unloaded on request.
    Unloaded,
    /// Its backend exited without being asked to.
    ExitedUnexpectedly,
}

/// A fixed-capacity queue that drops the oldest event when full.
#[derive(Debug)]
pub(crate) struct EventQueue {
    events: ArrayQueue<Event>,
    /// Inference records, apart from the lifecycle events.
    inference: ArrayQueue<Event>,
    dropped: AtomicU64,
    worker: OnceLock<Thread>,
    /// The worker is (about to be) parked and needs a wake-up.
    worker_idle: AtomicBool,
    /// The worker naps after recording inference records: further ones
    /// wait for the nap's end without waking it.
    napping: AtomicBool,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> EventQueue {
        EventQueue {
            events: ArrayQueue::new(capacity.max(1)),
            inference: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
            worker: OnceLock::new(),
            worker_idle: AtomicBool::new(false),
            napping: AtomicBool::new(false),
        }
    }

    /// Registers the thread to wake when an event arrives.
    pub(crate) fn set_worker(&self, worker: Thread) {
        let _ = self.worker.set(worker);
    }

    /// Adds `event`, dropping the oldest one if the queue is full. Never blocks.
    pub(crate) fn push(&self, event: Event) {
        let inference = matches!(event, Event::Inference { .. });
        let ring = if inference {
            &self.inference
        } else {
            &self.events
        };
        if ring.force_push(event).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if inference && self.napping.load(Ordering::SeqCst) {
            return; // recorded at the nap's end
        }
        if self.worker_idle.swap(false, Ordering::SeqCst)
            && let Some(worker) = self.worker.get()
        {
            worker.unpark();
        }
    }

    /// Parks the worker until an event arrives or the thread is unparked
    /// (a command). No timeout: an idle worker stays asleep. A push after
    /// the emptiness check finds the idle flag set and unparks, and an
    /// unpark before the park makes the park return at once, so no event
    /// is left waiting.
    pub(crate) fn wait_for_events(&self) {
        self.worker_idle.store(true, Ordering::SeqCst);
        if self.events.is_empty() && self.inference.is_empty() {
            std::thread::park();
        }
        self.worker_idle.store(false, Ordering::SeqCst);
    }

    /// Parks the worker for at most `time`, or until a lifecycle event or
    /// a command arrives; inference records pushed meanwhile wait for the
    /// nap's end. The same protocol as [`EventQueue::wait_for_events`].
    pub(crate) fn nap(&self, time: Duration) {
        self.napping.store(true, Ordering::SeqCst);
        self.worker_idle.store(true, Ordering::SeqCst);
        if self.events.is_empty() {
            std::thread::park_timeout(time);
        }
        self.worker_idle.store(false, Ordering::SeqCst);
        self.napping.store(false, Ordering::SeqCst);
    }

    /// The oldest lifecycle event, else (unless `hold_inference`) the
    /// oldest inference record.
    pub(crate) fn pop(&self, hold_inference: bool) -> Option<Event> {
        self.events
            .pop()
            .or_else(|| (!hold_inference).then(|| self.inference.pop()).flatten())
    }

    /// Inference records waiting.
    pub(crate) fn inference_waiting(&self) -> usize {
        self.inference.len()
    }

    /// Inference records the queue holds at most.
    pub(crate) fn inference_capacity(&self) -> usize {
        self.inference.capacity()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.events.len() + self.inference.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(instance: u64) -> Event {
        Event::LaunchStarted {
            facts: Arc::new(ModelFacts::new(instance, "m")),
            kind: LaunchKind::Startup,
        }
    }

    fn instance(event: &Event) -> u64 {
        match event {
            Event::LaunchStarted { facts, .. } => facts.instance().as_u64(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn full_queue_drops_oldest_first_and_counts() {
        let queue = EventQueue::new(3);
        for i in 0..10 {
            queue.push(started(i));
        }
        assert_eq!(queue.dropped(), 7);
        assert_eq!(queue.len(), 3);
        let kept: Vec<u64> = std::iter::from_fn(|| queue.pop(false))
            .map(|e| instance(&e))
            .collect();
        assert_eq!(kept, [7, 8, 9]);
    }

    fn inference(instance: u64) -> Event {
        Event::Inference {
            facts: Arc::new(ModelFacts::new(instance, "m")),
            measured: crate::inference::Inference::new(crate::schema::RequestOutcome::Ok)
                .checked()
                .0,
        }
    }

    #[test]
    fn a_napping_worker_is_woken_by_lifecycle_events_only() {
        let queue = Arc::new(EventQueue::new(16));
        let (asleep_tx, asleep) = std::sync::mpsc::channel();
        let (woke_tx, woke) = std::sync::mpsc::channel();
        let worker = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                queue.set_worker(std::thread::current());
                asleep_tx.send(()).unwrap();
                let start = std::time::Instant::now();
                queue.nap(Duration::from_secs(30));
                woke_tx.send(start.elapsed()).unwrap();
            })
        };
        asleep.recv().unwrap();
        // Wait until it naps: the idle flag is up.
        while !queue.napping.load(Ordering::SeqCst) || !queue.worker_idle.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        for i in 0..5 {
            queue.push(inference(i));
        }
        assert!(
            queue.worker_idle.load(Ordering::SeqCst),
            "an inference record took the wake-up"
        );
        assert!(woke.try_recv().is_err());
        queue.push(started(9));
        let slept = woke.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(slept < Duration::from_secs(30), "{slept:?}");
        worker.join().unwrap();
        assert_eq!(queue.len(), 6);
    }

    #[test]
    fn inference_records_never_push_lifecycle_events_out() {
        let queue = EventQueue::new(3);
        queue.push(started(1));
        for i in 0..10 {
            queue.push(inference(100 + i));
        }
        queue.push(started(2));
        assert_eq!(queue.dropped(), 7);
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.pop(true).map(|e| e.instance().as_u64()), Some(1));
        assert_eq!(queue.pop(true).map(|e| e.instance().as_u64()), Some(2));
        assert!(queue.pop(true).is_none(), "inference records are held");
        assert_eq!(queue.inference_waiting(), 3);
        let order: Vec<u64> = std::iter::from_fn(|| queue.pop(false))
            .map(|e| e.instance().as_u64())
            .collect();
        assert_eq!(order, [107, 108, 109]);
    }
}
