//! Heartbeats: an idle node sends what changed, and a heartbeat.
//!
//! Under cumulative temporality, an export whose points equal those of the
//! last export the collector accepted whole (the same streams, values and
//! start times; only the point times differ) is not sent, unless
//! `telemetry.heartbeat_secs` has passed since that export. Anything that
//! changed (a count, a bucket, a gauge value, a stream that appeared or
//! ended) goes out at the next interval. A failed export, or one with
//! rejected points, is not accepted: the next interval sends in full.
//!
//! The collector loses nothing by it: its counting rule takes the largest
//! value seen of each stream, and a skipped export repeats values it holds.
//! The heartbeat is timed on survey's clock ([`crate::clock`]), so the
//! fleet simulator gives survey a clock it moves (`Setup::clock`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

/// The content of an export as the collector stores it, without the point
/// times: what two exports must share for the second to be left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Points {
    resource: Vec<(String, String)>,
    /// Sorted, so the order the SDK lists series in does not matter.
    points: Vec<Point>,
}

/// One data point: its stream and its values. Floats are compared by
/// their bits (what is sent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    scope: String,
    metric: String,
    unit: String,
    description: String,
    /// Kind, monotonicity and temporality.
    kind: String,
    /// Start time of counters and histograms, in nanoseconds since the
    /// epoch. `None` for gauges: the SDK gives an observable gauge the
    /// time of the previous collection as its start, a point time like
    /// any other, not part of the stream.
    start: Option<u128>,
    attributes: Vec<(String, String)>,
    values: Vec<u64>,
}

fn nanos(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl Points {
    /// The points of `metrics`.
    pub(crate) fn of(metrics: &ResourceMetrics) -> Points {
        let mut resource: Vec<(String, String)> = metrics
            .resource()
            .iter()
            .map(|(key, value)| (key.as_str().to_string(), format!("{value:?}")))
            .collect();
        resource.sort();
        let mut points = Vec::new();
        for scope in metrics.scope_metrics() {
            let scope_name = format!("{}@{:?}", scope.scope().name(), scope.scope().version());
            for metric in scope.metrics() {
                let point = |kind: String, start: Option<SystemTime>, attributes, values| Point {
                    scope: scope_name.clone(),
                    metric: metric.name().to_string(),
                    unit: metric.unit().to_string(),
                    description: metric.description().to_string(),
                    kind,
                    start: start.map(nanos),
                    attributes,
                    values,
                };
                match metric.data() {
                    AggregatedMetrics::U64(data) => push(&mut points, data, point, |v| v),
                    AggregatedMetrics::I64(data) => {
                        push(&mut points, data, point, |v| v.cast_unsigned());
                    }
                    AggregatedMetrics::F64(data) => push(&mut points, data, point, f64::to_bits),
                }
            }
        }
        points.sort();
        Points { resource, points }
    }

    /// How many points there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}

fn attributes<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = kvs
        .map(|kv| (kv.key.as_str().to_string(), format!("{:?}", kv.value)))
        .collect();
    out.sort();
    out
}

fn push<T: Copy>(
    out: &mut Vec<Point>,
    data: &MetricData<T>,
    point: impl Fn(String, Option<SystemTime>, Vec<(String, String)>, Vec<u64>) -> Point,
    bits: impl Fn(T) -> u64,
) {
    match data {
        MetricData::Sum(sum) => {
            let kind = format!(
                "sum monotonic={} {:?}",
                sum.is_monotonic(),
                sum.temporality()
            );
            for p in sum.data_points() {
                out.push(point(
                    kind.clone(),
                    Some(sum.start_time()),
                    attributes(p.attributes()),
                    vec![bits(p.value())],
                ));
            }
        }
        MetricData::Gauge(gauge) => {
            for p in gauge.data_points() {
                out.push(point(
                    "gauge".to_string(),
                    None,
                    attributes(p.attributes()),
                    vec![bits(p.value())],
                ));
            }
        }
        MetricData::Histogram(histogram) => {
            let kind = format!("histogram {:?}", histogram.temporality());
            for p in histogram.data_points() {
                let mut values = vec![p.count(), bits(p.sum())];
                values.extend([p.min(), p.max()].map(|m| m.map_or(u64::MAX, &bits)));
                values.extend(p.bounds().map(f64::to_bits));
                values.extend(p.bucket_counts());
                out.push(point(
                    kind.clone(),
                    Some(histogram.start_time()),
                    attributes(p.attributes()),
                    values,
                ));
            }
        }
        MetricData::ExponentialHistogram(histogram) => {
            // Survey makes none; were there any, each export would differ.
            let kind = format!("exponential histogram {:?}", histogram.temporality());
            for p in histogram.data_points() {
                out.push(point(
                    kind.clone(),
                    Some(histogram.time()),
                    attributes(p.attributes()),
                    vec![p.count() as u64],
                ));
            }
        }
    }
}

/// The last export the collector accepted whole.
#[derive(Debug)]
struct Accepted {
    points: Points,
    /// When, on survey's clock.
    at: Instant,
    /// When, in seconds since the Unix epoch (for people).
    at_unix_secs: u64,
}

/// What to do with an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send it.
    Send,
    /// Leave it out: it equals the export accepted at `since_unix_secs`;
    /// the next heartbeat is due in `heartbeat_in`.
    Skip {
        since_unix_secs: u64,
        heartbeat_in: Duration,
    },
}

/// The heartbeat's state: the last export the collector accepted whole.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    /// `None`: every export is sent.
    every: Option<Duration>,
    accepted: Mutex<Option<Accepted>>,
    /// The export being made is the final one of a shutdown: it is sent
    /// only when something changed, heartbeat due or not.
    final_export: AtomicBool,
    /// Whether an export was left out yet (the host's log says so once).
    announced: AtomicBool,
}

impl Heartbeat {
    pub(crate) fn new(every: Option<Duration>) -> Heartbeat {
        Heartbeat {
            every,
            accepted: Mutex::new(None),
            final_export: AtomicBool::new(false),
            announced: AtomicBool::new(false),
        }
    }

    /// Whether unchanged exports may be left out at all.
    pub(crate) fn enabled(&self) -> bool {
        self.every.is_some()
    }

    /// The next export is the final one of a shutdown.
    pub(crate) fn final_export(&self) {
        self.final_export.store(true, Ordering::SeqCst);
    }

    /// Whether to send an export of `points` at `now` (survey's clock).
    pub(crate) fn decide(&self, points: &Points, now: Instant) -> Decision {
        let accepted = self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        decide(
            self.every,
            accepted.as_ref(),
            points,
            now,
            self.final_export.load(Ordering::SeqCst),
        )
    }

    /// The collector accepted an export of `points` whole at `now`.
    pub(crate) fn accepted(&self, points: Points, now: Instant) {
        let at_unix_secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Ok(mut accepted) = self.accepted.lock() {
            *accepted = Some(Accepted {
                points,
                at: now,
                at_unix_secs,
            });
        }
    }

    /// An export failed or had points rejected: nothing is taken as held
    /// by the collector, so the next export is sent in full.
    pub(crate) fn failed(&self) {
        if let Ok(mut accepted) = self.accepted.lock() {
            *accepted = None;
        }
    }

    /// An export was left out; whether it is the first (of the process).
    pub(crate) fn skipped(&self) -> bool {
        !self.announced.swap(true, Ordering::SeqCst)
    }
}

/// The rule, pure: send unless heartbeats are on, the collector accepted
/// an export with these very points, and (but for the final export) the
/// heartbeat is not due yet.
fn decide(
    every: Option<Duration>,
    accepted: Option<&Accepted>,
    points: &Points,
    now: Instant,
    final_export: bool,
) -> Decision {
    let (Some(every), Some(accepted)) = (every, accepted) else {
        return Decision::Send;
    };
    if accepted.points != *points {
        return Decision::Send;
    }
    let waited = now.saturating_duration_since(accepted.at);
    if waited >= every && !final_export {
        return Decision::Send;
    }
    Decision::Skip {
        since_unix_secs: accepted.at_unix_secs,
        heartbeat_in: every.saturating_sub(waited),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
    use std::sync::Arc;

    /// Keeps the points of each export.
    #[derive(Debug, Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Points>>>);

    impl PushMetricExporter for Capture {
        async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
            self.0.lock().unwrap().push(Points::of(metrics));
            Ok(())
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    /// Collections of a provider with one counter, one histogram and one
    /// observable gauge whose value the test sets.
    struct Fixture {
        provider: SdkMeterProvider,
        exporter: Capture,
        counter: opentelemetry::metrics::Counter<u64>,
        histogram: opentelemetry::metrics::Histogram<f64>,
        gauge_value: std::sync::Arc<std::sync::atomic::AtomicU64>,
        _gauge: opentelemetry::metrics::ObservableGauge<u64>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let exporter = Capture::default();
            let reader = PeriodicReader::builder(exporter.clone())
                .with_interval(Duration::from_secs(3600))
                .build();
            let provider = SdkMeterProvider::builder().with_reader(reader).build();
            let meter = provider.meter("t");
            let gauge_value = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
            let value = gauge_value.clone();
            Fixture {
                counter: meter.u64_counter("c").build(),
                histogram: meter.f64_histogram("h").build(),
                _gauge: meter
                    .u64_observable_gauge("g")
                    .with_callback(move |o| {
                        o.observe(value.load(Ordering::SeqCst), &[KeyValue::new("m", "a")]);
                    })
                    .build(),
                gauge_value,
                exporter,
                provider,
            }
        }

        fn collect(&self) -> Points {
            self.provider.force_flush().unwrap();
            let exported = self.exporter.0.lock().unwrap();
            exported.last().expect("a collection").clone()
        }
    }

    #[test]
    fn only_point_times_may_differ_between_equal_exports() {
        let f = Fixture::new();
        f.counter.add(1, &[KeyValue::new("m", "a")]);
        f.histogram.record(3.0, &[KeyValue::new("m", "a")]);
        let first = f.collect();
        assert_eq!(first.len(), 3);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(f.collect(), first, "nothing changed but the time");
        f.counter.add(1, &[KeyValue::new("m", "a")]);
        let counted = f.collect();
        assert_ne!(counted, first, "a count");
        f.histogram.record(3.0, &[KeyValue::new("m", "a")]);
        let recorded = f.collect();
        assert_ne!(recorded, counted, "a histogram value");
        f.gauge_value.store(2, Ordering::SeqCst);
        let gauged = f.collect();
        assert_ne!(gauged, recorded, "a gauge value");
        f.counter.add(0, &[KeyValue::new("m", "b")]);
        assert_ne!(f.collect(), gauged, "a stream that appeared");
    }

    fn accepted(points: &Points, at: Instant) -> Accepted {
        Accepted {
            points: points.clone(),
            at,
            at_unix_secs: 1000,
        }
    }

    #[test]
    fn unchanged_exports_wait_for_the_heartbeat_and_changes_do_not() {
        let f = Fixture::new();
        f.counter.add(1, &[]);
        let same = f.collect();
        f.counter.add(1, &[]);
        let changed = f.collect();
        let t0 = Instant::now();
        let hour = Some(Duration::from_secs(3600));
        let at = |secs| t0 + Duration::from_secs(secs);
        let last = accepted(&same, t0);
        // Heartbeats off, or nothing accepted yet: always sent.
        assert_eq!(
            decide(None, Some(&last), &same, at(15), false),
            Decision::Send
        );
        assert_eq!(decide(hour, None, &same, at(15), false), Decision::Send);
        // Unchanged: left out until the heartbeat is due.
        assert_eq!(
            decide(hour, Some(&last), &same, at(15), false),
            Decision::Skip {
                since_unix_secs: 1000,
                heartbeat_in: Duration::from_secs(3585)
            }
        );
        assert_eq!(
            decide(hour, Some(&last), &same, at(3600), false),
            Decision::Send
        );
        // Changed: sent at once.
        assert_eq!(
            decide(hour, Some(&last), &changed, at(15), false),
            Decision::Send
        );
        // The final export: sent only when something changed.
        assert!(matches!(
            decide(hour, Some(&last), &same, at(7200), true),
            Decision::Skip { .. }
        ));
        assert_eq!(
            decide(hour, Some(&last), &changed, at(15), true),
            Decision::Send
        );
        assert_eq!(decide(hour, None, &same, at(15), true), Decision::Send);
    }

    #[test]
    fn a_failure_is_never_accepted_and_the_next_export_is_sent_in_full() {
        let f = Fixture::new();
        let points = f.collect();
        let heartbeat = Heartbeat::new(Some(Duration::from_secs(3600)));
        let now = Instant::now();
        assert_eq!(heartbeat.decide(&points, now), Decision::Send);
        heartbeat.accepted(points.clone(), now);
        assert!(matches!(
            heartbeat.decide(&points, now),
            Decision::Skip { .. }
        ));
        assert!(heartbeat.skipped(), "the first: the log says so");
        assert!(!heartbeat.skipped(), "once");
        heartbeat.failed();
        assert_eq!(heartbeat.decide(&points, now), Decision::Send);
    }

    /// A clock given through `Setup::clock` times the heartbeat: moved an
    /// hour forward, the heartbeat is due.
    #[test]
    fn the_heartbeat_is_timed_on_surveys_clock() {
        use crate::clock::{Clock, SurveyClock};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        struct Moved(Instant, AtomicU64);
        impl Clock for Moved {
            fn now(&self) -> Instant {
                self.0 + Duration::from_secs(self.1.load(Ordering::Relaxed))
            }
        }
        let moved = Arc::new(Moved(Instant::now(), AtomicU64::new(0)));
        let clock = SurveyClock::new(moved.clone());
        let f = Fixture::new();
        let points = f.collect();
        let heartbeat = Heartbeat::new(Some(Duration::from_secs(3600)));
        heartbeat.accepted(points.clone(), clock.now());
        assert!(matches!(
            heartbeat.decide(&points, clock.now()),
            Decision::Skip { .. }
        ));
        moved.1.store(3600, Ordering::Relaxed);
        assert_eq!(heartbeat.decide(&points, clock.now()), Decision::Send);
    }
}
