//! `opentelemetry.proto.metrics.v1`: metrics and their data points.

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::otlp::common::v1::{InstrumentationScope, KeyValue, only_one};
use crate::otlp::json;
use crate::otlp::resource::v1::Resource;

/// The metrics of one resource.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceMetrics {
    /// The resource; `None` when the sender left it out.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// The metrics, by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
    /// The schema URL of the resource.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// The metrics of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ScopeMetrics {
    /// The scope; `None` when the sender left it out.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<InstrumentationScope>,
    /// The metrics.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// The schema URL of the metrics.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One metric: its name, unit and data points of one of five types.
///
/// OTLP/JSON writes the data as a key of the metric: `"sum": {...}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// The metric's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The metric's description.
    #[prost(string, tag = "2")]
    pub description: String,
    /// The metric's unit.
    #[prost(string, tag = "3")]
    pub unit: String,
    /// Further key-value pairs about the metric.
    #[prost(message, repeated, tag = "12")]
    pub metadata: Vec<KeyValue>,
    /// The data points; `None` when the metric has none of the five types.
    #[prost(oneof = "metric::Data", tags = "5, 7, 9, 10, 11")]
    pub data: Option<metric::Data>,
}

/// The members of [`Metric`].
pub mod metric {
    /// The data of a [`Metric`](super::Metric), by type.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        /// `gauge`: sampled values.
        #[prost(message, tag = "5")]
        Gauge(super::Gauge),
        /// `sum`: a counter or an up-down counter.
        #[prost(message, tag = "7")]
        Sum(super::Sum),
        /// `histogram`: explicit bucket histograms.
        #[prost(message, tag = "9")]
        Histogram(super::Histogram),
        /// `exponentialHistogram`: exponential bucket histograms.
        #[prost(message, tag = "10")]
        ExponentialHistogram(super::ExponentialHistogram),
        /// `summary`: quantiles.
        #[prost(message, tag = "11")]
        Summary(super::Summary),
    }
}

/// The OTLP/JSON members of [`Metric`], read before the data is chosen.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetricJson {
    name: String,
    description: String,
    unit: String,
    metadata: Vec<KeyValue>,
    gauge: Option<Gauge>,
    sum: Option<Sum>,
    histogram: Option<Histogram>,
    exponential_histogram: Option<ExponentialHistogram>,
    summary: Option<Summary>,
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use metric::Data;
        let j = MetricJson::deserialize(d)?;
        let members = [
            j.gauge.map(Data::Gauge),
            j.sum.map(Data::Sum),
            j.histogram.map(Data::Histogram),
            j.exponential_histogram.map(Data::ExponentialHistogram),
            j.summary.map(Data::Summary),
        ];
        Ok(Metric {
            name: j.name,
            description: j.description,
            unit: j.unit,
            metadata: j.metadata,
            data: only_one(members, "Metric")?,
        })
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use metric::Data;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("description", &self.description)?;
        map.serialize_entry("unit", &self.unit)?;
        map.serialize_entry("metadata", &self.metadata)?;
        match &self.data {
            None => {}
            Some(Data::Gauge(v)) => map.serialize_entry("gauge", v)?,
            Some(Data::Sum(v)) => map.serialize_entry("sum", v)?,
            Some(Data::Histogram(v)) => map.serialize_entry("histogram", v)?,
            Some(Data::ExponentialHistogram(v)) => {
                map.serialize_entry("exponentialHistogram", v)?;
            }
            Some(Data::Summary(v)) => map.serialize_entry("summary", v)?,
        }
        map.end()
    }
}

/// Reads an `AggregationTemporality`: its number, or its name.
fn temporality<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Number(i32),
        Name(String),
        Null(()),
    }
    match Form::deserialize(d)? {
        Form::Number(n) => Ok(n),
        Form::Name(name) => AggregationTemporality::from_str_name(&name)
            .map(|t| t as i32)
            .ok_or_else(|| de::Error::custom(format_args!("unknown temporality {name:?}"))),
        Form::Null(()) => Ok(0),
    }
}

/// A gauge: sampled values.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Gauge {
    /// The data points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

/// A sum: the values of a counter or an up-down counter.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Sum {
    /// The data points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    /// An [`AggregationTemporality`], as its number.
    #[prost(enumeration = "AggregationTemporality", tag = "2")]
    #[serde(deserialize_with = "temporality")]
    pub aggregation_temporality: i32,
    /// Whether the sum only grows.
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

/// Histograms with explicit bucket bounds.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Histogram {
    /// The data points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<HistogramDataPoint>,
    /// An [`AggregationTemporality`], as its number.
    #[prost(enumeration = "AggregationTemporality", tag = "2")]
    #[serde(deserialize_with = "temporality")]
    pub aggregation_temporality: i32,
}

/// Histograms with exponential buckets.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExponentialHistogram {
    /// The data points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<ExponentialHistogramDataPoint>,
    /// An [`AggregationTemporality`], as its number.
    #[prost(enumeration = "AggregationTemporality", tag = "2")]
    #[serde(deserialize_with = "temporality")]
    pub aggregation_temporality: i32,
}

/// Summaries: counts, sums and quantiles.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Summary {
    /// The data points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<SummaryDataPoint>,
}

/// One value of a gauge or a sum.
///
/// OTLP/JSON writes the value as `"asInt": "5"` or `"asDouble": 5.0`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NumberDataPoint {
    /// The attributes of the point's stream.
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// Start of the interval the point covers, in ns since the epoch.
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// When the point was taken, in ns since the epoch.
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// Sample measurements behind the point.
    #[prost(message, repeated, tag = "5")]
    pub exemplars: Vec<Exemplar>,
    /// `DataPointFlags` bits.
    #[prost(uint32, tag = "8")]
    pub flags: u32,
    /// The value; `None` when the sender left it out.
    #[prost(oneof = "number_data_point::Value", tags = "4, 6")]
    pub value: Option<number_data_point::Value>,
}

/// The members of [`NumberDataPoint`].
pub mod number_data_point {
    /// The value of a [`NumberDataPoint`](super::NumberDataPoint).
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `asDouble`.
        #[prost(double, tag = "4")]
        AsDouble(f64),
        /// `asInt`: a string in OTLP/JSON.
        #[prost(sfixed64, tag = "6")]
        AsInt(i64),
    }
}

/// The OTLP/JSON members of [`NumberDataPoint`], read before the value is
/// chosen.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NumberDataPointJson {
    attributes: Vec<KeyValue>,
    #[serde(with = "json::u64_text")]
    start_time_unix_nano: u64,
    #[serde(with = "json::u64_text")]
    time_unix_nano: u64,
    exemplars: Vec<Exemplar>,
    flags: u32,
    #[serde(with = "json::opt_f64")]
    as_double: Option<f64>,
    #[serde(deserialize_with = "json::opt_i64")]
    as_int: Option<i64>,
}

impl<'de> Deserialize<'de> for NumberDataPoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use number_data_point::Value;
        let j = NumberDataPointJson::deserialize(d)?;
        let members = [j.as_double.map(Value::AsDouble), j.as_int.map(Value::AsInt)];
        Ok(NumberDataPoint {
            attributes: j.attributes,
            start_time_unix_nano: j.start_time_unix_nano,
            time_unix_nano: j.time_unix_nano,
            exemplars: j.exemplars,
            flags: j.flags,
            value: only_one(members, "NumberDataPoint")?,
        })
    }
}

impl Serialize for NumberDataPoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use number_data_point::Value;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("attributes", &self.attributes)?;
        map.serialize_entry("startTimeUnixNano", &self.start_time_unix_nano.to_string())?;
        map.serialize_entry("timeUnixNano", &self.time_unix_nano.to_string())?;
        map.serialize_entry("exemplars", &self.exemplars)?;
        map.serialize_entry("flags", &self.flags)?;
        match self.value {
            None => {}
            Some(Value::AsDouble(v)) => map.serialize_entry("asDouble", &json::Double(v))?,
            Some(Value::AsInt(v)) => map.serialize_entry("asInt", &v.to_string())?,
        }
        map.end()
    }
}

/// One histogram with explicit bucket bounds.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HistogramDataPoint {
    /// The attributes of the point's stream.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Start of the interval the point covers, in ns since the epoch.
    #[prost(fixed64, tag = "2")]
    #[serde(with = "json::u64_text")]
    pub start_time_unix_nano: u64,
    /// When the point was taken, in ns since the epoch.
    #[prost(fixed64, tag = "3")]
    #[serde(with = "json::u64_text")]
    pub time_unix_nano: u64,
    /// Number of values recorded.
    #[prost(fixed64, tag = "4")]
    #[serde(with = "json::u64_text")]
    pub count: u64,
    /// Sum of the values recorded, if known.
    #[prost(double, optional, tag = "5")]
    #[serde(with = "json::opt_f64", skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// Values recorded in each bucket: one more than the bounds.
    #[prost(fixed64, repeated, tag = "6")]
    #[serde(with = "json::vec_u64_text")]
    pub bucket_counts: Vec<u64>,
    /// Upper bounds of the buckets but the last.
    #[prost(double, repeated, tag = "7")]
    #[serde(with = "json::vec_f64")]
    pub explicit_bounds: Vec<f64>,
    /// Sample measurements behind the point.
    #[prost(message, repeated, tag = "8")]
    pub exemplars: Vec<Exemplar>,
    /// `DataPointFlags` bits.
    #[prost(uint32, tag = "10")]
    pub flags: u32,
    /// Smallest value recorded, if known.
    #[prost(double, optional, tag = "11")]
    #[serde(with = "json::opt_f64", skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value recorded, if known.
    #[prost(double, optional, tag = "12")]
    #[serde(with = "json::opt_f64", skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// One histogram with exponential buckets.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExponentialHistogramDataPoint {
    /// The attributes of the point's stream.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Start of the interval the point covers, in ns since the epoch.
    #[prost(fixed64, tag = "2")]
    #[serde(with = "json::u64_text")]
    pub start_time_unix_nano: u64,
    /// When the point was taken, in ns since the epoch.
    #[prost(fixed64, tag = "3")]
    #[serde(with = "json::u64_text")]
    pub time_unix_nano: u64,
    /// Number of values recorded.
    #[prost(fixed64, tag = "4")]
    #[serde(with = "json::u64_text")]
    pub count: u64,
    /// Sum of the values recorded, if known.
    #[prost(double, optional, tag = "5")]
    #[serde(with = "json::opt_f64", skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// Resolution of the buckets.
    #[prost(sint32, tag = "6")]
    pub scale: i32,
    /// Values recorded in the zero bucket.
    #[prost(fixed64, tag = "7")]
    #[serde(with = "json::u64_text")]
    pub zero_count: u64,
    /// Buckets of positive values.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive: Option<exponential_histogram_data_point::Buckets>,
    /// Buckets of negative values.
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative: Option<exponential_histogram_data_point::Buckets>,
    /// `DataPointFlags` bits.
    #[prost(uint32, tag = "10")]
    pub flags: u32,
    /// Sample measurements behind the point.
    #[prost(message, repeated, tag = "11")]
    pub exemplars: Vec<Exemplar>,
    /// Smallest value recorded, if known.
    #[prost(double, optional, tag = "12")]
    #[serde(with = "json::opt_f64", skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value recorded, if known.
    #[prost(double, optional, tag = "13")]
    #[serde(with = "json::opt_f64", skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Width of the zero bucket.
    #[prost(double, tag = "14")]
    #[serde(with = "json::f64_value")]
    pub zero_threshold: f64,
}

/// The parts of [`ExponentialHistogramDataPoint`].
pub mod exponential_histogram_data_point {
    use serde::{Deserialize, Serialize};

    use crate::otlp::json;

    /// A run of consecutive exponential buckets.
    #[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Buckets {
        /// Index of the first bucket.
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        /// Values recorded in each bucket.
        #[prost(uint64, repeated, tag = "2")]
        #[serde(with = "json::vec_u64_text")]
        pub bucket_counts: Vec<u64>,
    }
}

/// One summary: a count, a sum and quantiles.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SummaryDataPoint {
    /// The attributes of the point's stream.
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// Start of the interval the point covers, in ns since the epoch.
    #[prost(fixed64, tag = "2")]
    #[serde(with = "json::u64_text")]
    pub start_time_unix_nano: u64,
    /// When the point was taken, in ns since the epoch.
    #[prost(fixed64, tag = "3")]
    #[serde(with = "json::u64_text")]
    pub time_unix_nano: u64,
    /// Number of values recorded.
    #[prost(fixed64, tag = "4")]
    #[serde(with = "json::u64_text")]
    pub count: u64,
    /// Sum of the values recorded.
    #[prost(double, tag = "5")]
    #[serde(with = "json::f64_value")]
    pub sum: f64,
    /// The quantiles.
    #[prost(message, repeated, tag = "6")]
    pub quantile_values: Vec<summary_data_point::ValueAtQuantile>,
    /// `DataPointFlags` bits.
    #[prost(uint32, tag = "8")]
    pub flags: u32,
}

/// The parts of [`SummaryDataPoint`].
pub mod summary_data_point {
    use serde::{Deserialize, Serialize};

    use crate::otlp::json;

    /// One quantile of a summary.
    #[derive(Clone, Copy, PartialEq, prost::Message, Serialize, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ValueAtQuantile {
        /// The quantile, in [0, 1].
        #[prost(double, tag = "1")]
        #[serde(with = "json::f64_value")]
        pub quantile: f64,
        /// The value at the quantile.
        #[prost(double, tag = "2")]
        #[serde(with = "json::f64_value")]
        pub value: f64,
    }
}

/// A sample measurement behind a data point.
///
/// OTLP/JSON writes the ids as hex and the value as `"asInt"` or
/// `"asDouble"`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Attributes of the measurement not on its point.
    #[prost(message, repeated, tag = "7")]
    pub filtered_attributes: Vec<KeyValue>,
    /// When the measurement was taken, in ns since the epoch.
    #[prost(fixed64, tag = "2")]
    pub time_unix_nano: u64,
    /// The span the measurement was taken in.
    #[prost(bytes = "vec", tag = "4")]
    pub span_id: Vec<u8>,
    /// The trace the measurement was taken in.
    #[prost(bytes = "vec", tag = "5")]
    pub trace_id: Vec<u8>,
    /// The value measured.
    #[prost(oneof = "exemplar::Value", tags = "3, 6")]
    pub value: Option<exemplar::Value>,
}

/// The members of [`Exemplar`].
pub mod exemplar {
    /// The value of an [`Exemplar`](super::Exemplar).
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `asDouble`.
        #[prost(double, tag = "3")]
        AsDouble(f64),
        /// `asInt`: a string in OTLP/JSON.
        #[prost(sfixed64, tag = "6")]
        AsInt(i64),
    }
}

/// The OTLP/JSON members of [`Exemplar`], read before the value is chosen.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ExemplarJson {
    filtered_attributes: Vec<KeyValue>,
    #[serde(with = "json::u64_text")]
    time_unix_nano: u64,
    #[serde(with = "json::hex_bytes")]
    span_id: Vec<u8>,
    #[serde(with = "json::hex_bytes")]
    trace_id: Vec<u8>,
    #[serde(with = "json::opt_f64")]
    as_double: Option<f64>,
    #[serde(deserialize_with = "json::opt_i64")]
    as_int: Option<i64>,
}

impl<'de> Deserialize<'de> for Exemplar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use exemplar::Value;
        let j = ExemplarJson::deserialize(d)?;
        let members = [j.as_double.map(Value::AsDouble), j.as_int.map(Value::AsInt)];
        Ok(Exemplar {
            filtered_attributes: j.filtered_attributes,
            time_unix_nano: j.time_unix_nano,
            span_id: j.span_id,
            trace_id: j.trace_id,
            value: only_one(members, "Exemplar")?,
        })
    }
}

impl Serialize for Exemplar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use exemplar::Value;
        /// The ids, written as hex.
        struct Hex<'a>(&'a [u8]);
        impl Serialize for Hex<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                json::hex_bytes::serialize(self.0, s)
            }
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("filteredAttributes", &self.filtered_attributes)?;
        map.serialize_entry("timeUnixNano", &self.time_unix_nano.to_string())?;
        map.serialize_entry("spanId", &Hex(&self.span_id))?;
        map.serialize_entry("traceId", &Hex(&self.trace_id))?;
        match self.value {
            None => {}
            Some(Value::AsDouble(v)) => map.serialize_entry("asDouble", &json::Double(v))?,
            Some(Value::AsInt(v)) => map.serialize_entry("asInt", &v.to_string())?,
        }
        map.end()
    }
}

/// How a sum or a histogram aggregates over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AggregationTemporality {
    /// Not set: a gauge, or a malformed point.
    Unspecified = 0,
    /// Each point covers the interval since the previous one.
    Delta = 1,
    /// Each point covers the interval since a fixed start.
    Cumulative = 2,
}

impl AggregationTemporality {
    /// The value's name in the protobuf definition.
    pub fn as_str_name(&self) -> &'static str {
        match self {
            AggregationTemporality::Unspecified => "AGGREGATION_TEMPORALITY_UNSPECIFIED",
            AggregationTemporality::Delta => "AGGREGATION_TEMPORALITY_DELTA",
            AggregationTemporality::Cumulative => "AGGREGATION_TEMPORALITY_CUMULATIVE",
        }
    }

    /// The value a name in the protobuf definition names.
    pub fn from_str_name(name: &str) -> Option<AggregationTemporality> {
        [
            AggregationTemporality::Unspecified,
            AggregationTemporality::Delta,
            AggregationTemporality::Cumulative,
        ]
        .into_iter()
        .find(|t| t.as_str_name() == name)
    }
}
