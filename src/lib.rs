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
//! # Inference performance (opt-in)
//!
//! With `prompt_shape_metrics = true` in the table, a host that serves
//! inference calls [`record_inference`] once per request it forwarded to a
//! loaded model, with the numbers its backend reported:
//!
//! ```no_run
//! # struct Running;
//! # impl survey::SurveyModel for Running {
//! #     fn survey_facts(&self) -> survey::ModelFacts { survey::ModelFacts::new(1u64, "m") }
//! # }
//! # let running = Running;
//! use survey::{Inference, RequestOutcome, Throughput};
//! // llama-server's `usage` and `timings` of one answer, and the time the
//! // host saw the first token of a streamed answer.
//! survey::record_inference(
//!     &running,
//!     Inference::new(RequestOutcome::Ok)
//!         .prompt_tokens(67)
//!         .output_tokens(16)
//!         .prefill(Throughput::new(67, 2.19))
//!         .decode(Throughput::new(16, 3.76))
//!         .time_to_first_token(std::time::Duration::from_millis(12)),
//! );
//! ```
//!
//! The attributes are those of the instance's launch; only numbers are
//! recorded, never anything of a prompt or an answer. With the switch off
//! the call records nothing and costs a branch. See [`inference`].
//!
//! See docs/configuration.md for the configuration table, the environment variables,
//! the schema and the privacy boundary.

#![warn(missing_docs)]

pub use survey_macros::{FailureReason, exit, launch, unload};
pub use survey_runtime::{
    Clock, ContextBucket, DeviceFacts, DisabledReason, ExportOutcome, ExportProblem, FailureKind,
    FailureReason, GpuInfo, HardwareFacts, Inference, InstanceKey, InvalidSetting, LastExport,
    LastFailure, LaunchKind, ModelFacts, RequestOutcome, Resolution, SentRow, Settings, Setup,
    ShutdownReport, Status, SurveyGuard, SurveyModel, TelemetryConfig, TelemetryMode, Throughput,
    Unchanged, config, hardware, inference, init, last_export, otel, privacy, record_inference,
    schema, sent, status,
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
