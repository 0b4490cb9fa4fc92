//! OTLP metrics messages: what the collector reads (the export request) and
//! writes (its answer).
//!
//! The types follow the OpenTelemetry protocol's protobuf definitions
//! (`opentelemetry/proto/{common,resource,metrics}/v1` and
//! `collector/metrics/v1`), field by field with the same numbers and types,
//! so they decode and encode the protobuf wire format with `prost`. Their
//! `serde` forms are OTLP/JSON as OTLP/HTTP specifies it:
//!
//! - keys are the fields' lowerCamelCase names; unknown keys are ignored and
//!   missing ones take the field's default;
//! - 64-bit integers are written as decimal strings and read from strings or
//!   numbers;
//! - enumerations are their numbers (their names are read too);
//! - a oneof is written as the key of its set member (`"sum": {...}`,
//!   `"asInt": "5"`, `"stringValue": "x"`), and more than one member set is
//!   an error;
//! - trace and span ids are hex, other bytes base64;
//! - doubles that are not finite are `"NaN"`, `"Infinity"`, `"-Infinity"`.
//!
//! The module paths mirror the protobuf packages:
//! [`collector::metrics::v1::ExportMetricsServiceRequest`],
//! [`metrics::v1::Metric`], [`common::v1::KeyValue`],
//! [`resource::v1::Resource`].

mod json;

/// `opentelemetry.proto.collector`: the services' requests and answers.
pub mod collector {
    /// `opentelemetry.proto.collector.metrics`.
    pub mod metrics {
        pub mod v1;
    }
}

/// `opentelemetry.proto.common`: values, attributes, scopes.
pub mod common {
    pub mod v1;
}

/// `opentelemetry.proto.metrics`: metrics and data points.
pub mod metrics {
    pub mod v1;
}

/// `opentelemetry.proto.resource`: resources.
pub mod resource {
    pub mod v1;
}
