//! `opentelemetry.proto.collector.metrics.v1`: the export request and its
//! answer.

use serde::{Deserialize, Serialize};

use crate::otlp::json;
use crate::otlp::metrics::v1::ResourceMetrics;

/// The body of `POST /v1/metrics`: metrics by resource.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExportMetricsServiceRequest {
    /// The metrics, by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

/// The answer to an export request that was taken.
///
/// In OTLP/JSON a full success is `{}`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExportMetricsServiceResponse {
    /// Set when some data points were rejected.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<ExportMetricsPartialSuccess>,
}

/// The data points of a request that were rejected, and why.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExportMetricsPartialSuccess {
    /// Number of data points rejected: a string in OTLP/JSON.
    #[prost(int64, tag = "1")]
    #[serde(with = "json::i64_text")]
    pub rejected_data_points: i64,
    /// Why they were rejected, for the sender's operator.
    #[prost(string, tag = "2")]
    pub error_message: String,
}
