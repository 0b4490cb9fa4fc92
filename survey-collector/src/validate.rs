//! Validate: keep exactly the data points an honest survey node sends.
//!
//! The endpoint is public, so nothing is trusted. A data point is accepted
//! only if its metric is one of survey's ([`schema::METRICS`]: the spec's
//! lifecycle metrics and the opt-in inference metrics) with the schema's
//! data type, unit and histogram bounds; every attribute key is in the
//! spec's allowlist and is one survey puts on that metric, and the
//! inference counter's points carry their request outcome ([`MetricKeys`]:
//! the one required key, since it splits the counter's streams; a point
//! without another key survey always sends, such as `gpu_count`, is not
//! refused for it); every value is one
//! survey could have exported (the runtime's own checks,
//! [`AttributeKey::accepts`]); its resource holds only survey's resource
//! keys, its scope is survey's, and its numbers and times make sense.
//! Anything else rejects the whole point: dropping just a key would merge
//! two streams into one. Rejected points are counted, by reason, for the
//! answer's `partial_success`; nothing of them is kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use survey_schema::{
    self as schema, AttributeKey, MetricKind, MetricSpec, ReceivedValue, ResourceKey,
};

use crate::keyed_hash::KeyedMap;
use crate::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::common::v1::any_value::Value as AnyValue;
use crate::otlp::common::v1::{InstrumentationScope, KeyValue};
use crate::otlp::metrics::v1::number_data_point::Value as NumberValue;
use crate::otlp::metrics::v1::{
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
};

/// Most data points considered in one request; points past it are rejected.
pub const MAX_POINTS_PER_REQUEST: usize = 10_000;

/// The largest count accepted: 2^53, the largest integer a double holds
/// exactly (no survey node comes near it).
pub const MAX_EXACT: i64 = 1 << 53;

/// How far ahead of the collector's clock a point's time may be: 1 day.
pub const MAX_FUTURE_NANOS: i64 = 86_400 * 1_000_000_000;

/// `AggregationTemporality` of a gauge point (OTLP leaves it unspecified).
pub const TEMPORALITY_NONE: i32 = 0;
/// OTLP `AGGREGATION_TEMPORALITY_DELTA`.
pub const TEMPORALITY_DELTA: i32 = 1;
/// OTLP `AGGREGATION_TEMPORALITY_CUMULATIVE`.
pub const TEMPORALITY_CUMULATIVE: i32 = 2;

/// The points of one request that passed, with the count of those that did not.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Validated {
    /// The resources the accepted points refer to.
    pub resources: Vec<Resource>,
    /// Accepted points, in request order.
    pub points: Vec<Point>,
    /// Rejected points, by reason.
    pub rejected: Rejections,
}

/// A sender process, as its accepted resource describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Resource attributes as canonical JSON: keys sorted, values as text.
    pub attributes: Arc<str>,
    /// `service.name`, empty when absent.
    pub service_name: String,
    /// Who counts as one node: `service.instance.id`, or for a node that
    /// predates it, its whole resource (such nodes cannot be told apart).
    pub node: String,
}

/// One accepted data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Index into [`Validated::resources`].
    pub resource: usize,
    /// The schema entry of its metric.
    pub metric: &'static MetricSpec,
    /// Version of the instrumentation scope (empty for survey's own).
    pub scope_version: String,
    /// Its attributes, checked (shared by every point with the same set).
    pub attributes: Arc<Attributes>,
    /// Start of the point's aggregation, ns since the epoch (0: none).
    pub start_time_unix: i64,
    /// Time of the point, ns since the epoch.
    pub time_unix: i64,
    /// OTLP's aggregation temporality: `TEMPORALITY_NONE` (a gauge),
    /// `TEMPORALITY_DELTA` or `TEMPORALITY_CUMULATIVE`.
    pub temporality: i32,
    /// The measurement.
    pub value: Value,
}

impl Point {
    /// The `StartTimeUnix` part of the stream key. A cumulative stream is
    /// one process's series since its start. A delta series is one stream
    /// whose points are told apart by their own times; a gauge series too
    /// (a gauge is a snapshot, and under delta temporality its start time
    /// moves at every export).
    pub fn stream_start(&self) -> i64 {
        if self.temporality == TEMPORALITY_CUMULATIVE {
            self.start_time_unix
        } else {
            0
        }
    }
}

/// A checked attribute set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Canonical JSON: keys sorted, values as text.
    pub json: String,
    /// The same attributes, typed, in key order.
    pub dimensions: Vec<(AttributeKey, Dimension)>,
    /// A hash of `json`, for in-memory maps.
    pub hash: u64,
}

/// An accepted attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// Text (sanitized, or a value of a closed enum).
    Text(String),
    /// `mesh_llm.gpu_count`.
    Int(i64),
    /// `mesh_llm.is_soc`.
    Bool(bool),
}

impl Dimension {
    fn as_text(&self) -> String {
        match self {
            Dimension::Text(s) => s.clone(),
            Dimension::Int(i) => i.to_string(),
            Dimension::Bool(b) => b.to_string(),
        }
    }
}

/// The measurement of a point.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's or gauge's value.
    Number(f64),
    /// A histogram's count, sum and buckets.
    Histogram(HistogramValue),
}

/// An accepted histogram point.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue {
    /// Observations.
    pub count: u64,
    /// Their sum (0 when not sent).
    pub sum: f64,
    /// Smallest observation, if sent.
    pub min: Option<f64>,
    /// Largest observation, if sent.
    pub max: Option<f64>,
    /// Per-bucket counts; the schema's bounds.
    pub bucket_counts: Vec<u64>,
}

/// Why a data point was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// Past the most points one request may carry (10,000).
    OverLimit,
    /// Not one of survey's metrics ([`schema::METRICS`]).
    UnknownMetric,
    /// A survey metric with another data type, unit, temporality or bounds.
    WrongShape,
    /// A resource attribute outside survey's resource keys, or a bad value.
    Resource,
    /// An instrumentation scope other than survey's.
    Scope,
    /// An attribute key outside the spec's allowlist or one survey never
    /// puts on that metric, a key given twice, or the inference counter's
    /// request outcome missing ([`MetricKeys`]).
    AttributeKey,
    /// An attribute value survey never exports.
    AttributeValue,
    /// A value that is missing, negative, not finite, or an inconsistent histogram.
    Value,
    /// A time that is missing, before its start, or too far in the future.
    Time,
    /// A delta point older than the raw points are kept.
    Stale,
    /// Exemplars, flags or metadata, which survey never sends.
    Extra,
}

impl Rejection {
    fn describe(self) -> &'static str {
        match self {
            Rejection::OverLimit => "over the limit of 10000 data points per request",
            Rejection::UnknownMetric => "not a survey metric",
            Rejection::WrongShape => "wrong data type, unit, temporality or histogram bounds",
            Rejection::Resource => "resource attribute not allowed",
            Rejection::Scope => "instrumentation scope not survey's",
            Rejection::AttributeKey => {
                "attribute key not allowed on the metric, repeated or missing"
            }
            Rejection::AttributeValue => "attribute value not allowed",
            Rejection::Value => "missing, negative or inconsistent value",
            Rejection::Time => "missing or implausible timestamp",
            Rejection::Stale => "delta point older than the collector's retention period",
            Rejection::Extra => "exemplars, flags or metadata present",
        }
    }
}

/// Rejected points, counted by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejections {
    counts: BTreeMap<Rejection, u64>,
}

impl Rejections {
    /// Counts `n` points rejected for `reason`.
    pub fn add(&mut self, reason: Rejection, n: u64) {
        if n > 0 {
            *self.counts.entry(reason).or_default() += n;
        }
    }

    /// Total rejected points.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Points rejected for `reason`.
    pub fn count(&self, reason: Rejection) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// The `partial_success` message: counts by reason, never a value.
    pub fn message(&self) -> String {
        let mut out = format!("{} data points rejected:", self.total());
        for (i, (reason, n)) in self.counts.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            let _ = write!(out, "{sep}{n} {}", reason.describe());
        }
        out
    }
}

pub use survey_schema::MetricKeys;

/// Validates a decoded request against the schema.
pub fn validate(request: &ExportMetricsServiceRequest, clock: Clock) -> Validated {
    let mut out = Validated::default();
    let mut budget = MAX_POINTS_PER_REQUEST;
    for rm in &request.resource_metrics {
        // The resource is kept only if one of its points is.
        let resource = check_resource(rm);
        let index = out.resources.len();
        let accepted_before = out.points.len();
        for sm in &rm.scope_metrics {
            let accepted = match (&resource, check_scope(sm)) {
                (Ok(_), Ok(version)) => Ok(version),
                (Err(reason), _) => Err(*reason),
                (_, Err(reason)) => Err(reason),
            };
            for metric in &sm.metrics {
                let n = point_count(metric);
                let considered = n.min(budget);
                budget -= considered;
                out.rejected
                    .add(Rejection::OverLimit, (n - considered) as u64);
                match &accepted {
                    _ if considered == 0 => {}
                    Err(reason) => out.rejected.add(*reason, considered as u64),
                    Ok(scope_version) => {
                        let context = PointContext {
                            resource: index,
                            scope_version,
                            clock,
                        };
                        validate_metric(metric, considered, &context, &mut out);
                    }
                }
            }
        }
        if let Ok(resource) = resource
            && out.points.len() > accepted_before
        {
            out.resources.push(resource);
        }
    }
    out
}

struct PointContext<'a> {
    resource: usize,
    scope_version: &'a str,
    clock: Clock,
}

/// What a point is checked against: its metric's schema entry and keys.
#[derive(Clone, Copy)]
struct Expected {
    spec: &'static MetricSpec,
    keys: MetricKeys,
}

/// The collector's clock and memory, for the checks on times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Now, in ns since the epoch.
    pub now: i64,
    /// How long raw points are kept, in ns. A delta point is deduplicated
    /// against the raw points, so one older than this is refused: a retry
    /// of it could not be recognised.
    pub retention: i64,
}

fn point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn check_resource(rm: &ResourceMetrics) -> Result<Resource, Rejection> {
    if !rm.schema_url.is_empty() {
        return Err(Rejection::Resource);
    }
    let mut attributes = BTreeMap::new();
    if let Some(resource) = &rm.resource {
        if !resource.entity_refs.is_empty() {
            return Err(Rejection::Resource);
        }
        for kv in &resource.attributes {
            let key = ResourceKey::from_str(&kv.key).map_err(|_| Rejection::Resource)?;
            let Dimension::Text(value) = received(kv)
                .filter(|v| key.accepts(*v))
                .and_then(dimension)
                .ok_or(Rejection::Resource)?
            else {
                return Err(Rejection::Resource);
            };
            if attributes.insert(key.as_str(), value).is_some() {
                return Err(Rejection::Resource);
            }
        }
    }
    let json = canonical_json(&attributes);
    let service_name = attributes
        .get(ResourceKey::ServiceName.as_str())
        .cloned()
        .unwrap_or_default();
    let node = attributes
        .get(ResourceKey::ServiceInstanceId.as_str())
        .cloned()
        .unwrap_or_else(|| json.clone());
    Ok(Resource {
        attributes: json.into(),
        service_name,
        node,
    })
}

fn check_scope(sm: &ScopeMetrics) -> Result<String, Rejection> {
    let ok = |scope: &InstrumentationScope| {
        scope.name == schema::SCOPE_NAME
            && scope.attributes.is_empty()
            && (scope.version.is_empty()
                || ResourceKey::ServiceVersion.accepts(ReceivedValue::Str(&scope.version)))
    };
    match &sm.scope {
        Some(scope) if sm.schema_url.is_empty() && ok(scope) => Ok(scope.version.clone()),
        _ => Err(Rejection::Scope),
    }
}

fn validate_metric(metric: &Metric, considered: usize, cx: &PointContext<'_>, out: &mut Validated) {
    let reject_all = |out: &mut Validated, reason| out.rejected.add(reason, considered as u64);
    let Some(spec) = schema::metric(&metric.name) else {
        return reject_all(out, Rejection::UnknownMetric);
    };
    if metric.unit != spec.unit {
        return reject_all(out, Rejection::WrongShape);
    }
    if !metric.metadata.is_empty() {
        return reject_all(out, Rejection::Extra);
    }
    let expected = Expected {
        spec,
        keys: MetricKeys::of_metric(spec),
    };
    match (&metric.data, spec.kind) {
        (Some(Data::Sum(sum)), MetricKind::Counter)
            if sum.is_monotonic && is_sum_temporality(sum.aggregation_temporality) =>
        {
            for p in sum.data_points.iter().take(considered) {
                let point = number_point(p, expected, sum.aggregation_temporality, cx);
                push(out, point);
            }
        }
        (Some(Data::Gauge(gauge)), MetricKind::Gauge) => {
            for p in gauge.data_points.iter().take(considered) {
                let point = number_point(p, expected, TEMPORALITY_NONE, cx);
                push(out, point);
            }
        }
        (Some(Data::Histogram(h)), MetricKind::Histogram)
            if is_sum_temporality(h.aggregation_temporality) =>
        {
            for p in h.data_points.iter().take(considered) {
                let point = histogram_point(p, expected, h.aggregation_temporality, cx);
                push(out, point);
            }
        }
        _ => reject_all(out, Rejection::WrongShape),
    }
}

fn push(out: &mut Validated, point: Result<Point, Rejection>) {
    match point {
        Ok(point) => out.points.push(point),
        Err(reason) => out.rejected.add(reason, 1),
    }
}

fn is_sum_temporality(t: i32) -> bool {
    t == TEMPORALITY_DELTA || t == TEMPORALITY_CUMULATIVE
}

fn number_point(
    p: &NumberDataPoint,
    expected: Expected,
    temporality: i32,
    cx: &PointContext<'_>,
) -> Result<Point, Rejection> {
    if !p.exemplars.is_empty() || p.flags != 0 {
        return Err(Rejection::Extra);
    }
    // Survey's counters and gauges are u64 instruments: integers, and
    // within what a double holds exactly.
    let value = match p.value {
        Some(NumberValue::AsInt(i)) if (0..=MAX_EXACT).contains(&i) => i as f64,
        _ => return Err(Rejection::Value),
    };
    let times = (p.start_time_unix_nano, p.time_unix_nano);
    point(
        cx,
        expected,
        temporality,
        &p.attributes,
        times,
        Value::Number(value),
    )
}

fn histogram_point(
    p: &HistogramDataPoint,
    expected: Expected,
    temporality: i32,
    cx: &PointContext<'_>,
) -> Result<Point, Rejection> {
    let spec = expected.spec;
    if !p.exemplars.is_empty() || p.flags != 0 {
        return Err(Rejection::Extra);
    }
    if p.explicit_bounds != spec.boundaries {
        return Err(Rejection::WrongShape);
    }
    let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
    let bucket_total = p
        .bucket_counts
        .iter()
        .try_fold(0u64, |acc, n| acc.checked_add(*n));
    if p.bucket_counts.len() != spec.boundaries.len() + 1
        || bucket_total != Some(p.count)
        || p.count > MAX_EXACT as u64
        || !finite(p.sum)
        || p.sum.is_some_and(|s| s < 0.0)
        || !finite(p.min)
        || !finite(p.max)
        || matches!((p.min, p.max), (Some(min), Some(max)) if min > max)
    {
        return Err(Rejection::Value);
    }
    let value = Value::Histogram(HistogramValue {
        count: p.count,
        sum: p.sum.unwrap_or(0.0),
        min: p.min,
        max: p.max,
        bucket_counts: p.bucket_counts.clone(),
    });
    let times = (p.start_time_unix_nano, p.time_unix_nano);
    point(cx, expected, temporality, &p.attributes, times, value)
}

/// The checks every point shares: attributes, the keys of its metric, and
/// times.
fn point(
    cx: &PointContext<'_>,
    expected: Expected,
    temporality: i32,
    attributes: &[KeyValue],
    (start, time): (u64, u64),
    value: Value,
) -> Result<Point, Rejection> {
    let attributes = check_attributes(attributes)?;
    if !expected
        .keys
        .admits(attributes.dimensions.iter().map(|(key, _)| *key))
    {
        return Err(Rejection::AttributeKey);
    }
    let needs_start = temporality != TEMPORALITY_NONE;
    let (start_time_unix, time_unix) = check_times(start, time, needs_start, cx.clock.now)?;
    if temporality == TEMPORALITY_DELTA
        && time_unix < cx.clock.now.saturating_sub(cx.clock.retention)
    {
        return Err(Rejection::Stale);
    }
    Ok(Point {
        resource: cx.resource,
        metric: expected.spec,
        scope_version: cx.scope_version.to_string(),
        attributes,
        start_time_unix,
        time_unix,
        temporality,
        value,
    })
}

fn check_times(
    start: u64,
    time: u64,
    needs_start: bool,
    now: i64,
) -> Result<(i64, i64), Rejection> {
    let start = i64::try_from(start).map_err(|_| Rejection::Time)?;
    let time = i64::try_from(time).map_err(|_| Rejection::Time)?;
    if time <= 0
        || (needs_start && start <= 0)
        || start > time
        || time > now.saturating_add(MAX_FUTURE_NANOS)
    {
        return Err(Rejection::Time);
    }
    Ok((start, time))
}

/// Attribute sets checked on this thread, by their raw form: most exports
/// repeat the sets of earlier ones (every metric of a model, every node
/// with the same model and hardware).
const CACHED_SETS: usize = 65_536;

type SetCache = KeyedMap<u64, Vec<(Vec<KeyValue>, Result<Arc<Attributes>, Rejection>)>>;

thread_local! {
    static CHECKED_SETS: std::cell::RefCell<(SetCache, usize)> = std::cell::RefCell::new((SetCache::default(), 0));
}

fn check_attributes(kvs: &[KeyValue]) -> Result<Arc<Attributes>, Rejection> {
    let hash = raw_hash(kvs);
    let cached = CHECKED_SETS.with(|cache| {
        let cache = cache.borrow();
        cache.0.get(&hash).and_then(|entries| {
            entries
                .iter()
                .find(|(raw, _)| raw.as_slice() == kvs)
                .map(|(_, checked)| checked.clone())
        })
    });
    if let Some(checked) = cached {
        return checked;
    }
    let checked = check_attributes_uncached(kvs).map(Arc::new);
    CHECKED_SETS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.1 >= CACHED_SETS {
            cache.0.clear();
            cache.1 = 0;
        }
        cache.1 += 1;
        cache
            .0
            .entry(hash)
            .or_default()
            .push((kvs.to_vec(), checked.clone()));
    });
    checked
}

/// A hash of an attribute list as received.
fn raw_hash(kvs: &[KeyValue]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = crate::keyed_hash::hasher();
    for kv in kvs {
        kv.key.hash(&mut hasher);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AnyValue::StringValue(s)) => (0u8, s).hash(&mut hasher),
            Some(AnyValue::IntValue(i)) => (1u8, i).hash(&mut hasher),
            Some(AnyValue::BoolValue(b)) => (2u8, b).hash(&mut hasher),
            Some(AnyValue::DoubleValue(d)) => (3u8, d.to_bits()).hash(&mut hasher),
            _ => 4u8.hash(&mut hasher),
        }
    }
    hasher.finish()
}

fn check_attributes_uncached(kvs: &[KeyValue]) -> Result<Attributes, Rejection> {
    let mut dims: Vec<(AttributeKey, Dimension)> = Vec::with_capacity(kvs.len());
    for kv in kvs {
        let key = AttributeKey::from_str(&kv.key).map_err(|_| Rejection::AttributeKey)?;
        if dims.iter().any(|(k, _)| *k == key) {
            return Err(Rejection::AttributeKey);
        }
        let value = received(kv)
            .filter(|v| key.accepts(*v))
            .and_then(dimension)
            .ok_or(Rejection::AttributeValue)?;
        dims.push((key, value));
    }
    dims.sort_by_key(|(k, _)| *k);
    let map: BTreeMap<&str, String> = dims
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_text()))
        .collect();
    let json = canonical_json(&map);
    Ok(Attributes {
        hash: crate::keyed_hash::hash_bytes(json.as_bytes()),
        json,
        dimensions: dims,
    })
}

fn received(kv: &KeyValue) -> Option<ReceivedValue<'_>> {
    Some(match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => ReceivedValue::Str(s),
        AnyValue::IntValue(i) => ReceivedValue::Int(*i),
        AnyValue::BoolValue(b) => ReceivedValue::Bool(*b),
        AnyValue::DoubleValue(d) => ReceivedValue::Double(*d),
        _ => ReceivedValue::Other,
    })
}

fn dimension(value: ReceivedValue<'_>) -> Option<Dimension> {
    match value {
        ReceivedValue::Str(s) => Some(Dimension::Text(s.to_string())),
        ReceivedValue::Int(i) => Some(Dimension::Int(i)),
        ReceivedValue::Bool(b) => Some(Dimension::Bool(b)),
        ReceivedValue::Double(_) | ReceivedValue::Other => None,
    }
}

/// Keys sorted, values as text: the same attribute set always gives the
/// same string, whatever order it arrived in.
fn canonical_json<K: AsRef<str> + Ord, V: AsRef<str>>(map: &BTreeMap<K, V>) -> String {
    let map: BTreeMap<&str, &str> = map.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_string())
}
