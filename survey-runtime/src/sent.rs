//! What survey sends, for people to look at: the content of the last
//! export (or, in local mode, of the last collection), as flat rows of
//! metric, kind, unit, attributes and value. [`last_export`](crate::last_export)
//! returns it; a host prints it (`mesh-llm survey show`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use serde::{Deserialize, Serialize};

/// The content of one export, as it was handed to the exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LastExport {
    /// When it was collected, in seconds since the Unix epoch.
    pub collected_at_unix_secs: u64,
    /// `sent` (the collector accepted it), `failed`, `sending`,
    /// `unchanged` (equal to the last export the collector accepted: not
    /// sent, see `unchanged`), or `local` (local mode: kept here, never
    /// sent).
    pub outcome: ExportOutcome,
    /// When the outcome is `unchanged`: since when, and when the next
    /// heartbeat is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<Unchanged>,
    /// The resource attributes every row is sent with.
    pub resource: BTreeMap<String, AttributeValue>,
    /// One row per data point.
    pub rows: Vec<SentRow>,
}

/// What became of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportOutcome {
    /// In flight.
    Sending,
    /// The collector accepted it.
    Sent,
    /// It failed (see [`Status`](crate::Status) for why).
    Failed,
    /// Local mode: recorded, never sent.
    Local,
    /// Its points equal those of the last export the collector accepted
    /// (only the point times differ): not sent until the heartbeat is due
    /// (`telemetry.heartbeat_secs`). In local mode: what would not be sent.
    Unchanged,
}

/// An export left out because nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Unchanged {
    /// When the export it equals was collected and accepted, in seconds
    /// since the Unix epoch.
    pub since_unix_secs: u64,
    /// Seconds from this collection until the next heartbeat is due: then
    /// an export is sent, changed or not.
    pub heartbeat_in_secs: u64,
}

impl std::fmt::Display for Unchanged {
    /// `unchanged since 14:03:12 UTC, not sent; heartbeat in 42 min`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unchanged since {}, not sent; heartbeat in {}",
            ClockTime(self.since_unix_secs),
            crate::status::Age(std::time::Duration::from_secs(self.heartbeat_in_secs))
        )
    }
}

/// A Unix time as `HH:MM:SS UTC`.
pub(crate) struct ClockTime(pub u64);

impl std::fmt::Display for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0 % 86_400;
        write!(
            f,
            "{:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl std::fmt::Display for ExportOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExportOutcome::Sending => "sending",
            ExportOutcome::Sent => "sent",
            ExportOutcome::Failed => "failed",
            ExportOutcome::Local => "local (not sent)",
            ExportOutcome::Unchanged => "unchanged, not sent",
        })
    }
}

/// One data point, flat: `value` for counters and gauges; `count`, `sum`,
/// `bounds` and `bucket_counts` for histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SentRow {
    /// Metric name.
    pub metric: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: MetricKind,
    /// Unit (`1`, `ms`, `s`, `{token}`).
    pub unit: String,
    /// The point's attributes.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Counter or gauge value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Number>,
    /// Histogram: number of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Histogram: sum of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// Histogram: bucket upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Vec<f64>>,
    /// Histogram: count per bucket (one more than the bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_counts: Option<Vec<u64>>,
}

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A monotonic sum.
    Counter,
    /// A sum that may go down.
    UpDownCounter,
    /// A gauge.
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
}

impl MetricKind {
    /// `counter`, `up_down_counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::UpDownCounter => "up_down_counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// A number as sent: integers stay integers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A floating-point number.
    F64(f64),
}

impl Number {
    /// The number as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::U64(n) => n as f64,
            Number::I64(n) => n as f64,
            Number::F64(n) => n,
        }
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Number::U64(n) => write!(f, "{n}"),
            Number::I64(n) => write!(f, "{n}"),
            Number::F64(n) => write!(f, "{n}"),
        }
    }
}

/// An attribute value as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Double(f64),
}

impl std::fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttributeValue::String(s) => f.write_str(s),
            AttributeValue::Bool(b) => write!(f, "{b}"),
            AttributeValue::Int(i) => write!(f, "{i}"),
            AttributeValue::Double(d) => write!(f, "{d}"),
        }
    }
}

impl From<&Value> for AttributeValue {
    fn from(value: &Value) -> AttributeValue {
        match value {
            Value::Bool(b) => AttributeValue::Bool(*b),
            Value::I64(i) => AttributeValue::Int(*i),
            Value::F64(d) => AttributeValue::Double(*d),
            // Survey builds no arrays; anything else is shown as text.
            other => AttributeValue::String(other.as_str().into_owned()),
        }
    }
}

fn attributes<'a>(
    kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>,
) -> BTreeMap<String, AttributeValue> {
    kvs.map(|kv| (kv.key.as_str().to_string(), AttributeValue::from(&kv.value)))
        .collect()
}

/// Flattens what the SDK hands the exporter into rows.
pub(crate) fn rows(metrics: &ResourceMetrics) -> Vec<SentRow> {
    let mut out = Vec::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let row = |kind, attributes| SentRow {
                metric: metric.name().to_string(),
                kind,
                unit: metric.unit().to_string(),
                attributes,
                value: None,
                count: None,
                sum: None,
                bounds: None,
                bucket_counts: None,
            };
            match metric.data() {
                AggregatedMetrics::U64(data) => push(&mut out, data, row, Number::U64),
                AggregatedMetrics::I64(data) => push(&mut out, data, row, Number::I64),
                AggregatedMetrics::F64(data) => push(&mut out, data, row, Number::F64),
            }
        }
    }
    out
}

fn push<T: Copy>(
    out: &mut Vec<SentRow>,
    data: &MetricData<T>,
    row: impl Fn(MetricKind, BTreeMap<String, AttributeValue>) -> SentRow,
    number: impl Fn(T) -> Number,
) {
    match data {
        MetricData::Sum(sum) => {
            let kind = if sum.is_monotonic() {
                MetricKind::Counter
            } else {
                MetricKind::UpDownCounter
            };
            for point in sum.data_points() {
                let mut r = row(kind, attributes(point.attributes()));
                r.value = Some(number(point.value()));
                out.push(r);
            }
        }
        MetricData::Gauge(gauge) => {
            for point in gauge.data_points() {
                let mut r = row(MetricKind::Gauge, attributes(point.attributes()));
                r.value = Some(number(point.value()));
                out.push(r);
            }
        }
        MetricData::Histogram(histogram) => {
            for point in histogram.data_points() {
                let mut r = row(MetricKind::Histogram, attributes(point.attributes()));
                r.count = Some(point.count());
                r.sum = Some(number(point.sum()).as_f64());
                r.bounds = Some(point.bounds().collect());
                r.bucket_counts = Some(point.bucket_counts().collect());
                out.push(r);
            }
        }
        // Survey creates no exponential histograms.
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// Where the exporter keeps the last export.
#[derive(Debug, Default)]
pub(crate) struct LastExportCell(Mutex<Option<Arc<LastExport>>>);

impl LastExportCell {
    /// Keeps `metrics` as the last export, with `outcome` (and, when it
    /// was left out, since when it is unchanged).
    pub(crate) fn keep(
        &self,
        metrics: &ResourceMetrics,
        outcome: ExportOutcome,
        unchanged: Option<Unchanged>,
    ) {
        let export = LastExport {
            collected_at_unix_secs: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            outcome,
            unchanged,
            resource: metrics
                .resource()
                .iter()
                .map(|(key, value)| (key.as_str().to_string(), AttributeValue::from(value)))
                .collect(),
            rows: rows(metrics),
        };
        if let Ok(mut last) = self.0.lock() {
            *last = Some(Arc::new(export));
        }
    }

    /// Sets the outcome of the kept export.
    pub(crate) fn finish(&self, outcome: ExportOutcome) {
        if let Ok(mut last) = self.0.lock()
            && let Some(export) = last.as_mut()
        {
            Arc::make_mut(export).outcome = outcome;
        }
    }

    /// The outcome of the kept export, if any.
    pub(crate) fn outcome(&self) -> Option<ExportOutcome> {
        self.0
            .lock()
            .ok()
            .and_then(|last| last.as_ref().map(|e| e.outcome))
    }

    /// The last export, if any.
    pub(crate) fn get(&self) -> Option<Arc<LastExport>> {
        self.0.lock().ok().and_then(|last| last.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_export_says_since_when_and_when_the_heartbeat_is_due() {
        let unchanged = Unchanged {
            since_unix_secs: 1_764_857_000 + 42,
            heartbeat_in_secs: 42 * 60 + 5,
        };
        assert_eq!(
            unchanged.to_string(),
            "unchanged since 14:04:02 UTC, not sent; heartbeat in 42 min"
        );
        assert_eq!(ExportOutcome::Unchanged.to_string(), "unchanged, not sent");
    }
}
