//! The recording worker: drains the event queue into the OpenTelemetry
//! instruments, and the observable-gauge callbacks over the registry.
//!
//! Sanitizing and attribute building happen here, on survey's own thread,
//! never on the thread of an instrumented call.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider, ObservableGauge};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::attributes::{self, AttributeSet};
use crate::export::{self, Generation, Pipeline, SERIES_RESET_DUE_AT};
use crate::hardware::{DeviceView, HardwareFacts};
use crate::inference::Measured;
use crate::model::{DeviceFacts, InstanceKey, ModelFacts};
use crate::privacy::SafeValue;
use crate::queue::{Ending, Event, EventQueue};
use crate::registry::Registry;
use crate::schema::{self, FailureKind, LaunchKind, RequestOutcome};
use crate::status::ExportCounters;

/// The instruments of the schema: the ten lifecycle metrics, and the
/// inference metrics when `prompt_shape_metrics` is on.
pub(crate) struct Instruments {
    launch: Counter<u64>,
    launch_success: Counter<u64>,
    launch_failure: Counter<u64>,
    unload: Counter<u64>,
    exit_unexpected: Counter<u64>,
    launch_duration: Histogram<f64>,
    uptime: Histogram<f64>,
    _gauges: [ObservableGauge<u64>; 3],
    /// Absent with the switch off: no inference metric can be exported.
    inference: Option<InferenceInstruments>,
}

/// The opt-in inference instruments.
struct InferenceInstruments {
    attributes: AttributeCache,
    requests: Counter<u64>,
    prompt_tokens: Histogram<f64>,
    output_tokens: Histogram<f64>,
    prefill_speed: Histogram<f64>,
    decode_speed: Histogram<f64>,
    time_to_first_token: Histogram<f64>,
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
            attributes::model_attributes(
                facts,
                &device,
                kind,
                failure,
                self.service_version.as_ref(),
            )
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
            let attributes = attributes::model_attributes(
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
    /// The instruments of one meter provider; `generation` learns when each
    /// of its collections begins, with the events recorded by then.
    pub(crate) fn new(
        meter: &Meter,
        shared: &Shared,
        generation: &Arc<Generation>,
        counters: &Arc<ExportCounters>,
        prompt_shape: bool,
    ) -> Instruments {
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
            let (generation, counters) = (generation.clone(), counters.clone());
            gauge(schema::LOADED_MODELS)
                .with_callback(move |observer| {
                    // Callbacks run first in a collection, before the
                    // counters and histograms are read.
                    generation.collecting(counters.events_recorded.load(Ordering::SeqCst));
                    let Some(device) = shared.hardware.get().map(DeviceView::node) else {
                        return;
                    };
                    let attributes =
                        attributes::node_attributes(&device, shared.service_version.as_ref());
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
            inference: prompt_shape.then(|| InferenceInstruments {
                attributes: AttributeCache::default(),
                requests: counter(schema::INFERENCE_REQUESTS_TOTAL),
                prompt_tokens: histogram(schema::INFERENCE_PROMPT_TOKENS),
                output_tokens: histogram(schema::INFERENCE_OUTPUT_TOKENS),
                prefill_speed: histogram(schema::INFERENCE_PREFILL_TOKENS_PER_S),
                decode_speed: histogram(schema::INFERENCE_DECODE_TOKENS_PER_S),
                time_to_first_token: histogram(schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS),
            }),
        }
    }

    /// Records one event, with the attributes of its model on this node's
    /// hardware; drops it if the hardware facts are not known yet (the
    /// worker learns them before it records anything).
    fn record(&mut self, shared: &Shared, event: Event) {
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
            Event::Inference { facts, measured } => {
                if let Some(inference) = &mut self.inference {
                    inference.record(shared, &facts, &measured);
                }
            }
        }
    }
}

impl InferenceInstruments {
    /// One request: its count by outcome on the counter; its numbers on
    /// the histograms (only requests answered in full carry any), with the
    /// attributes of the instance's model, hardware and context bucket.
    fn record(&mut self, shared: &Shared, facts: &Arc<ModelFacts>, measured: &Measured) {
        let Some(attributes) = self.attributes.of(shared, facts) else {
            return;
        };
        let histograms = [
            (&self.prompt_tokens, measured.prompt_tokens),
            (&self.output_tokens, measured.output_tokens),
            (&self.prefill_speed, measured.prefill_tps),
            (&self.decode_speed, measured.decode_tps),
            (&self.time_to_first_token, measured.time_to_first_token_ms),
        ];
        for (histogram, value) in histograms {
            if let Some(value) = value {
                histogram.record(value, &attributes.histograms);
            }
        }
        self.requests
            .add(1, &attributes.requests[measured.outcome as usize]);
    }
}

/// The inference attributes of one loaded instance, built once from its
/// facts: what a busy node's recorder would otherwise sanitize and build
/// again for every request.
struct InstanceAttributes {
    /// The facts they were built from (a new launch brings new facts).
    facts: Arc<ModelFacts>,
    histograms: Vec<KeyValue>,
    /// The counter's, one per [`RequestOutcome`], in its order.
    requests: Vec<Vec<KeyValue>>,
}

/// [`InstanceAttributes`] of the instances recently served, at most
/// [`AttributeCache::CAPACITY`] (emptied when full; a series reset starts
/// a new one with the new instruments).
#[derive(Default)]
struct AttributeCache {
    instances: HashMap<InstanceKey, InstanceAttributes>,
}

impl AttributeCache {
    const CAPACITY: usize = 256;

    /// The attributes of `facts`' instance; `None` before the hardware
    /// facts are known.
    fn of(&mut self, shared: &Shared, facts: &Arc<ModelFacts>) -> Option<&InstanceAttributes> {
        let key = facts.instance();
        let fresh = self
            .instances
            .get(&key)
            .is_some_and(|cached| Arc::ptr_eq(&cached.facts, facts));
        if fresh {
            return self.instances.get(&key);
        }
        let device = shared.device(&facts.device)?;
        let version = shared.service_version.as_ref();
        let built = InstanceAttributes {
            facts: facts.clone(),
            histograms: attributes::inference_attributes(facts, &device, None, version)
                .to_key_values(),
            requests: RequestOutcome::ALL
                .iter()
                .map(|outcome| {
                    attributes::inference_attributes(facts, &device, Some(*outcome), version)
                        .to_key_values()
                })
                .collect(),
        };
        if self.instances.len() >= AttributeCache::CAPACITY {
            self.instances.clear();
        }
        Some(self.instances.entry(key).insert_entry(built).into_mut())
    }
}

/// Whether [`Recorder::record_queued`] may leave inference records
/// queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// While a series reset is due (and their ring is less than half full).
    WhileResetDue,
    /// Never: a flush or a stop.
    Nothing,
}

/// How long the worker naps after recording inference records, gathering
/// more: at most this delay before a request is recorded, at most this
/// many wake-ups a second (20) however many requests a node serves.
const INFERENCE_NAP: Duration = Duration::from_millis(50);

/// Where the node's hardware facts come from.
pub(crate) enum HardwareSource {
    Given(HardwareFacts),
    Custom(Box<dyn FnOnce() -> HardwareFacts + Send>),
    Probe,
}

/// What the worker is asked to do besides recording events.
enum Command {
    /// Record what is queued, then answer.
    Drain(mpsc::Sender<()>),
    /// Start every series anew if `generation` is the current one and
    /// nothing was recorded after the collection of its successful export,
    /// which held these many events.
    ResetSeries {
        generation: usize,
        exported_events: u64,
    },
    /// Record what is queued, then end.
    Stop,
}

/// The worker's state: the instruments it records into and the meter
/// provider they belong to, which a series reset replaces.
struct Recorder {
    queue: Arc<EventQueue>,
    instruments: Instruments,
    generation: Arc<Generation>,
    /// The current provider; `None` once shutdown has taken it.
    provider: Arc<Mutex<Option<SdkMeterProvider>>>,
    shared: Shared,
    pipeline: Arc<Pipeline>,
    /// Instances with series in the current provider (tracked only when
    /// series resets are on).
    instances: HashSet<InstanceKey>,
}

impl Recorder {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            let served = self.record_queued(Hold::WhileResetDue);
            match commands.try_recv() {
                // A flush and a stop record everything, held records too.
                Ok(Command::Drain(reply)) => {
                    self.record_queued(Hold::Nothing);
                    let _ = reply.send(());
                }
                Ok(Command::ResetSeries {
                    generation,
                    exported_events,
                }) => self.reset_series(generation, exported_events),
                Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                    self.record_queued(Hold::Nothing);
                    return;
                }
                // Requests are being served: naps, so that inference
                // records gather instead of waking the worker one by one.
                Err(mpsc::TryRecvError::Empty) if served => self.queue.nap(INFERENCE_NAP),
                // Parks until an event or a command arrives: no timeout,
                // so an idle node's recorder never wakes.
                Err(mpsc::TryRecvError::Empty) => self.queue.wait_for_events(),
            }
        }
    }

    /// Records every queued event, but for inference records while a
    /// series reset is due; whether requests are being served (inference
    /// records recorded, or held).
    ///
    /// A reset happens only when the successful export before it held
    /// every event recorded so far; on a busy node requests end all the
    /// time, so while a reset is due their records wait in their ring
    /// (at most until it is half full) and go to the new series after it.
    fn record_queued(&mut self, hold: Hold) -> bool {
        let hold = hold == Hold::WhileResetDue
            && self.pipeline.reset.due(Instant::now())
            && self.queue.inference_waiting() < self.queue.inference_capacity() / 2;
        let mut recorded = false;
        let mut inference = false;
        let tracking = self.pipeline.reset.enabled();
        while let Some(event) = self.queue.pop(hold) {
            if tracking {
                self.instances.insert(event.instance());
            }
            inference |= matches!(event, Event::Inference { .. });
            self.instruments.record(&self.shared, event);
            self.pipeline
                .counters
                .events_recorded
                .fetch_add(1, Ordering::SeqCst);
            recorded = true;
        }
        if recorded && tracking {
            let loaded = self.shared.registry.snapshot();
            let reset = &self.pipeline.reset;
            let ended = self.instances.iter().any(|key| !loaded.contains_key(key));
            reset.ended_series.store(ended, Ordering::SeqCst);
            reset.crowded.store(
                self.instances.len() >= SERIES_RESET_DUE_AT,
                Ordering::SeqCst,
            );
        }
        inference || (hold && self.queue.inference_waiting() > 0)
    }

    /// Replaces the meter provider with a new one, so every series starts
    /// anew and those of instances that ended are no longer exported. Only
    /// when every event recorded so far was in the export that just
    /// succeeded, so the old provider holds nothing unsent.
    fn reset_series(&mut self, generation: usize, exported_events: u64) {
        let counters = &self.pipeline.counters;
        if generation != self.generation.id()
            || counters.events_recorded.load(Ordering::SeqCst) != exported_events
            || !self.generation.second_has_passed()
        {
            return; // the next successful export asks again
        }
        let mut current = self
            .provider
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.is_none() {
            return; // shutting down
        }
        let next = Arc::new(Generation::new());
        let provider = match export::meter_provider(&self.pipeline, next.clone()) {
            Ok(provider) => provider,
            Err(error) => {
                // Not again before the next period.
                self.pipeline.reset.done(Instant::now());
                tracing::warn!(target: "survey", "cannot restart the series: {error}");
                return;
            }
        };
        self.instruments = Instruments::new(
            &provider.meter(schema::SCOPE_NAME),
            &self.shared,
            &next,
            counters,
            self.pipeline.settings.prompt_shape_metrics,
        );
        let old = current.replace(provider);
        drop(current);
        std::mem::replace(&mut self.generation, next).retire();
        // A retired generation starts no export: its shutdown is local work.
        if let Some(old) = old {
            let _ = std::thread::Builder::new()
                .name("survey-retire".into())
                .spawn(move || {
                    let _ = old.shutdown();
                });
        }
        self.instances.clear();
        self.pipeline.reset.done(Instant::now());
        counters.series_resets.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "survey", "series restarted");
    }
}

/// The running worker thread.
pub(crate) struct Worker {
    mailbox: Mailbox,
    thread: Option<JoinHandle<()>>,
    done: mpsc::Receiver<()>,
}

/// The parts a worker starts with.
pub(crate) struct WorkerParts {
    pub queue: Arc<EventQueue>,
    pub instruments: Instruments,
    pub generation: Arc<Generation>,
    pub provider: Arc<Mutex<Option<SdkMeterProvider>>>,
    pub shared: Shared,
    pub pipeline: Arc<Pipeline>,
}

impl Worker {
    pub(crate) fn spawn(parts: WorkerParts, hardware: HardwareSource) -> std::io::Result<Worker> {
        let (commands, inbox) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let queue = parts.queue.clone();
        let pipeline = parts.pipeline.clone();
        let recorder = Recorder {
            queue: parts.queue,
            instruments: parts.instruments,
            generation: parts.generation,
            provider: parts.provider,
            shared: parts.shared,
            pipeline: parts.pipeline,
            instances: HashSet::new(),
        };
        let thread = std::thread::Builder::new()
            .name("survey-recorder".into())
            .spawn(move || {
                let facts = match hardware {
                    HardwareSource::Given(facts) => facts,
                    HardwareSource::Custom(probe) => probe(),
                    HardwareSource::Probe => HardwareFacts::probe(),
                };
                let _ = recorder.shared.hardware.set(facts);
                recorder.run(inbox);
                let _ = done_tx.send(());
            })?;
        queue.set_worker(thread.thread().clone());
        let mailbox = Mailbox {
            commands,
            thread: thread.thread().clone(),
        };
        let exporter_mailbox = mailbox.clone();
        pipeline
            .reset
            .set_request(move |generation, exported_events| {
                exporter_mailbox.send(Command::ResetSeries {
                    generation,
                    exported_events,
                })
            });
        Ok(Worker {
            mailbox,
            thread: Some(thread),
            done,
        })
    }

    /// Waits until every event pushed before the call is recorded, or `deadline`.
    pub(crate) fn drain(&self, deadline: Instant) -> bool {
        let (reply, answered) = mpsc::channel();
        self.mailbox.send(Command::Drain(reply));
        answered
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Records what is queued, then stops; gives up waiting at `deadline`.
    pub(crate) fn stop(mut self, deadline: Instant) -> bool {
        self.mailbox.send(Command::Stop);
        let Some(thread) = self.thread.take() else {
            return true;
        };
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

impl Drop for Worker {
    /// A worker dropped without [`Worker::stop`] still ends its thread.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.mailbox.send(Command::Stop);
        }
    }
}

/// Sends commands to the worker, and wakes it.
#[derive(Clone)]
struct Mailbox {
    commands: mpsc::Sender<Command>,
    thread: Thread,
}

impl Mailbox {
    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
        self.thread.unpark();
    }
}
