//! # survey
//!
//! Crowd-sourced, privacy-safe metrics about how LLM models really behave on
//! the nodes that run them: which models are launched, on what hardware, with
//! what context sizes, which launches fail and why, how long launches take,
//! how long models stay up, and which ones crash.
//!
//! A host annotates its model-lifecycle functions and implements (or derives)
//! [`FailureReason`] on its error types; survey exports **metrics only**, over
//! **OTLP/HTTP**, with the official OpenTelemetry crates. No traces, no logs,
//! no prompts, no content.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! /// What the host knows about a model it is about to launch.
//! struct LaunchSpec {
//!     name: String,
//!     path: String,
//!     ctx_size: u64,
//! }
//!
//! impl survey::SurveyModel for LaunchSpec {
//!     fn survey_facts(&self) -> survey::ModelFacts {
//!         // The path is reduced to its file stem before export.
//!         survey::ModelFacts::new(self.name.as_str(), &self.path)
//!             .architecture("qwen3")
//!             .quantization("Q4_K_M")
//!             .context_length(self.ctx_size)
//!             .backend("llama.cpp")
//!     }
//! }
//!
//! /// A running backend: same instance key as its spec.
//! struct Running {
//!     name: String,
//!     path: String,
//! }
//!
//! impl survey::SurveyModel for Running {
//!     fn survey_facts(&self) -> survey::ModelFacts {
//!         survey::ModelFacts::new(self.name.as_str(), &self.path)
//!     }
//! }
//!
//! #[derive(Debug, survey::FailureReason)]
//! enum LaunchError {
//!     #[survey(reason = "spawn_failed")]
//!     Spawn(std::io::Error),
//!     #[survey(reason = "health_timeout")]
//!     HealthTimeout { after: Duration },
//!     #[survey(transparent)]
//!     Capacity(CapacityError),
//! }
//!
//! #[derive(Debug, survey::FailureReason)]
//! #[survey(reason = "capacity_rejected")]
//! struct CapacityError;
//!
//! #[survey::launch(kind = "runtime_load", model = spec)]
//! async fn load(spec: &LaunchSpec) -> Result<Running, LaunchError> {
//!     // spawn llama-server, wait for /health ...
//!     Ok(Running { name: spec.name.clone(), path: spec.path.clone() })
//! }
//!
//! #[survey::unload(model = running)]
//! async fn unload(running: Running) -> Result<(), std::io::Error> {
//!     // stop the process ...
//!     Ok(())
//! }
//!
//! #[survey::exit(model = running)]
//! fn on_unexpected_exit(running: &Running) {
//!     // the watcher saw the backend die ...
//! }
//!
//! # async fn run() {
//! let config: survey::TelemetryConfig = toml::from_str(r#"
//!     enabled = true
//!     endpoint = "http://127.0.0.1:4318"
//! "#).unwrap();
//! let guard = survey::Setup::new(&config)
//!     .service_version(env!("CARGO_PKG_VERSION"))
//!     .start();
//!
//! let spec = LaunchSpec { name: "qwen".into(), path: "/models/Qwen3-8B-Q4_K_M.gguf".into(), ctx_size: 8192 };
//! let running = load(&spec).await.unwrap();
//! unload(running).await.unwrap();
//!
//! println!("{}", guard.status()); // export health: last success, last failure and why
//! if let Some(export) = guard.last_export() {
//!     // exactly what the last export held, one flat row per data point
//!     for row in &export.rows {
//!         println!("{} {:?} {:?}", row.metric, row.attributes, row.value);
//!     }
//! }
//! guard.shutdown(); // final export, bounded in time
//! # }
//! ```
//!
//! `mode = "local"` in the table runs survey without sending anything, so
//! a person can read [`last_export`] before opting in.
//!
//! See the README for the configuration table, the environment variables,
//! the schema and the privacy boundary.

#![warn(missing_docs)]

pub use survey_macros::{FailureReason, exit, launch, unload};
pub use survey_runtime::{
    ContextBucket, DeviceFacts, DisabledReason, ExportProblem, FailureKind, FailureReason, GpuInfo,
    HardwareFacts, InstanceKey, InvalidSetting, LastExport, LastFailure, LaunchKind, ModelFacts,
    Resolution, SentRow, Settings, Setup, ShutdownReport, Status, SurveyGuard, SurveyModel,
    TelemetryConfig, TelemetryMode, config, hardware, init, last_export, otel, privacy, schema,
    sent, status,
};

/// Records an unexpected exit of `model` without the `#[survey::exit]`
/// attribute: counted, uptime recorded when known, model leaves the loaded set.
pub fn record_unexpected_exit<M: SurveyModel + ?Sized>(model: &M) {
    survey_runtime::__private::record_exit(model);
}

#[doc(hidden)]
pub mod __private {
    pub use survey_runtime::__private::*;
}
