//! Export requests built by hand, as survey's nodes send them, for the
//! cases a real exporter cannot be made to produce on demand (chosen
//! timestamps, retries, out-of-order points, delta temporality, values a
//! node would refuse to send).

use survey_collector::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use survey_collector::otlp::common::v1::any_value::Value as AnyValueKind;
use survey_collector::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use survey_collector::otlp::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, metric::Data, number_data_point::Value as NumberValue,
};
use survey_collector::otlp::resource::v1::Resource;
use survey_schema as schema;

/// The `opentelemetry_sdk` version the workspace locks: what survey's
/// nodes put in `telemetry.sdk.version`.
pub fn sdk_version() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("the workspace's Cargo.lock");
    let at = lock
        .find("name = \"opentelemetry_sdk\"\nversion = \"")
        .expect("opentelemetry_sdk in Cargo.lock");
    let rest = &lock[at..];
    let start = rest.find("version = \"").unwrap() + "version = \"".len();
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

/// ns at `hour` o'clock of UTC day `day` (days since 1970-01-01).
pub fn at(day: i64, hour: i64) -> u64 {
    ((day * 86_400 + hour * 3600) * 1_000_000_000) as u64
}

/// Today (UTC), as days since 1970-01-01.
pub fn today() -> i64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64
}

/// A day in the past, so points are never "in the future".
pub const DAY: i64 = 20_000; // 2024-10-04

/// A sending process.
#[derive(Debug, Clone)]
pub struct Node {
    /// `service.instance.id`; `None` for a node that predates it.
    pub id: Option<String>,
    /// Resource attributes beyond survey's, to test rejection.
    pub extra: Vec<KeyValue>,
}

impl Node {
    /// Node `n`, with an instance id of its own.
    pub fn new(n: u32) -> Node {
        Node {
            id: Some(format!("00000000-0000-4000-8000-{n:012x}")),
            extra: Vec::new(),
        }
    }

    /// A node without `service.instance.id`.
    pub fn legacy() -> Node {
        Node {
            id: None,
            extra: Vec::new(),
        }
    }
}

/// An attribute holding `value`.
pub fn kv(key: &str, value: AnyValueKind) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A string attribute.
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, AnyValueKind::StringValue(value.to_string()))
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, AnyValueKind::IntValue(value))
}

/// A boolean attribute.
pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    kv(key, AnyValueKind::BoolValue(value))
}

/// The attributes survey puts on a launch of `model` on an RTX 4090 node.
pub fn model_attrs(model: &str) -> Vec<KeyValue> {
    launch_attrs(model, "qwen3", "<=8k", "1.0.0")
}

/// The attributes survey puts on a runtime load of `model`, of
/// `architecture`, in `context_bucket`, on an RTX 4090 node running
/// `service_version`.
pub fn launch_attrs(
    model: &str,
    architecture: &str,
    context_bucket: &str,
    service_version: &str,
) -> Vec<KeyValue> {
    vec![
        kv_str("mesh_llm.model", model),
        kv_str("mesh_llm.architecture", architecture),
        kv_str("mesh_llm.quantization", "Q4_K_M"),
        kv_str("mesh_llm.launch_kind", "runtime_load"),
        kv_str("mesh_llm.gpu_name", "NVIDIA GeForce RTX 4090"),
        kv_str("mesh_llm.gpu_stable_id", "6f1c2d3e4b5a6978"),
        kv_str("mesh_llm.backend_device", "cuda"),
        kv_int("mesh_llm.gpu_count", 1),
        kv_bool("mesh_llm.is_soc", false),
        kv_str("mesh_llm.backend", "llama.cpp"),
        kv_str("mesh_llm.context_bucket", context_bucket),
        kv_str("mesh_llm.service_version", service_version),
    ]
}

/// `model_attrs` plus a failure reason.
pub fn failure_attrs(model: &str, reason: &str) -> Vec<KeyValue> {
    let mut attrs = model_attrs(model);
    attrs.push(kv_str("mesh_llm.failure_reason", reason));
    attrs
}

/// The attributes survey puts on the inference histograms of `model` on an
/// RTX 4090 node: the launch's, without its kind.
pub fn inference_attrs(model: &str) -> Vec<KeyValue> {
    let mut attrs = model_attrs(model);
    attrs.retain(|kv| kv.key != "mesh_llm.launch_kind");
    attrs
}

/// `inference_attrs` plus a request outcome: the attributes of the
/// inference counter.
pub fn outcome_attrs(model: &str, outcome: &str) -> Vec<KeyValue> {
    let mut attrs = inference_attrs(model);
    attrs.push(kv_str("mesh_llm.request_outcome", outcome));
    attrs
}

/// `attrs` with `kv` in place of its key's value (added if absent).
pub fn with_attr(mut attrs: Vec<KeyValue>, kv: KeyValue) -> Vec<KeyValue> {
    attrs.retain(|a| a.key != kv.key);
    attrs.push(kv);
    attrs
}

/// `attrs` without `key`.
pub fn without_attr(mut attrs: Vec<KeyValue>, key: &str) -> Vec<KeyValue> {
    attrs.retain(|a| a.key != key);
    attrs
}

/// A cumulative (2) or delta (1) counter point.
pub fn counter(
    name: &str,
    attrs: Vec<KeyValue>,
    start: u64,
    time: u64,
    value: u64,
    temporality: i32,
) -> Metric {
    let unit = schema::metric(name).map_or("1", |spec| spec.unit);
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes: attrs,
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(NumberValue::AsInt(value as i64)),
                ..Default::default()
            }],
            aggregation_temporality: temporality,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// A cumulative counter point.
pub fn cumulative(name: &str, attrs: Vec<KeyValue>, start: u64, time: u64, value: u64) -> Metric {
    counter(name, attrs, start, time, value, 2)
}

/// A gauge point, with the schema's unit and description.
pub fn gauge(name: &str, attrs: Vec<KeyValue>, time: u64, value: u64) -> Metric {
    let spec = schema::metric(name).expect("schema metric");
    Metric {
        name: name.to_string(),
        unit: spec.unit.to_string(),
        description: spec.description.to_string(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: attrs,
                start_time_unix_nano: time - 1,
                time_unix_nano: time,
                value: Some(NumberValue::AsInt(value as i64)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

/// A cumulative histogram point with one count per value in `values`.
pub fn histogram(
    name: &str,
    attrs: Vec<KeyValue>,
    start: u64,
    time: u64,
    values: &[f64],
) -> Metric {
    // Metrics outside the schema (for tests of rejection) get uptime's bounds.
    let spec = schema::metric(name)
        .filter(|m| !m.boundaries.is_empty())
        .or(schema::metric(schema::UPTIME_S))
        .unwrap();
    let mut buckets = vec![0u64; spec.boundaries.len() + 1];
    for v in values {
        let i = spec
            .boundaries
            .iter()
            .position(|b| v <= b)
            .unwrap_or(spec.boundaries.len());
        buckets[i] += 1;
    }
    Metric {
        name: name.to_string(),
        unit: spec.unit.to_string(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: attrs,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count: values.len() as u64,
                sum: Some(values.iter().sum()),
                bucket_counts: buckets,
                explicit_bounds: spec.boundaries.to_vec(),
                min: values.iter().copied().reduce(f64::min),
                max: values.iter().copied().reduce(f64::max),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    }
}

/// One export request from `node` with `metrics`, under survey's scope.
pub fn request(node: &Node, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    let mut attributes = vec![
        kv_str("service.name", "mesh-llm"),
        kv_str("service.version", "1.0.0"),
        kv_str("telemetry.sdk.language", "rust"),
        kv_str("telemetry.sdk.name", "opentelemetry"),
        kv_str("telemetry.sdk.version", &sdk_version()),
    ];
    if let Some(id) = &node.id {
        attributes.push(kv_str("service.instance.id", id));
    }
    attributes.extend(node.extra.iter().cloned());
    export_request(attributes, metrics)
}

/// One export request with the resource `attributes` and `metrics`, under
/// survey's scope.
pub fn export_request(
    attributes: Vec<KeyValue>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: schema::SCOPE_NAME.to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `data` gzip-compressed, as an exporter sends a body with
/// `content-encoding: gzip`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}
