//! The recording worker: drains the event queue into the OpenTelemetry
//! instruments, and the observable-gauge callbacks over the registry.
//!
//! Sanitizing and attribute building happen here, on survey's own thread,
//! never on the thread of an instrumented call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};

use crate::hardware::{DeviceView, HardwareFacts};
use crate::model::{DeviceFacts, ModelFacts};
use crate::privacy::SafeValue;
use crate::queue::{Ending, Event, EventQueue};
use crate::registry::Registry;
use crate::schema::{self, AttributeSet, FailureKind, LaunchKind};
use crate::status::ExportCounters;

/// The ten instruments of the schema.
pub(crate) struct Instruments {
    launch: Counter<u64>,
    launch_success: Counter<u64>,
    launch_failure: Counter<u64>,
    unload: Counter<u64>,
    exit_unexpected: Counter<u64>,
    launch_duration: Histogram<f64>,
    uptime: Histogram<f64>,
    _gauges: [ObservableGauge<u64>; 3],
}

/// What the gauge callbacks and the worker share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    pub hardware: Arc<OnceLock<HardwareFacts>>,
    pub service_version: Option<SafeValue>,
}

impl Shared {
    fn device(&self, facts: &DeviceFacts) -> Option<DeviceView> {
        self.hardware.get().map(|hw| DeviceView::resolve(hw, facts))
    }

    /// The attributes of an event about `facts`; `None` only before the
    /// hardware facts are known (never on the worker, which waits for them).
    fn attributes(
        &self,
        facts: &ModelFacts,
        kind: Option<LaunchKind>,
        failure: Option<FailureKind>,
    ) -> Option<Vec<KeyValue>> {
        let device = self.device(&facts.device)?;
        Some(
            schema::model_attributes(facts, &device, kind, failure, self.service_version.as_ref())
                .to_key_values(),
        )
    }

    /// One value per distinct attribute set of the loaded models: `value`
    /// of each model (skipped when `None`), folded with `combine`. Empty
    /// until the hardware facts are known.
    fn model_series(
        &self,
        value: impl Fn(&ModelFacts) -> Option<u64>,
        combine: impl Fn(u64, u64) -> u64,
    ) -> Vec<(AttributeSet, u64)> {
        let mut series: Vec<(AttributeSet, u64)> = Vec::new();
        for entry in self.registry.snapshot().values() {
            let Some(v) = value(&entry.facts) else {
                continue;
            };
            let Some(device) = self.device(&entry.facts.device) else {
                return Vec::new();
            };
            let attributes = schema::model_attributes(
                &entry.facts,
                &device,
                Some(entry.kind),
                None,
                self.service_version.as_ref(),
            );
            match series.iter_mut().find(|(a, _)| *a == attributes) {
                Some((_, n)) => *n = combine(*n, v),
                None => series.push((attributes, v)),
            }
        }
        series
    }
}

impl Instruments {
    pub(crate) fn new(meter: &Meter, shared: &Shared) -> Instruments {
        let spec = |name| schema::metric(name).expect("a schema metric");
        let counter = |name| {
            let spec = spec(name);
            meter
                .u64_counter(spec.name)
                .with_unit(spec.unit)
                .with_description(spec.description)
                .build()
        };
        let gauge = |name| {
            let spec = spec(name);
            meter
                .u64_observable_gauge(spec.name)
                .with_unit(spec.unit)
                .with_description(spec.description)
        };
        let histogram = |name| {
            let spec = spec(name);
            meter
                .f64_histogram(spec.name)
                .with_unit(spec.unit)
                .with_description(spec.description)
                .with_boundaries(spec.boundaries.to_vec())
                .build()
        };
        let loaded_models = {
            let shared = shared.clone();
            gauge(schema::LOADED_MODELS)
                .with_callback(move |observer| {
                    let Some(device) = shared.hardware.get().map(DeviceView::node) else {
                        return;
                    };
                    let attributes =
                        schema::node_attributes(&device, shared.service_version.as_ref());
                    let count = shared.registry.snapshot().len() as u64;
                    observer.observe(count, &attributes.to_key_values());
                })
                .build()
        };
        let model_loaded = {
            let shared = shared.clone();
            gauge(schema::MODEL_LOADED)
                .with_callback(move |observer| {
                    // Instances with the same attributes add up.
                    for (attributes, n) in shared.model_series(|_| Some(1), |a, b| a + b) {
                        observer.observe(n, &attributes.to_key_values());
                    }
                })
                .build()
        };
        let context_length = {
            let shared = shared.clone();
            gauge(schema::MODEL_CONTEXT_LENGTH)
                .with_callback(move |observer| {
                    // Instances with the same attributes report the largest context.
                    for (attributes, tokens) in
                        shared.model_series(|facts| facts.context_length, u64::max)
                    {
                        observer.observe(tokens, &attributes.to_key_values());
                    }
                })
                .build()
        };
        Instruments {
            launch: counter(schema::LAUNCH_TOTAL),
            launch_success: counter(schema::LAUNCH_SUCCESS_TOTAL),
            launch_failure: counter(schema::LAUNCH_FAILURE_TOTAL),
            unload: counter(schema::UNLOAD_TOTAL),
            exit_unexpected: counter(schema::EXIT_UNEXPECTED_TOTAL),
            launch_duration: histogram(schema::LAUNCH_DURATION_MS),
            uptime: histogram(schema::UPTIME_S),
            _gauges: [loaded_models, model_loaded, context_length],
        }
    }

    /// Records one event. `device` is resolved by the caller.
    fn record(&self, shared: &Shared, event: Event) {
        match event {
            Event::LaunchStarted { facts, kind } => {
                if let Some(attributes) = shared.attributes(&facts, Some(kind), None) {
                    self.launch.add(1, &attributes);
                }
            }
            Event::LaunchFinished {
                facts,
                kind,
                duration,
                failure,
            } => {
                let Some(attributes) = shared.attributes(&facts, Some(kind), failure) else {
                    return;
                };
                match failure {
                    None => self.launch_success.add(1, &attributes),
                    Some(_) => self.launch_failure.add(1, &attributes),
                }
                self.launch_duration
                    .record(duration.as_secs_f64() * 1000.0, &attributes);
            }
            Event::Ended {
                ending,
                facts,
                kind,
                uptime,
            } => {
                let Some(attributes) = shared.attributes(&facts, kind, None) else {
                    return;
                };
                let counter = match ending {
                    Ending::Unloaded => &self.unload,
                    Ending::ExitedUnexpectedly => &self.exit_unexpected,
                };
                counter.add(1, &attributes);
                if let Some(uptime) = uptime {
                    self.uptime.record(uptime.as_secs_f64(), &attributes);
                }
            }
        }
    }
}

/// Where the node's hardware facts come from.
pub(crate) enum HardwareSource {
    Given(HardwareFacts),
    Custom(Box<dyn FnOnce() -> HardwareFacts + Send>),
    Probe,
}

/// The running worker thread.
pub(crate) struct Worker {
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
    queue: Arc<EventQueue>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub(crate) fn spawn(
        queue: Arc<EventQueue>,
        instruments: Instruments,
        shared: Shared,
        hardware: HardwareSource,
        counters: Arc<ExportCounters>,
    ) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(true));
        let (done_tx, done) = mpsc::channel();
        let thread = {
            let (stop, busy, queue) = (stop.clone(), busy.clone(), queue.clone());
            std::thread::Builder::new()
                .name("survey-recorder".into())
                .spawn(move || {
                    let facts = match hardware {
                        HardwareSource::Given(facts) => facts,
                        HardwareSource::Custom(probe) => probe(),
                        HardwareSource::Probe => HardwareFacts::probe(),
                    };
                    let _ = shared.hardware.set(facts);
                    loop {
                        busy.store(true, Ordering::SeqCst);
                        while let Some(event) = queue.pop() {
                            instruments.record(&shared, event);
                            counters.events_recorded.fetch_add(1, Ordering::Relaxed);
                        }
                        busy.store(false, Ordering::SeqCst);
                        if stop.load(Ordering::SeqCst) && queue.len() == 0 {
                            break;
                        }
                        queue.wait_for_events(Duration::from_millis(250));
                    }
                    let _ = done_tx.send(());
                })?
        };
        queue.set_worker(thread.thread().clone());
        Ok(Worker {
            stop,
            busy,
            queue,
            done,
            thread: Some(thread),
        })
    }

    /// Waits until every event pushed before the call is recorded, or `deadline`.
    pub(crate) fn drain(&self, deadline: Instant) -> bool {
        loop {
            if self.queue.len() == 0 && !self.busy.load(Ordering::SeqCst) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if let Some(thread) = &self.thread {
                thread.thread().unpark();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Records what is queued, then stops; gives up waiting at `deadline`.
    pub(crate) fn stop(mut self, deadline: Instant) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return true;
        };
        thread.thread().unpark();
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(wait) {
            Ok(()) => {
                let _ = thread.join();
                true
            }
            // Still probing or recording: leave it to finish on its own.
            Err(_) => false,
        }
    }
}
