//! Starting and stopping survey: [`init`], [`Setup`], [`SurveyGuard`], and
//! the process-wide handle the instrumented calls read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::clock::{Clock, SurveyClock};
use crate::config::{
    DisabledReason, EnvSource, ProcessEnv, Resolution, Settings, TelemetryConfig, TelemetryMode,
};
use crate::export::{self, Generation, Pipeline, Resolver};
use crate::hardware::HardwareFacts;
use crate::inference::{self, InferenceCounters};
use crate::privacy;
use crate::queue::{Event, EventQueue};
use crate::recorder::{HardwareSource, Instruments, Shared, Worker, WorkerParts};
use crate::registry::Registry;
use crate::sent::{ExportOutcome, LastExport};
use crate::status::Status;

/// What an instrumented call needs: the queue and the registry; and what
/// [`status`] and [`last_export`] read.
pub(crate) struct Active {
    pub(crate) queue: Arc<EventQueue>,
    pub(crate) registry: Arc<Registry>,
    pipeline: Arc<Pipeline>,
    /// `Some` when `prompt_shape_metrics` is on.
    inference: Option<InferenceCounters>,
}

impl Active {
    pub(crate) fn push(&self, event: Event) {
        self.queue.push(event);
    }

    /// Now, on survey's clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.pipeline.clock.now()
    }

    /// What inference records count, when they are taken.
    pub(crate) fn inference(&self) -> Option<&InferenceCounters> {
        self.inference.as_ref()
    }

    fn status(&self) -> Status {
        let counters = &self.pipeline.counters;
        let health = counters.health(Instant::now());
        Status {
            enabled: true,
            disabled_reason: None,
            endpoint: Some(self.pipeline.settings.display_endpoint()),
            exports_ok: health.exports_ok,
            exports_unchanged: counters.exports_unchanged.load(Ordering::Relaxed),
            exports_failed: health.exports_failed,
            failing_in_a_row: health.failing_in_a_row,
            last_success_age: health.last_success_age,
            last_failure: health.last_failure,
            events_dropped: self.queue.dropped(),
            events_recorded: counters.events_recorded.load(Ordering::Relaxed),
            series_resets: counters.series_resets.load(Ordering::Relaxed),
            prompt_shape_metrics: self.inference.is_some(),
            inference_unloaded: self
                .inference
                .as_ref()
                .map_or(0, |c| c.unloaded.load(Ordering::Relaxed)),
            inference_values_rejected: self
                .inference
                .as_ref()
                .map_or(0, |c| c.values_rejected.load(Ordering::Relaxed)),
        }
    }

    fn last_export(&self) -> Option<Arc<LastExport>> {
        self.pipeline.last_export.get()
    }
}

/// The running instance, if any.
static ACTIVE: ArcSwapOption<Active> = ArcSwapOption::const_empty();

/// Whether [`ACTIVE`] holds an instance: the one atomic load an
/// instrumented call pays while survey is disabled.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Serializes starting and stopping.
static INIT: Mutex<()> = Mutex::new(());

/// Why the last [`init`] left survey disabled, for [`status`].
static LAST_DISABLED: Mutex<Option<DisabledReason>> = Mutex::new(None);

#[inline]
pub(crate) fn active() -> Option<Arc<Active>> {
    if !ENABLED.load(Ordering::Acquire) {
        return None;
    }
    ACTIVE.load_full()
}

/// Survey's state: enabled or disabled and why, endpoint, export counts.
pub fn status() -> Status {
    match active() {
        Some(active) => active.status(),
        None => Status::disabled(LAST_DISABLED.lock().ok().and_then(|r| r.clone())),
    }
}

/// The content of the last export of the running instance, exactly the
/// metrics, attributes and values handed to the exporter (in local mode:
/// the last collection, which nothing sends). `None` before the first
/// export or while survey is disabled.
pub fn last_export() -> Option<Arc<LastExport>> {
    active().and_then(|active| active.last_export())
}

/// Starts survey from a `[telemetry]` table and the process environment.
///
/// Never fails and never panics: a configuration that cannot be used leaves
/// survey disabled, logs one warning naming the key, and the returned guard
/// reports why in [`SurveyGuard::status`]. See [`Setup`] for more options.
pub fn init(config: &TelemetryConfig) -> SurveyGuard {
    Setup::new(config).start()
}

/// Options for starting survey.
///
/// ```no_run
/// # let config = survey_runtime::TelemetryConfig::default();
/// let guard = survey_runtime::Setup::new(&config)
///     .plugin_enabled(Some(true))
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .start();
/// ```
pub struct Setup {
    config: TelemetryConfig,
    plugin_enabled: Option<bool>,
    env: Box<dyn EnvSource>,
    service_version: String,
    hardware: HardwareSource,
    resolver: Option<Resolver>,
    clock: SurveyClock,
}

impl Setup {
    /// Options for `config`, with the process environment and no plugin entry.
    pub fn new(config: &TelemetryConfig) -> Setup {
        Setup {
            config: config.clone(),
            plugin_enabled: None,
            env: Box::new(ProcessEnv),
            service_version: "unknown".to_string(),
            hardware: HardwareSource::Probe,
            resolver: None,
            clock: SurveyClock::default(),
        }
    }

    /// Measures launch durations, uptimes and heartbeats on `clock` instead
    /// of the system's monotonic clock: for simulators, which move their
    /// clock forward to spend days in an instant. Hosts leave it unset.
    pub fn clock(mut self, clock: impl Clock) -> Setup {
        self.clock = SurveyClock::new(Arc::new(clock));
        self
    }

    /// Resolves the collector's host name with `resolve` instead of the
    /// system resolver (for hosts with their own resolver, and for tests
    /// of a name that does not resolve). It gets the bare host name and
    /// runs on the HTTP client's pool of blocking threads; the endpoint's
    /// port replaces the port of each address it returns.
    pub fn resolver(
        mut self,
        resolve: impl Fn(&str) -> std::io::Result<Vec<std::net::SocketAddr>> + Send + Sync + 'static,
    ) -> Setup {
        self.resolver = Some(Arc::new(resolve));
        self
    }

    /// The `[[plugin]] name = "survey"` switch: `None` when the config has no entry.
    pub fn plugin_enabled(mut self, enabled: Option<bool>) -> Setup {
        self.plugin_enabled = enabled;
        self
    }

    /// The host's version: `service.version` and `mesh_llm.service_version`.
    pub fn service_version(mut self, version: impl Into<String>) -> Setup {
        self.service_version = version.into();
        self
    }

    /// Reads `OTEL_*` variables from `env` instead of the process environment.
    pub fn env(mut self, env: impl EnvSource + 'static) -> Setup {
        self.env = Box::new(env);
        self
    }

    /// Uses these hardware facts instead of probing the machine.
    pub fn hardware(mut self, hardware: HardwareFacts) -> Setup {
        self.hardware = HardwareSource::Given(hardware);
        self
    }

    /// Gets the hardware facts from `probe` instead of the built-in probe.
    /// It runs once, on survey's recorder thread; events wait for it.
    pub fn hardware_probe(
        mut self,
        probe: impl FnOnce() -> HardwareFacts + Send + 'static,
    ) -> Setup {
        self.hardware = HardwareSource::Custom(Box::new(probe));
        self
    }

    /// Resolves the configuration and, if survey is enabled, starts exporting.
    pub fn start(self) -> SurveyGuard {
        match self.config.resolve(self.plugin_enabled, &*self.env) {
            Resolution::Disabled(reason) => disabled(reason),
            Resolution::Enabled { settings, warnings } => {
                for warning in warnings {
                    tracing::warn!(target: "survey", "{warning}");
                }
                self.start_with(settings)
            }
        }
    }

    fn start_with(self, settings: Settings) -> SurveyGuard {
        let _serial = INIT.lock();
        if active().is_some() {
            return disabled(DisabledReason::AlreadyRunning);
        }
        let version = privacy::service_version(&self.service_version);
        let version_text = version.as_ref().map_or("unknown", |v| v.as_str());
        let pipeline = match Pipeline::new(settings, version_text, self.resolver, self.clock) {
            Ok(pipeline) => Arc::new(pipeline),
            Err(error) => return disabled(DisabledReason::ExporterFailed(error)),
        };
        let settings = &pipeline.settings;
        let generation = Arc::new(Generation::new());
        let provider = match export::meter_provider(&pipeline, generation.clone()) {
            Ok(provider) => provider,
            Err(error) => return disabled(DisabledReason::ExporterFailed(error)),
        };
        let shared = Shared {
            registry: Arc::new(Registry::default()),
            hardware: Arc::new(OnceLock::new()),
            service_version: version,
        };
        let meter = provider.meter(crate::schema::SCOPE_NAME);
        let instruments = Instruments::new(
            &meter,
            &shared,
            &generation,
            &pipeline.counters,
            settings.prompt_shape_metrics,
        );
        let queue = Arc::new(EventQueue::new(settings.queue_size));
        let provider = Arc::new(Mutex::new(Some(provider)));
        let parts = WorkerParts {
            queue: queue.clone(),
            instruments,
            generation,
            provider: provider.clone(),
            shared: shared.clone(),
            pipeline: pipeline.clone(),
        };
        let worker = match Worker::spawn(parts, self.hardware) {
            Ok(worker) => worker,
            Err(error) => {
                shutdown_provider(&provider, Instant::now() + settings.shutdown_timeout);
                return disabled(DisabledReason::ExporterFailed(format!(
                    "cannot start the recorder thread: {error}"
                )));
            }
        };
        let prompt_shape = settings.prompt_shape_metrics;
        let active = Arc::new(Active {
            queue,
            registry: shared.registry,
            pipeline: pipeline.clone(),
            inference: prompt_shape.then(InferenceCounters::default),
        });
        ACTIVE.store(Some(active.clone()));
        ENABLED.store(true, Ordering::Release);
        inference::RECORDING.store(prompt_shape, Ordering::Release);
        if let Ok(mut last) = LAST_DISABLED.lock() {
            *last = None;
        }
        match settings.mode {
            TelemetryMode::Export => tracing::info!(
                target: "survey",
                endpoint = %settings.display_endpoint(),
                "survey enabled: exporting model lifecycle metrics over OTLP/HTTP"
            ),
            TelemetryMode::Local => tracing::info!(
                target: "survey",
                "survey enabled in local mode: metrics are recorded here and never sent"
            ),
        }
        SurveyGuard {
            running: Some(Running {
                active,
                provider,
                worker,
                shutdown_timeout: settings.shutdown_timeout,
            }),
            disabled: None,
        }
    }
}

fn disabled(reason: DisabledReason) -> SurveyGuard {
    match &reason {
        DisabledReason::NotOptedIn | DisabledReason::SwitchedOff(_) => {
            tracing::info!(target: "survey", "survey disabled: {reason}");
        }
        _ => tracing::warn!(target: "survey", "survey disabled: {reason}"),
    }
    if let Ok(mut last) = LAST_DISABLED.lock() {
        *last = Some(reason.clone());
    }
    SurveyGuard {
        running: None,
        disabled: Some(reason),
    }
}

struct Running {
    active: Arc<Active>,
    /// The current meter provider (a series reset replaces it; shutdown
    /// takes it).
    provider: Arc<Mutex<Option<SdkMeterProvider>>>,
    worker: Worker,
    shutdown_timeout: Duration,
}

/// Keeps survey running; shuts it down (within its bound) when dropped.
#[must_use = "survey stops when the guard is dropped"]
pub struct SurveyGuard {
    running: Option<Running>,
    /// Why this guard is not running, when it is not.
    disabled: Option<DisabledReason>,
}

/// What [`SurveyGuard::shutdown`] managed within its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every queued event was recorded.
    pub drained: bool,
    /// The final export finished (successfully or not) within the bound.
    pub flushed: bool,
    /// How long shutdown took.
    pub elapsed: Duration,
}

impl SurveyGuard {
    /// Whether survey is running: exporting, or in local mode recording.
    pub fn is_enabled(&self) -> bool {
        self.running.is_some()
    }

    /// Survey's current state.
    pub fn status(&self) -> Status {
        match &self.running {
            Some(running) => running.active.status(),
            None => Status::disabled(self.disabled.clone()),
        }
    }

    /// Records what is queued and exports now, waiting at most `timeout`.
    /// Returns whether the export finished in time: sent, failed, or left
    /// out because nothing changed since the last export the collector
    /// accepted (see [`flush_export`](Self::flush_export) for which).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.flush_export(timeout).is_some()
    }

    /// Records what is queued and exports now, waiting at most `timeout`;
    /// says what became of that export: [`ExportOutcome::Sent`],
    /// [`ExportOutcome::Failed`], [`ExportOutcome::Unchanged`] (its points
    /// equal those the collector last accepted and no heartbeat is due:
    /// not sent, nothing lost) or, in local mode, [`ExportOutcome::Local`].
    /// `None` if it did not finish in time, or survey is not running.
    pub fn flush_export(&self, timeout: Duration) -> Option<ExportOutcome> {
        let running = self.running.as_ref()?;
        let deadline = Instant::now() + timeout;
        if !running.worker.drain(deadline) {
            return None;
        }
        let provider = current(&running.provider)?;
        let pipeline = &running.active.pipeline;
        let before = pipeline.counters.exports_finished.load(Ordering::SeqCst);
        if !run_bounded(deadline, move || {
            let _ = provider.force_flush();
        }) {
            return None;
        }
        if pipeline.counters.exports_finished.load(Ordering::SeqCst) == before {
            // Nothing collected: nothing to send, and nothing was.
            return Some(ExportOutcome::Unchanged);
        }
        pipeline.last_export.outcome()
    }

    /// The content of this instance's last export; see [`last_export`].
    pub fn last_export(&self) -> Option<Arc<LastExport>> {
        self.running
            .as_ref()
            .and_then(|running| running.active.last_export())
    }

    /// Records what is queued, makes a final export, and stops, all within
    /// `telemetry.shutdown_timeout_secs` even when the collector never answers.
    /// The final export is sent when something changed since the last
    /// export the collector accepted (or none was), left out otherwise.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> ShutdownReport {
        let start = Instant::now();
        let Some(running) = self.running.take() else {
            return ShutdownReport {
                drained: true,
                flushed: true,
                elapsed: Duration::ZERO,
            };
        };
        // New events go nowhere from here on.
        {
            let _serial = INIT.lock();
            if active().is_some_and(|a| Arc::ptr_eq(&a, &running.active)) {
                inference::RECORDING.store(false, Ordering::Release);
                ENABLED.store(false, Ordering::Release);
                ACTIVE.store(None);
            }
        }
        let deadline = start + running.shutdown_timeout;
        let drained = running.worker.stop(deadline);
        // The final export is sent only when something changed since the
        // last export the collector accepted (or none was).
        running.active.pipeline.heartbeat.final_export();
        let flushed = shutdown_provider(&running.provider, deadline);
        let report = ShutdownReport {
            drained,
            flushed,
            elapsed: start.elapsed(),
        };
        if !(drained && flushed) {
            tracing::warn!(
                target: "survey",
                "survey shutdown gave up after {:?}; the final export may be lost",
                running.shutdown_timeout
            );
        }
        report
    }
}

impl Drop for SurveyGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}

impl std::fmt::Debug for SurveyGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurveyGuard")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// The current meter provider.
fn current(provider: &Mutex<Option<SdkMeterProvider>>) -> Option<SdkMeterProvider> {
    provider
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Takes the provider (no series reset replaces it after this) and shuts it
/// down (final collect and export) on its own thread; stops waiting at
/// `deadline`: the SDK's own shutdown can wait 5 s and more.
fn shutdown_provider(provider: &Mutex<Option<SdkMeterProvider>>, deadline: Instant) -> bool {
    let taken = provider
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(provider) = taken else {
        return true;
    };
    run_bounded(deadline, move || {
        let _ = provider.shutdown();
    })
}

/// Runs `work` on a new thread and waits for it until `deadline`.
fn run_bounded(deadline: Instant, work: impl FnOnce() + Send + 'static) -> bool {
    let (done_tx, done_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("survey-shutdown".into())
        .spawn(move || {
            work();
            let _ = done_tx.send(());
        });
    if spawned.is_err() {
        return false;
    }
    done_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
}
