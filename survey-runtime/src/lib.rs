//! The runtime of [`survey`](https://docs.rs/survey): privacy-safe OTLP/HTTP
//! metrics about LLM model lifecycles.
//!
//! Hosts normally depend on the `survey` facade, which re-exports this crate
//! with the `#[survey::launch]`, `#[survey::unload]` and `#[survey::exit]`
//! attributes and `#[derive(survey::FailureReason)]`.
//!
//! One module per concern:
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | the `[telemetry]` table, `OTEL_*` variables, precedence |
//! | [`schema`] | metric names, units, boundaries, attribute keys and enums (`survey-schema`) |
//! | [`privacy`] | sanitizers for every exported string (`survey-schema`) |
//! | `attributes` | the attribute sets of data points, built in one place |
//! | [`hardware`] | GPU/SoC facts, probed once with timeouts |
//! | [`inference`] | opt-in inference performance: [`record_inference`] |
//! | `registry` | the loaded-model set behind the gauges |
//! | `queue` | the bounded, drop-oldest event queue |
//! | `recorder` | the worker that records events into instruments |
//! | `export` | the OTLP/HTTP exporter and meter provider, series resets |
//! | `heartbeat` | unchanged exports left out until a heartbeat is due |
//! | [`sent`] | the content of the last export, for people to inspect |
//! | `status` | [`Status`] and export health in the host's log |
//! | `recording` | the recording rules: what a launch, an unload and an exit record |
//! | `setup` | starting and stopping survey: [`Setup`], [`init`], [`SurveyGuard`], [`status`] |

#![warn(missing_docs)]

mod attributes;
mod clock;
pub mod config;
mod export;
mod failure;
pub mod hardware;
mod heartbeat;
pub mod inference;
mod model;
mod queue;
mod recorder;
mod recording;
mod registry;
pub mod sent;
mod setup;
mod status;

#[doc(hidden)]
pub mod __private;

/// The wire contract: metric names, units, boundaries, closed enums and keys
/// (the `survey-schema` crate).
pub use survey_schema as schema;
/// The sanitizers every exported string passes through.
pub use survey_schema::privacy;

pub use clock::Clock;
pub use config::{
    DisabledReason, InvalidSetting, Resolution, Settings, TelemetryConfig, TelemetryMode,
};
pub use failure::FailureReason;
pub use hardware::{GpuInfo, HardwareFacts};
pub use inference::{Inference, Throughput, record_inference};
pub use model::{DeviceFacts, InstanceKey, ModelFacts, SurveyModel};
pub use schema::{ContextBucket, FailureKind, LaunchKind, RequestOutcome};
pub use sent::{AttributeValue, ExportOutcome, LastExport, MetricKind, Number, SentRow, Unchanged};
pub use setup::{Setup, ShutdownReport, SurveyGuard, init, last_export, status};
pub use status::{ExportProblem, LastFailure, Status};

/// The OpenTelemetry crates survey is built on, so hosts can name their types
/// without risking a second, incompatible version.
pub mod otel {
    pub use opentelemetry;
    pub use opentelemetry_otlp;
    pub use opentelemetry_sdk;
}
