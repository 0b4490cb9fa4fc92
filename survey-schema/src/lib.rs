//! The wire contract of [`survey`](https://docs.rs/survey): what a survey
//! node exports and what a collector accepts, with no OpenTelemetry SDK and
//! no HTTP in it.
//!
//! | module | holds |
//! |---|---|
//! | [`metrics`] | the metric names, instruments, units and histogram boundaries |
//! | [`values`] | the closed enums exported as attribute values |
//! | [`keys`] | the attribute and resource keys, which keys each metric carries, and `accepts` |
//! | [`privacy`] | the sanitizers, the only makers of a [`SafeValue`](privacy::SafeValue) |
//!
//! The runtime (`survey-runtime`) builds data points from it, the macros
//! (`survey-macros`) check their literals against its enums, and a
//! collector (`survey-collector`) refuses what an honest node never sends:
//!
//! ```
//! use survey_schema::{AttributeKey, MetricKeys, ReceivedValue, metric};
//!
//! let failures = metric("mesh_llm_model_launch_failure_total").unwrap();
//! assert!(MetricKeys::of_metric(failures).allows(AttributeKey::FailureReason));
//! assert!(AttributeKey::FailureReason.accepts(ReceivedValue::Str("health_timeout")));
//! // A home directory is never a model name survey exports.
//! assert!(!AttributeKey::Model.accepts(ReceivedValue::Str("/home/alice/m.gguf")));
//! ```
//!
//! Attribute keys come only from [`AttributeKey`], a closed enum of the
//! spec's allowlist, and string values only from
//! [`SafeValue`](privacy::SafeValue), which only the [`privacy`] module can
//! construct. There is no API that takes a free-form key or an unsanitized
//! string, in debug or release builds.

#![warn(missing_docs)]

pub mod keys;
pub mod metrics;
pub mod privacy;
pub mod values;

pub use keys::{AttributeKey, MetricKeys, ReceivedValue, ResourceKey, is_uuid_v4};
pub use metrics::*;
pub use values::{ContextBucket, FailureKind, LaunchKind, RequestOutcome, UnknownValue};
