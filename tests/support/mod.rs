//! Shared pieces of the survey integration tests: a host model type, an error
//! enum, fixed hardware, and a lock that runs one survey instance at a time
//! (survey is process-wide).

#![allow(dead_code)]

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

#[allow(unused_imports)]
pub use survey_otlp_receiver::{
    Mode, Point, PointKind, Receiver, Request, of, one, sorted_lines, total,
};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Runs tests that start survey one at a time (survey is process-wide).
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Calls `f` every 20 ms until it returns `Some`; panics naming `what` if
/// it has not within `timeout`.
pub async fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two NVIDIA GPUs, as `nvidia-smi` reports them.
pub fn two_gpus() -> survey::HardwareFacts {
    survey::hardware::parse_nvidia_smi(
        "NVIDIA GeForce RTX 4090, GPU-6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b\n\
         NVIDIA RTX A6000, GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\n",
    )
    .unwrap()
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

/// The setup [`start`] starts, for a test that adds to it.
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

/// One successful launch of a Qwen3 model, slot 1.
pub async fn one_launch() {
    load(
        &Spec::new(1, "/m/Qwen3-8B-Q4_K_M.gguf", 4096),
        Duration::ZERO,
        None,
    )
    .await
    .unwrap();
}

/// A model the host launches: a path on disk and a context size.
#[derive(Debug, Clone)]
pub struct Spec {
    pub slot: u64,
    pub path: String,
    pub ctx: u64,
}

impl Spec {
    pub fn new(slot: u64, path: &str, ctx: u64) -> Spec {
        Spec {
            slot,
            path: path.to_string(),
            ctx,
        }
    }
}

impl survey::SurveyModel for Spec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.slot, &self.path)
            .architecture("qwen3")
            .quantization("Q4_K_M")
            .context_length(self.ctx)
            .backend("llama.cpp")
    }
}

/// A running model: only its slot is needed to find it again.
#[derive(Debug)]
pub struct Running {
    pub slot: u64,
    pub path: String,
}

impl survey::SurveyModel for Running {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.slot, &self.path)
    }
}

/// Every way a test launch can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, survey::FailureReason)]
pub enum LaunchError {
    #[survey(reason = "spawn_failed")]
    Spawn,
    #[survey(reason = "health_timeout")]
    HealthTimeout,
    #[survey(reason = "exited_before_healthy")]
    Exited,
    #[survey(reason = "backend_proxy_failed")]
    Proxy,
    #[survey(reason = "capacity_rejected")]
    Capacity,
    #[survey(reason = "known_kv_cache_crash")]
    KvCache,
    #[survey(reason = "mmproj_missing")]
    Mmproj,
    #[survey(reason = "other")]
    Other,
}

impl LaunchError {
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

/// A launch that takes `delay` and then returns `outcome`.
#[survey::launch(kind = "runtime_load", model = spec)]
pub async fn load(
    spec: &Spec,
    delay: Duration,
    outcome: Option<LaunchError>,
) -> Result<Running, LaunchError> {
    tokio::time::sleep(delay).await;
    match outcome {
        None => Ok(Running {
            slot: spec.slot,
            path: spec.path.clone(),
        }),
        Some(error) => Err(error),
    }
}

/// A launch whose kind is chosen at run time.
#[survey::launch(kind = kind, model = spec)]
pub async fn launch_as(kind: survey::LaunchKind, spec: &Spec) -> Result<Running, LaunchError> {
    Ok(Running {
        slot: spec.slot,
        path: spec.path.clone(),
    })
}

#[survey::unload(model = running)]
pub async fn unload(running: Running) -> Result<(), std::io::Error> {
    drop(running);
    Ok(())
}

#[survey::exit(model = running)]
pub fn crashed(running: &Running) {
    let _ = running.slot;
}
