//! A host as the tests write one: a model it launches ([`Spec`]), a model
//! running ([`Running`]), every way a launch fails ([`LaunchError`]), the
//! instrumented functions, fixed hardware, and survey started against a
//! receiver.

use std::time::Duration;

use survey::schema;
use tokio::sync::{Mutex, MutexGuard};

use crate::receiver::{Mode, Point, Receiver, one, total};

/// Every resource attribute survey sends, in order: service identity,
/// the process's instance id and the SDK; nothing else.
pub const RESOURCE_KEYS: [&str; 6] = [
    "service.instance.id",
    "service.name",
    "service.version",
    "telemetry.sdk.language",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
];

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Runs tests that start survey one at a time (survey is process-wide).
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Two NVIDIA GPUs, as `nvidia-smi` reports them.
pub fn two_gpus() -> survey::HardwareFacts {
    survey::hardware::parse_nvidia_smi(
        "NVIDIA GeForce RTX 4090, GPU-6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b\n\
         NVIDIA RTX A6000, GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\n",
    )
    .expect("nvidia-smi lines")
}

/// One NVIDIA GeForce RTX 4090, as `nvidia-smi` reports it.
pub fn rtx_4090() -> survey::HardwareFacts {
    survey::hardware::parse_nvidia_smi(
        "NVIDIA GeForce RTX 4090, GPU-6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b\n",
    )
    .expect("nvidia-smi line")
}

/// A test's survey: the test's turn ([`serial`]), a receiver, and survey
/// started against it ([`start`] with `extra`). Bind all three, the turn
/// first, so they end in the reverse order.
pub async fn exporting(extra: &str) -> (MutexGuard<'static, ()>, Receiver, survey::SurveyGuard) {
    let turn = serial().await;
    let receiver = Receiver::start();
    let guard = start(&receiver.endpoint(), extra);
    (turn, receiver, guard)
}

/// [`exporting`] to a receiver that answers as `mode` says from the
/// first export on.
pub async fn exporting_to(
    mode: Mode,
    extra: &str,
) -> (MutexGuard<'static, ()>, Receiver, survey::SurveyGuard) {
    let turn = serial().await;
    let receiver = Receiver::start();
    receiver.set_mode(mode);
    let guard = start(&receiver.endpoint(), extra);
    (turn, receiver, guard)
}

/// Parses a `[telemetry]` table.
pub fn telemetry(toml_text: &str) -> survey::TelemetryConfig {
    toml::from_str(toml_text).expect("telemetry table")
}

/// Starts survey against `endpoint` with fixed hardware, an empty
/// environment, and `extra` TOML lines in the `[telemetry]` table.
pub fn start(endpoint: &str, extra: &str) -> survey::SurveyGuard {
    started(setup(endpoint, extra))
}

/// The setup [`start`] starts, for a test that adds to it: survey on,
/// exporting to `endpoint` every 60 s unless `extra` says otherwise,
/// service version 9.8.7, [`two_gpus`].
pub fn setup(endpoint: &str, extra: &str) -> survey::Setup {
    let interval = if extra.contains("export_interval_secs") {
        ""
    } else {
        "export_interval_secs = 60\n"
    };
    let config = telemetry(&format!(
        "enabled = true\nendpoint = \"{endpoint}\"\n{interval}{extra}"
    ));
    survey::Setup::new(&config)
        .env([("OTEL_UNUSED", "")])
        .service_version("9.8.7")
        .hardware(two_gpus())
}

/// Starts `setup`, asserting that survey runs.
pub fn started(setup: survey::Setup) -> survey::SurveyGuard {
    let guard = setup.start();
    assert!(guard.is_enabled(), "{}", guard.status());
    guard
}

/// Asserts what one launch of `model`, dropped before it finished, leaves
/// in an export's `points`: the launch counted, failed with reason `other`,
/// no success, no model loaded.
pub fn assert_cancelled_launch(points: &[Point], model: &str) {
    assert_eq!(total(points, schema::LAUNCH_TOTAL), 1.0);
    let failure = one(
        points,
        schema::LAUNCH_FAILURE_TOTAL,
        &[("mesh_llm.model", model)],
    );
    assert_eq!(failure.attr("mesh_llm.failure_reason"), Some("other"));
    assert_eq!(total(points, schema::LAUNCH_SUCCESS_TOTAL), 0.0);
    assert_eq!(one(points, schema::LOADED_MODELS, &[]).value, 0.0);
}

/// Asserts that the one launch in `points` failed with `reason`: one
/// attempt, no success, and its failure counted under that reason.
pub fn assert_one_failed_launch(points: &[Point], reason: &str) {
    assert_eq!(total(points, schema::LAUNCH_TOTAL), 1.0);
    assert_eq!(total(points, schema::LAUNCH_SUCCESS_TOTAL), 0.0);
    one(
        points,
        schema::LAUNCH_FAILURE_TOTAL,
        &[("mesh_llm.failure_reason", reason)],
    );
}

/// Asserts that `lines` are survey's two log lines about one outage of
/// its exports: a warning as they fail (connection refused), then an
/// information line as they succeed again, saying `recovered`.
pub fn assert_outage_logged(lines: &[&str], recovered: &str) {
    assert_eq!(
        lines.len(),
        2,
        "one line as they fail, one as they recover: {lines:#?}"
    );
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(
        lines[0].contains("are failing: connection refused"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("INFO"), "{}", lines[1]);
    assert!(lines[1].contains(recovered), "{}", lines[1]);
}

/// Asserts that no point in `points` is of `model`.
pub fn assert_no_point_of(points: &[Point], model: &str) {
    assert!(
        points
            .iter()
            .all(|p| p.attr("mesh_llm.model") != Some(model)),
        "{points:#?}"
    );
}

/// One successful launch of a Qwen3 model, slot 1.
pub async fn one_launch() {
    load(&qwen3(1), Duration::ZERO, None)
        .await
        .expect("the launch succeeds");
}

/// Qwen3-8B-Q4_K_M at 4096 tokens in `slot`.
pub fn qwen3(slot: u64) -> Spec {
    Spec::new(slot, "/m/Qwen3-8B-Q4_K_M.gguf", 4096)
}

/// A model the host launches: a path, a context size and an architecture.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The instance key.
    pub slot: u64,
    /// The model's path (or id).
    pub path: String,
    /// The context size the backend is given.
    pub ctx: u64,
    /// The architecture the model file names.
    pub architecture: &'static str,
    /// Whether the path is a local model file (reduced to its stem).
    pub local_file: bool,
}

impl Spec {
    /// A `qwen3` model named by `path`.
    pub fn new(slot: u64, path: &str, ctx: u64) -> Spec {
        Spec {
            slot,
            path: path.to_string(),
            ctx,
            architecture: "qwen3",
            local_file: false,
        }
    }

    /// A model in the local file at `path`, of `architecture`.
    pub fn local_file(slot: u64, path: &str, ctx: u64, architecture: &'static str) -> Spec {
        Spec {
            architecture,
            local_file: true,
            ..Spec::new(slot, path, ctx)
        }
    }
}

impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        let facts = if self.local_file {
            survey::ModelFacts::local_file(self.slot, &self.path)
        } else {
            survey::ModelFacts::new(self.slot, &self.path)
        };
        facts
            .architecture(self.architecture)
            .quantization("Q4_K_M")
            .context_length(self.ctx)
            .backend("llama.cpp")
    }
}

/// A running model: only its slot is needed to find it again.
#[derive(Debug)]
pub struct Running {
    /// The instance key.
    pub slot: u64,
    /// The model's path (or id).
    pub path: String,
}

impl Running {
    /// The instance `slot` of the model at `path`.
    pub fn new(slot: u64, path: &str) -> Running {
        Running {
            slot,
            path: path.to_string(),
        }
    }

    /// The model `spec` launched.
    pub fn of(spec: &Spec) -> Running {
        Running {
            slot: spec.slot,
            path: spec.path.clone(),
        }
    }
}

impl survey::SurveyModel for Running {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.slot, &self.path)
    }
}

/// Every way a test launch can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, survey::FailureReason)]
pub enum LaunchError {
    /// `spawn_failed`.
    #[survey(reason = "spawn_failed")]
    Spawn,
    /// `health_timeout`.
    #[survey(reason = "health_timeout")]
    HealthTimeout,
    /// `exited_before_healthy`.
    #[survey(reason = "exited_before_healthy")]
    Exited,
    /// `backend_proxy_failed`.
    #[survey(reason = "backend_proxy_failed")]
    Proxy,
    /// `capacity_rejected`.
    #[survey(reason = "capacity_rejected")]
    Capacity,
    /// `known_kv_cache_crash`.
    #[survey(reason = "known_kv_cache_crash")]
    KvCache,
    /// `mmproj_missing`.
    #[survey(reason = "mmproj_missing")]
    Mmproj,
    /// `other`.
    #[survey(reason = "other")]
    Other,
}

impl LaunchError {
    /// Every variant, one per failure reason.
    pub const ALL: [LaunchError; 8] = [
        LaunchError::Spawn,
        LaunchError::HealthTimeout,
        LaunchError::Exited,
        LaunchError::Proxy,
        LaunchError::Capacity,
        LaunchError::KvCache,
        LaunchError::Mmproj,
        LaunchError::Other,
    ];
}

/// What a test launch does: waits `delay`, then succeeds or fails with
/// `outcome`.
pub async fn launched(
    spec: &Spec,
    delay: Duration,
    outcome: Option<LaunchError>,
) -> Result<Running, LaunchError> {
    tokio::time::sleep(delay).await;
    match outcome {
        None => Ok(Running::of(spec)),
        Some(error) => Err(error),
    }
}

/// A runtime load that takes `delay` and then returns `outcome`.
#[survey::launch(kind = "runtime_load", model = spec)]
pub async fn load(
    spec: &Spec,
    delay: Duration,
    outcome: Option<LaunchError>,
) -> Result<Running, LaunchError> {
    launched(spec, delay, outcome).await
}

/// A launch whose kind is chosen at run time.
#[survey::launch(kind = kind, model = spec)]
pub async fn launch_as(kind: survey::LaunchKind, spec: &Spec) -> Result<Running, LaunchError> {
    Ok(Running::of(spec))
}

/// An unload that always succeeds.
#[survey::unload(model = running)]
pub async fn unload(running: Running) -> Result<(), std::io::Error> {
    drop(running);
    Ok(())
}

/// The backend of `running` died.
#[survey::exit(model = running)]
pub fn crashed(running: &Running) {
    let _ = running.slot;
}
