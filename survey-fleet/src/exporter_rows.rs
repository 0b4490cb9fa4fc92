//! The rows the OpenTelemetry Collector's `clickhouse` exporter (contrib
//! release v0.159.0, the one `deploy/otelcol/config.yaml` pins) writes for
//! an OTLP export request, as JSON objects ready for ClickHouse's
//! `JSONEachRow` input, so captured exports can be loaded into
//! `deploy/clickhouse/schema.sql` as that pipeline would load them.
//!
//! The mapping, per data point, one row in the table of its metric's type:
//! - attribute maps (resource, scope, point) become maps of strings: a
//!   string as is, an integer in decimal, a bool as `true`/`false`, a double
//!   in its shortest form (exponent form below 1e-6 and from 1e21), bytes
//!   in base64, arrays and maps as JSON, an empty value as `""`;
//! - `ServiceName` is the resource's `service.name`, or `""`;
//! - times are whole seconds since the epoch (the tables' `DateTime`
//!   columns drop the rest; an unset start time is 0);
//! - a sum's or gauge's value is a double (an integer converted; none: 0);
//! - `Flags`, `AggregationTemporality` (0 unspecified, 1 delta,
//!   2 cumulative) and `IsMonotonic` as sent;
//! - a histogram's `Count`, `Sum`, `BucketCounts`, `ExplicitBounds`, `Min`
//!   and `Max` as sent, an absent sum, min or max as 0;
//! - exemplars as the `Exemplars` nested arrays: filtered attributes,
//!   whole-second times, values, span and trace ids in hex (survey sends
//!   none; a sender that does must not count);
//! - summaries and exponential histograms are not mapped (survey sends
//!   none, and the collector's config drops them).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, exemplar, metric, number_data_point};
use serde_json::{Map, Value as Json, json};

/// The rows of one table from one export request: what the exporter
/// inserts in one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `otel_metrics_sum`, `otel_metrics_gauge` or `otel_metrics_histogram`.
    pub table: &'static str,
    /// One JSON object per data point, by column name.
    pub rows: Vec<Json>,
}

impl Batch {
    /// The batch as one line of `deploy/clickhouse/report.py`'s input.
    pub fn to_line(&self) -> String {
        json!({"table": self.table, "rows": self.rows}).to_string()
    }
}

/// The exporter's batches for `request`: one per table that gets rows.
pub fn batches(request: &ExportMetricsServiceRequest) -> Vec<Batch> {
    let mut sums = Vec::new();
    let mut gauges = Vec::new();
    let mut histograms = Vec::new();
    for rm in &request.resource_metrics {
        let resource_attributes = rm
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or_default();
        let service_name = resource_attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .map(|kv| as_string(kv.value.as_ref()))
            .unwrap_or_default();
        for sm in &rm.scope_metrics {
            let scope = sm.scope.clone().unwrap_or_default();
            let common = |metric: &opentelemetry_proto::tonic::metrics::v1::Metric| {
                let mut row = Map::new();
                row.insert("ResourceAttributes".into(), map(resource_attributes));
                row.insert("ResourceSchemaUrl".into(), json!(rm.schema_url));
                row.insert("ScopeName".into(), json!(scope.name));
                row.insert("ScopeVersion".into(), json!(scope.version));
                row.insert("ScopeAttributes".into(), map(&scope.attributes));
                row.insert(
                    "ScopeDroppedAttrCount".into(),
                    json!(scope.dropped_attributes_count),
                );
                row.insert("ScopeSchemaUrl".into(), json!(sm.schema_url));
                row.insert("ServiceName".into(), json!(service_name));
                row.insert("MetricName".into(), json!(metric.name));
                row.insert("MetricDescription".into(), json!(metric.description));
                row.insert("MetricUnit".into(), json!(metric.unit));
                row
            };
            for metric in &sm.metrics {
                match &metric.data {
                    Some(metric::Data::Sum(sum)) => {
                        for point in &sum.data_points {
                            let mut row = common(metric);
                            row.insert("Attributes".into(), map(&point.attributes));
                            times(&mut row, point.start_time_unix_nano, point.time_unix_nano);
                            row.insert("Value".into(), json!(number(point.value)));
                            row.insert("Flags".into(), json!(point.flags));
                            exemplars(&mut row, &point.exemplars);
                            row.insert(
                                "AggregationTemporality".into(),
                                json!(sum.aggregation_temporality),
                            );
                            row.insert("IsMonotonic".into(), json!(sum.is_monotonic));
                            sums.push(Json::Object(row));
                        }
                    }
                    Some(metric::Data::Gauge(gauge)) => {
                        for point in &gauge.data_points {
                            let mut row = common(metric);
                            row.insert("Attributes".into(), map(&point.attributes));
                            times(&mut row, point.start_time_unix_nano, point.time_unix_nano);
                            row.insert("Value".into(), json!(number(point.value)));
                            row.insert("Flags".into(), json!(point.flags));
                            exemplars(&mut row, &point.exemplars);
                            gauges.push(Json::Object(row));
                        }
                    }
                    Some(metric::Data::Histogram(histogram)) => {
                        for point in &histogram.data_points {
                            let mut row = common(metric);
                            row.insert("Attributes".into(), map(&point.attributes));
                            times(&mut row, point.start_time_unix_nano, point.time_unix_nano);
                            row.insert("Count".into(), json!(point.count));
                            row.insert("Sum".into(), json!(point.sum.unwrap_or(0.0)));
                            row.insert("BucketCounts".into(), json!(point.bucket_counts));
                            row.insert("ExplicitBounds".into(), json!(point.explicit_bounds));
                            row.insert("Flags".into(), json!(point.flags));
                            row.insert("Min".into(), json!(point.min.unwrap_or(0.0)));
                            row.insert("Max".into(), json!(point.max.unwrap_or(0.0)));
                            exemplars(&mut row, &point.exemplars);
                            row.insert(
                                "AggregationTemporality".into(),
                                json!(histogram.aggregation_temporality),
                            );
                            histograms.push(Json::Object(row));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    [
        ("otel_metrics_sum", sums),
        ("otel_metrics_gauge", gauges),
        ("otel_metrics_histogram", histograms),
    ]
    .into_iter()
    .filter(|(_, rows)| !rows.is_empty())
    .map(|(table, rows)| Batch { table, rows })
    .collect()
}

/// The `Exemplars` nested columns, one array per field.
fn exemplars(row: &mut Map<String, Json>, exemplars: &[Exemplar]) {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let field = |f: &dyn Fn(&Exemplar) -> Json| Json::Array(exemplars.iter().map(f).collect());
    row.insert(
        "Exemplars.FilteredAttributes".into(),
        field(&|e| map(&e.filtered_attributes)),
    );
    row.insert(
        "Exemplars.TimeUnix".into(),
        field(&|e| json!(e.time_unix_nano / 1_000_000_000)),
    );
    row.insert(
        "Exemplars.Value".into(),
        field(&|e| {
            json!(match e.value {
                Some(exemplar::Value::AsDouble(v)) => v,
                Some(exemplar::Value::AsInt(v)) => v as f64,
                None => 0.0,
            })
        }),
    );
    row.insert(
        "Exemplars.SpanId".into(),
        field(&|e| json!(hex(&e.span_id))),
    );
    row.insert(
        "Exemplars.TraceId".into(),
        field(&|e| json!(hex(&e.trace_id))),
    );
}

/// `StartTimeUnix` and `TimeUnix` in whole seconds.
fn times(row: &mut Map<String, Json>, start: u64, time: u64) {
    row.insert("StartTimeUnix".into(), json!(start / 1_000_000_000));
    row.insert("TimeUnix".into(), json!(time / 1_000_000_000));
}

fn number(value: Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

fn map(attributes: &[KeyValue]) -> Json {
    Json::Object(
        attributes
            .iter()
            .map(|kv| (kv.key.clone(), Json::String(as_string(kv.value.as_ref()))))
            .collect(),
    )
}

/// An attribute value as a string, as the exporter writes it.
pub fn as_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => double(*d),
        Some(any_value::Value::BytesValue(bytes)) => base64(bytes),
        Some(other) => raw(other).to_string(),
    }
}

/// A double's shortest form, in exponent form below 1e-6 and from 1e21
/// (`1e-07` style exponents trimmed to `1e-7`, a positive one signed).
fn double(d: f64) -> String {
    if !d.is_finite() {
        return format!(
            "json: unsupported value: {}",
            if d.is_nan() {
                "NaN"
            } else if d > 0.0 {
                "+Inf"
            } else {
                "-Inf"
            }
        );
    }
    let magnitude = d.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        let text = format!("{d:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        }
    } else {
        format!("{d}")
    }
}

fn raw(value: &any_value::Value) -> Json {
    match value {
        any_value::Value::StringValue(s) => json!(s),
        any_value::Value::IntValue(i) => json!(i),
        any_value::Value::BoolValue(b) => json!(b),
        any_value::Value::DoubleValue(d) => json!(d),
        any_value::Value::BytesValue(b) => json!(base64(b)),
        any_value::Value::ArrayValue(array) => Json::Array(
            array
                .values
                .iter()
                .map(|v| v.value.as_ref().map_or(Json::Null, raw))
                .collect(),
        ),
        // A profiles dictionary index: never in metrics.
        any_value::Value::StringValueStrindex(_) => Json::Null,
        any_value::Value::KvlistValue(list) => Json::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map_or(Json::Null, raw),
                    )
                })
                .collect(),
        ),
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(value: any_value::Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    #[test]
    fn attribute_values_read_as_the_exporter_writes_them() {
        use any_value::Value::*;
        let cases = [
            (any(StringValue("x".into())), "x"),
            (any(IntValue(-7)), "-7"),
            (any(BoolValue(true)), "true"),
            (any(DoubleValue(1.5)), "1.5"),
            (any(DoubleValue(3.0)), "3"),
            (any(DoubleValue(1e-7)), "1e-7"),
            (any(DoubleValue(1e21)), "1e+21"),
            (any(DoubleValue(123456.0)), "123456"),
            (any(BytesValue(b"survey".to_vec())), "c3VydmV5"),
            (any(BytesValue(b"ab".to_vec())), "YWI="),
            (AnyValue { value: None }, ""),
        ];
        for (value, expected) in cases {
            assert_eq!(as_string(Some(&value)), expected, "{value:?}");
        }
    }
}
