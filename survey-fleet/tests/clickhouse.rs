//! The scale-out path gives the same answers: a fleet's exports (lifecycle
//! and inference metrics), captured, go both to `survey-collector serve`
//! and, over HTTPS with a bearer token, to `otelcol-survey` (the Collector
//! built from the official modules by `deploy/otelcol/build.sh`) running
//! the shipped `deploy/otelcol/config.yaml` with `auth.yaml`, whose real
//! clickhouse exporter writes into a real ClickHouse engine (chdb, behind
//! the test-only HTTP stand-in `deploy/clickhouse/standin/`) holding
//! `deploy/clickhouse/schema.sql` with its views firing. The queries of
//! `deploy/clickhouse/queries/`, one per question of survey-collector's
//! report, run by `deploy/clickhouse/report.py` over ClickHouse's HTTP
//! interface, must return what `survey-collector report --format json`
//! returns, for several windows: the same rows in the same order, integers
//! equal, floats equal to 1e-9 relative. The views must hold exactly the
//! streams survey-collector stored, node by node and metric by metric;
//! every point of the honest exports must pass the Collector's config, and
//! the rows the exporter wrote carry survey's tables, units, bounds and
//! empty descriptions.
//!
//! The exports are replayed with what a real fleet does to a collector:
//! values repeated export after export, retried requests, requests out of
//! order, a node restarting (a second start time in the same process), and
//! two identical nodes started in the same second (told apart only by
//! `service.instance.id`). They are spread over days, so windows cut
//! streams. Among them come exports survey never sends, each from a node
//! of its own, that survey-collector rejects (another scope, scope
//! attributes, schema URLs, another unit, exemplars, flags, fractional or
//! negative values, no start time, a start after the time, a time days
//! ahead, a counter not monotonic, a gauge sent as a counter; an attribute
//! key outside survey's, a failure reason on the launch counter, a launch
//! kind, context bucket or failure reason survey has none of; and of the
//! inference metrics: a request outcome survey has none of, a request
//! without one, an outcome or a launch kind on the inference histograms,
//! other bounds or another unit on them): ClickHouse must not count them
//! either, and the Collector's config must drop exactly the kinds
//! [`PASSED_BY_THE_CONFIG`] does not name.
//!
//! The SQL's lists (metrics with their kinds, units, bucket bounds and
//! attribute keys; the closed enums' values) are checked against survey's
//! schema, through the functions the views call. The Collector config is
//! read as text, and the lists in it checked likewise: the metrics' names,
//! units and data types, the attribute and resource keys, the keys each
//! metric may and must carry, the closed enums' patterns (what its OTTL
//! does with them is what the replay above runs). The query files are
//! checked against survey-collector's questions.
//!
//! chdb comes from the Python package registry, pinned in
//! `deploy/clickhouse/requirements.txt`, in a virtual environment under
//! `target/` that `deploy/clickhouse/venv.sh` creates on first use;
//! `otelcol-survey` is built on first use too (Go and the Go module proxy).

mod support;

use support::pipeline::{
    CLICKHOUSE_PASSWORD, CLICKHOUSE_USER, ClickHouse, Collector, TOKEN, Tls, chdb_python,
    point_groups,
};
use tokio::task::block_in_place;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Metric, Sum, exemplar, metric, number_data_point,
};
use prost::Message;
use serde_json::Value as Json;
use survey::schema::{
    self, AttributeKey, ContextBucket, FailureKind, LaunchKind, METRICS, MetricKind,
    RequestOutcome, ResourceKey,
};
use survey_collector::MetricKeys;
use survey_collector::report::QUESTIONS;
use survey_collector::{Day, Report, ReportOptions, Store};
use survey_fleet::fleet::{self, Fleet};
use survey_fleet::node::Launch;
use survey_test_support::binaries::workspace;
use survey_test_support::collector::{collector, collector_reports, export};
use survey_test_support::{Receiver, TestDir, wait_until};

const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;
/// The instance id of the node identical to node 0.
const TWIN: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";
/// The dishonest kinds (of [`dishonest`]) some of whose points pass the
/// Collector's config: values it cannot judge (numbers, bucket counts and
/// bounds, times), which the views do not count; and "counters not
/// monotonic", whose counters the config drops while the export's other,
/// honest points pass. Every other kind is dropped whole by the config. The
/// "What is proven" in deploy/README.md says the same.
const PASSED_BY_THE_CONFIG: &[&str] = &[
    "fractional values, negative sums",
    "bucket counts whose sum wraps around to the count (histograms only)",
    "a histogram min above its max (histograms only)",
    "no start time",
    "a start after the time",
    "a time days ahead",
    "counters not monotonic",
    "other bucket bounds on the decode histogram (it only)",
];

/// Data points in `request`.
fn point_count(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics.iter())
        .flat_map(|sm| sm.metrics.iter())
        .map(|m| match &m.data {
            Some(metric::Data::Sum(d)) => d.data_points.len(),
            Some(metric::Data::Gauge(d)) => d.data_points.len(),
            Some(metric::Data::Histogram(d)) => d.data_points.len(),
            Some(metric::Data::ExponentialHistogram(d)) => d.data_points.len(),
            Some(metric::Data::Summary(d)) => d.data_points.len(),
            None => 0,
        })
        .sum()
}

fn instance_id(request: &ExportMetricsServiceRequest) -> String {
    request
        .resource_metrics
        .iter()
        .flat_map(|rm| rm.resource.iter().flat_map(|r| r.attributes.iter()))
        .find(|kv| kv.key == "service.instance.id")
        .and_then(|kv| kv.value.as_ref()?.value.clone())
        .map(|v| match v {
            any_value::Value::StringValue(s) => s,
            other => format!("{other:?}"),
        })
        .expect("every export carries service.instance.id")
}

/// Applies `f` to every metric of `request`.
fn each_metric(request: &mut ExportMetricsServiceRequest, mut f: impl FnMut(&mut Metric)) {
    request
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| rm.scope_metrics.iter_mut())
        .flat_map(|sm| sm.metrics.iter_mut())
        .for_each(&mut f);
}

/// The fields every data point of survey's kinds has (sums, gauges and
/// histograms), to change.
struct Point<'a> {
    start: &'a mut u64,
    time: &'a mut u64,
    attributes: &'a mut Vec<KeyValue>,
    exemplars: &'a mut Vec<Exemplar>,
    flags: &'a mut u32,
}

/// Applies `f` to every data point of `request`.
fn each_point(request: &mut ExportMetricsServiceRequest, mut f: impl FnMut(Point<'_>)) {
    each_metric(request, |m| match &mut m.data {
        Some(
            metric::Data::Sum(Sum { data_points, .. })
            | metric::Data::Gauge(Gauge { data_points, .. }),
        ) => {
            for p in data_points {
                f(Point {
                    start: &mut p.start_time_unix_nano,
                    time: &mut p.time_unix_nano,
                    attributes: &mut p.attributes,
                    exemplars: &mut p.exemplars,
                    flags: &mut p.flags,
                });
            }
        }
        Some(metric::Data::Histogram(h)) => {
            for p in &mut h.data_points {
                f(Point {
                    start: &mut p.start_time_unix_nano,
                    time: &mut p.time_unix_nano,
                    attributes: &mut p.attributes,
                    exemplars: &mut p.exemplars,
                    flags: &mut p.flags,
                });
            }
        }
        _ => {}
    });
}

/// Applies `f` to every data point's (start, time) of `request`.
fn retime(request: &mut ExportMetricsServiceRequest, f: impl Fn(&mut u64, &mut u64)) {
    each_point(request, |p| f(p.start, p.time));
}

fn set_instance_id(request: &mut ExportMetricsServiceRequest, id: &str) {
    for kv in request
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| rm.resource.iter_mut().flat_map(|r| r.attributes.iter_mut()))
    {
        if kv.key == "service.instance.id" {
            kv.value = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(any_value::Value::StringValue(id.to_string())),
            });
        }
    }
}

/// The fleet's exports as a collector receives them over days: each node's
/// k-th export of n moved n - 1 - k days back (its start n days back), a
/// twin of node 0, a restart of node 1, every fifth request retried, and
/// the whole in a shuffled order.
fn replayed(captured: Vec<ExportMetricsServiceRequest>) -> Vec<ExportMetricsServiceRequest> {
    let mut by_node: BTreeMap<String, Vec<ExportMetricsServiceRequest>> = BTreeMap::new();
    for request in captured {
        by_node
            .entry(instance_id(&request))
            .or_default()
            .push(request);
    }
    let mut nodes: Vec<Vec<ExportMetricsServiceRequest>> = by_node.into_values().collect();
    for requests in &mut nodes {
        let n = requests.len() as u64;
        for (k, request) in requests.iter_mut().enumerate() {
            let back = (n - 1 - k as u64) * NANOS_PER_DAY;
            retime(request, |start, time| {
                *start -= n * NANOS_PER_DAY;
                *time -= back;
            });
        }
    }
    let mut twin = nodes[0].clone();
    twin.iter_mut().for_each(|r| set_instance_id(r, TWIN));
    // The same process, survey restarted a second later: new streams.
    let mut restarted = nodes[1].clone();
    restarted
        .iter_mut()
        .for_each(|r| retime(r, |start, _| *start += 1_000_000_000));
    let mut all: Vec<ExportMetricsServiceRequest> = nodes
        .into_iter()
        .flatten()
        .chain(twin)
        .chain(restarted)
        .collect();
    let retried: Vec<_> = all.iter().step_by(5).cloned().collect();
    all.extend(retried);
    // A seeded shuffle (xorshift), so a failure reproduces.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..all.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        all.swap(i, (state % (i as u64 + 1)) as usize);
    }
    all
}

/// Keeps the metrics whose name `keep` takes, alone, so that a change to
/// them is all the export holds.
fn only(request: &mut ExportMetricsServiceRequest, keep: impl Fn(&str) -> bool) {
    for sm in request
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| rm.scope_metrics.iter_mut())
    {
        sm.metrics.retain(|m| keep(&m.name));
    }
}

/// Applies `f` to every data point's attributes of `request`.
fn each_attributes(
    request: &mut ExportMetricsServiceRequest,
    mut f: impl FnMut(&mut Vec<KeyValue>),
) {
    each_point(request, |p| f(p.attributes));
}

/// Sets `key` to `value` wherever a data point of `request` carries it.
fn replace_value(request: &mut ExportMetricsServiceRequest, key: &str, value: &str) {
    each_attributes(request, |attributes| {
        for a in attributes.iter_mut().filter(|a| a.key == key) {
            *a = kv(key, value);
        }
    })
}

/// A string attribute.
fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// Whether `name` is one of survey's metrics, of `kind`.
fn is_kind(name: &str, kind: MetricKind) -> bool {
    schema::metric(name).is_some_and(|m| m.kind == kind)
}

/// Whether survey may put `key` on the points of metric `name`.
fn carries(name: &str, key: AttributeKey) -> bool {
    schema::metric(name).is_some_and(|m| MetricKeys::of_metric(m).allows(key))
}

fn is_inference_histogram(name: &str) -> bool {
    schema::metric(name).is_some_and(|m| m.prompt_shape && m.kind == MetricKind::Histogram)
}

/// Copies of `template` that survey never sends, each changed one way and
/// from a node of its own, with what was changed: survey-collector rejects
/// their points.
fn dishonest(
    template: &ExportMetricsServiceRequest,
) -> Vec<(&'static str, ExportMetricsServiceRequest)> {
    type Change = fn(&mut ExportMetricsServiceRequest);
    /// Keeps the histograms alone, so that a change to them is all the
    /// export holds.
    fn only_histograms(r: &mut ExportMetricsServiceRequest) {
        only(r, |name| is_kind(name, MetricKind::Histogram));
    }
    fn exemplar(time: u64) -> Exemplar {
        Exemplar {
            time_unix_nano: time,
            value: Some(exemplar::Value::AsInt(1)),
            ..Exemplar::default()
        }
    }
    let changes: Vec<(&str, Change)> = vec![
        ("another scope", |r| {
            r.resource_metrics[0].scope_metrics[0]
                .scope
                .as_mut()
                .unwrap()
                .name = "other".into()
        }),
        ("scope attributes", |r| {
            let scope = r.resource_metrics[0].scope_metrics[0]
                .scope
                .as_mut()
                .unwrap();
            scope.attributes.push(kv("k", "v"));
        }),
        ("a scope schema URL", |r| {
            r.resource_metrics[0].scope_metrics[0].schema_url = "s".into()
        }),
        ("a resource schema URL", |r| {
            r.resource_metrics[0].schema_url = "s".into()
        }),
        ("another unit", |r| each_metric(r, |m| m.unit = "1".into())),
        ("exemplars", |r| {
            each_point(r, |p| p.exemplars.push(exemplar(*p.time)))
        }),
        ("flags", |r| each_point(r, |p| *p.flags = 1)),
        ("fractional values, negative sums", |r| {
            let fraction = |v: &mut Option<number_data_point::Value>| {
                if let Some(number_data_point::Value::AsInt(i)) = *v {
                    *v = Some(number_data_point::Value::AsDouble(i as f64 + 0.5));
                }
            };
            each_metric(r, |m| match &mut m.data {
                Some(metric::Data::Sum(sum)) => sum
                    .data_points
                    .iter_mut()
                    .for_each(|p| fraction(&mut p.value)),
                Some(metric::Data::Gauge(g)) => g
                    .data_points
                    .iter_mut()
                    .for_each(|p| fraction(&mut p.value)),
                Some(metric::Data::Histogram(h)) => {
                    h.data_points.iter_mut().for_each(|p| p.sum = Some(-1.0))
                }
                _ => {}
            })
        }),
        ("a scope version with path text", |r| {
            r.resource_metrics[0].scope_metrics[0]
                .scope
                .as_mut()
                .unwrap()
                .version = "1.0/home/alice".into()
        }),
        (
            "bucket counts whose sum wraps around to the count (histograms only)",
            |r| {
                only_histograms(r);
                each_metric(r, |m| {
                    if let Some(metric::Data::Histogram(h)) = &mut m.data {
                        for p in &mut h.data_points {
                            let first = p.bucket_counts[0];
                            p.bucket_counts[0] = u64::MAX;
                            p.bucket_counts[1] = p.bucket_counts[1] + first + 1;
                        }
                    }
                })
            },
        ),
        ("a histogram min above its max (histograms only)", |r| {
            only_histograms(r);
            each_metric(r, |m| {
                if let Some(metric::Data::Histogram(h)) = &mut m.data {
                    for p in &mut h.data_points {
                        p.min = Some(5.0);
                        p.max = Some(3.0);
                    }
                }
            })
        }),
        ("no start time", |r| retime(r, |start, _| *start = 0)),
        ("a start after the time", |r| {
            retime(r, |start, time| *start = *time + 2_000_000_000)
        }),
        ("a time days ahead", |r| {
            retime(r, |start, time| {
                *start += 3 * NANOS_PER_DAY;
                *time += 3 * NANOS_PER_DAY;
            })
        }),
        ("counters not monotonic", |r| {
            each_metric(r, |m| {
                if let Some(metric::Data::Sum(sum)) = &mut m.data {
                    sum.is_monotonic = false;
                }
            })
        }),
        ("gauges sent as counters (and nothing else)", |r| {
            only(r, |name| is_kind(name, MetricKind::Gauge));
            each_metric(r, |m| {
                if let Some(metric::Data::Gauge(g)) = &m.data {
                    let mut data_points = g.data_points.clone();
                    data_points
                        .iter_mut()
                        .for_each(|p| p.start_time_unix_nano = p.time_unix_nano - 1_000_000_000);
                    m.data = Some(metric::Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    }));
                }
            })
        }),
        (
            "a request outcome survey has none of (the request counter only)",
            |r| {
                only(r, |name| name == schema::INFERENCE_REQUESTS_TOTAL);
                replace_value(r, "mesh_llm.request_outcome", "cancelled")
            },
        ),
        (
            "requests without their outcome (the request counter only)",
            |r| {
                only(r, |name| name == schema::INFERENCE_REQUESTS_TOTAL);
                each_attributes(r, |attributes| {
                    attributes.retain(|a| a.key != "mesh_llm.request_outcome")
                })
            },
        ),
        ("an outcome on the inference histograms (they only)", |r| {
            only(r, is_inference_histogram);
            each_attributes(r, |attributes| {
                attributes.push(kv("mesh_llm.request_outcome", "ok"))
            })
        }),
        (
            "a launch kind on the inference histograms (they only)",
            |r| {
                only(r, is_inference_histogram);
                each_attributes(r, |attributes| {
                    attributes.push(kv("mesh_llm.launch_kind", "startup"))
                })
            },
        ),
        (
            "other bucket bounds on the decode histogram (it only)",
            |r| {
                only(r, |name| name == schema::INFERENCE_DECODE_TOKENS_PER_S);
                each_metric(r, |m| {
                    if let Some(metric::Data::Histogram(h)) = &mut m.data {
                        h.data_points
                            .iter_mut()
                            .for_each(|p| p.explicit_bounds[0] = 0.5);
                    }
                })
            },
        ),
        ("another unit on the speed histograms (they only)", |r| {
            only(r, |name| {
                name == schema::INFERENCE_DECODE_TOKENS_PER_S
                    || name == schema::INFERENCE_PREFILL_TOKENS_PER_S
            });
            each_metric(r, |m| m.unit = "tokens/s".into())
        }),
        ("an attribute key outside survey's", |r| {
            each_attributes(r, |attributes| {
                attributes.push(kv("mesh_llm.hostname", "alice-laptop"))
            })
        }),
        (
            "a failure reason on the launch counter (it only), which never carries one",
            |r| {
                only(r, |name| name == schema::LAUNCH_TOTAL);
                each_attributes(r, |attributes| {
                    attributes.push(kv("mesh_llm.failure_reason", "spawn_failed"))
                })
            },
        ),
        (
            "a launch kind survey has none of (the metrics that carry one only)",
            |r| {
                only(r, |name| carries(name, AttributeKey::LaunchKind));
                replace_value(r, "mesh_llm.launch_kind", "warm_start")
            },
        ),
        (
            "a context bucket survey has none of (the metrics that carry one only)",
            |r| {
                only(r, |name| carries(name, AttributeKey::ContextBucket));
                replace_value(r, "mesh_llm.context_bucket", "<=4k")
            },
        ),
        (
            "a failure reason survey has none of (the launch-time histogram only)",
            |r| {
                // Every launch's time, not only a failed one's, with a
                // reason survey never gives.
                only(r, |name| name == schema::LAUNCH_DURATION_MS);
                each_attributes(r, |attributes| {
                    attributes.retain(|a| a.key != "mesh_llm.failure_reason");
                    attributes.push(kv("mesh_llm.failure_reason", "out_of_memory"));
                })
            },
        ),
    ];
    changes
        .into_iter()
        .enumerate()
        .map(|(i, (what, change))| {
            let mut request = template.clone();
            set_instance_id(&mut request, &format!("d1540e57-0000-4000-8000-{i:012x}"));
            change(&mut request);
            (what, request)
        })
        .collect()
}

/// Numbers: integers equal, floats equal to 1e-9 relative; everything else
/// equal, objects by key.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
            }
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The requests of every outcome `requests` (one node's exports) count
/// by the counting rule: each stream's largest value, summed.
fn requests_counted(requests: &[&ExportMetricsServiceRequest]) -> f64 {
    let mut streams: BTreeMap<(u64, String), f64> = BTreeMap::new();
    for request in requests {
        for sm in request
            .resource_metrics
            .iter()
            .flat_map(|rm| rm.scope_metrics.iter())
        {
            for m in sm
                .metrics
                .iter()
                .filter(|m| m.name == schema::INFERENCE_REQUESTS_TOTAL)
            {
                let Some(metric::Data::Sum(sum)) = &m.data else {
                    continue;
                };
                for p in &sum.data_points {
                    let value = match p.value {
                        Some(number_data_point::Value::AsInt(v)) => v as f64,
                        Some(number_data_point::Value::AsDouble(v)) => v,
                        None => 0.0,
                    };
                    let key = (p.start_time_unix_nano, format!("{:?}", p.attributes));
                    let largest = streams.entry(key).or_default();
                    *largest = largest.max(value);
                }
            }
        }
    }
    streams.values().sum()
}

/// What the real exporter wrote of the honest nodes' metrics (`rows`,
/// read back from ClickHouse with the table each came from): every metric
/// of the schema, in the table of its kind, with its unit and bounds, and
/// the request outcome on the request counter only.
fn check_rows(rows: &[Json]) {
    let mut seen = BTreeMap::new();
    for row in rows {
        let name = row["MetricName"].as_str().unwrap();
        let spec = schema::metric(name).unwrap_or_else(|| panic!("{name}"));
        let table = match spec.kind {
            MetricKind::Counter => "otel_metrics_sum",
            MetricKind::Gauge => "otel_metrics_gauge",
            MetricKind::Histogram => "otel_metrics_histogram",
        };
        assert_eq!(row["Table"], table, "{name}");
        assert_eq!(row["MetricUnit"], spec.unit, "{name}");
        assert_eq!(
            row["MetricDescription"], "",
            "{name}: descriptions arrive empty"
        );
        let outcome = &row["Attributes"]["mesh_llm.request_outcome"];
        if spec.name == schema::INFERENCE_REQUESTS_TOTAL {
            let outcome = outcome.as_str().unwrap();
            assert!(
                RequestOutcome::ALL.iter().any(|o| o.as_str() == outcome),
                "{outcome}"
            );
        } else {
            assert!(outcome.is_null(), "{name}: {row}");
        }
        if spec.kind != MetricKind::Gauge {
            // (The histogram table has no IsMonotonic: read as true.)
            assert_eq!(row["IsMonotonic"], true, "{name}");
            assert_eq!(row["AggregationTemporality"], 2, "{name}");
        }
        if spec.kind == MetricKind::Histogram {
            let bounds: Vec<f64> = serde_json::from_value(row["ExplicitBounds"].clone()).unwrap();
            assert_eq!(bounds, spec.boundaries, "{name}");
            let counts: Vec<u64> = serde_json::from_value(row["BucketCounts"].clone()).unwrap();
            assert_eq!(counts.len(), bounds.len() + 1, "{name}");
            assert_eq!(
                counts.iter().sum::<u64>(),
                row["Count"].as_u64().unwrap(),
                "{name}"
            );
        }
        *seen.entry(name.to_string()).or_insert(0) += 1;
    }
    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
    expected.sort();
    assert_eq!(names, expected, "metrics among the exporter's rows");
}

/// The raw rows of the honest nodes (not `d1540e57-...`), from the three
/// tables, as [`check_rows`] reads them.
fn honest_rows(clickhouse: &ClickHouse) -> Vec<Json> {
    let columns = "MetricName, MetricUnit, MetricDescription, Attributes";
    let honest = "WHERE NOT startsWith(ResourceAttributes['service.instance.id'], 'd1540e57-')";
    clickhouse.rows(
        &format!(
            "SELECT 'otel_metrics_sum' AS Table, {columns}, IsMonotonic, AggregationTemporality,
                    [] AS ExplicitBounds, [] AS BucketCounts, 0 AS Count
             FROM survey.otel_metrics_sum {honest}
             UNION ALL
             SELECT 'otel_metrics_gauge', {columns}, false, 0, [], [], 0
             FROM survey.otel_metrics_gauge {honest}
             UNION ALL
             SELECT 'otel_metrics_histogram', {columns}, true, AggregationTemporality,
                    ExplicitBounds, BucketCounts, Count
             FROM survey.otel_metrics_histogram {honest}"
        ),
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_answers_equal_the_collector_s() {
    let python = chdb_python();
    let dir = TestDir::new("clickhouse-test");

    // A fleet's exports, captured.
    let receiver = Receiver::start();
    let endpoint = receiver.endpoint();
    let fleet = Fleet {
        nodes: 8,
        launches: 10,
        seed: 3,
        parallel: 4,
    };
    let launches = tokio::task::spawn_blocking(move || {
        fleet::run(
            Path::new(env!("CARGO_BIN_EXE_survey-fleet")),
            &endpoint,
            fleet,
        )
    })
    .await
    .unwrap()
    .expect("the fleet runs");
    assert_eq!(launches.len(), 80);
    let captured: Vec<ExportMetricsServiceRequest> = receiver
        .requests()
        .into_iter()
        .map(|r| r.decoded.expect("every export decodes"))
        .collect();
    receiver.stop();
    // The requests each node served, as its exports count them (the twin
    // repeats the first node's, the restart the second's).
    let mut by_node: BTreeMap<String, Vec<&ExportMetricsServiceRequest>> = BTreeMap::new();
    for request in &captured {
        by_node
            .entry(instance_id(request))
            .or_default()
            .push(request);
    }
    let served: Vec<f64> = by_node.values().map(|r| requests_counted(r)).collect();
    let truth: usize = launches.iter().map(|l: &Launch| l.requests.len()).sum();
    assert_eq!(served.iter().sum::<f64>(), truth as f64);
    assert!(truth > 50, "{truth} requests served");
    let repeated = served[0] + served[1];
    let sends = replayed(captured);
    // The export with the most points, as the template of dishonest ones
    // (its start n days back, its time today).
    let template = sends
        .iter()
        .max_by_key(|r| r.encoded_len())
        .unwrap()
        .clone();
    let lies = dishonest(&template);

    // Into survey-collector, over HTTP.
    let server = collector(&dir).await;
    for (request, lie) in sends
        .iter()
        .map(|r| (r, None))
        .chain(lies.iter().map(|(what, r)| (r, Some(what))))
    {
        let answer = export(&server, request).await;
        assert_eq!(answer.status, 200);
        let rejected = answer.rejected();
        // Honest exports are taken whole; each dishonest one loses points.
        assert_eq!(
            rejected == 0,
            lie.is_none(),
            "{rejected} points rejected of {}",
            lie.map_or("an honest export", |what| what)
        );
    }
    server.shutdown().await;

    // Into ClickHouse through the real pipeline: over HTTPS with the
    // token, to otelcol-survey running the shipped config, whose clickhouse
    // exporter writes into chdb holding the shipped schema.
    let tls = Tls::create(&dir);
    let clickhouse = block_in_place(|| ClickHouse::start(&dir.join("clickhouse")));
    let collector =
        block_in_place(|| Collector::start(&dir.join("otelcol"), &tls, &clickhouse, ""));
    let client = tls.client();
    let everything: Vec<ExportMetricsServiceRequest> = sends
        .iter()
        .chain(lies.iter().map(|(_, r)| r))
        .cloned()
        .collect();
    send_all(&client, &collector, &everything).await;
    let exported = block_in_place(|| collector.drained(Duration::from_secs(120)));
    let stored = block_in_place(|| clickhouse.rows_stored(None));
    assert_eq!(stored, exported, "rows stored, points the exporter sent");
    check_rows(&block_in_place(|| honest_rows(&clickhouse)));
    // What passed the config: every point of the honest exports, and of
    // each dishonest kind what deploy/README.md says.
    let mut passed_by_node: BTreeMap<String, usize> = BTreeMap::new();
    for request in collector.passed() {
        for (node, ..) in point_groups(&request) {
            *passed_by_node.entry(node).or_default() += 1;
        }
    }
    let honest_points: usize = sends.iter().map(point_count).sum();
    let lie_ids: Vec<String> = lies.iter().map(|(_, r)| instance_id(r)).collect();
    let honest_passed: usize = passed_by_node
        .iter()
        .filter(|(node, _)| !lie_ids.contains(node))
        .map(|(_, points)| points)
        .sum();
    assert_eq!(
        honest_passed, honest_points,
        "points of the honest exports that passed"
    );
    let mut kept = Vec::new();
    for ((what, request), id) in lies.iter().zip(&lie_ids) {
        let passed = passed_by_node.get(id).copied().unwrap_or(0);
        eprintln!(
            "{what}: {passed} of {} points passed the config",
            point_count(request)
        );
        if passed > 0 {
            kept.push(*what);
        }
    }
    assert_eq!(
        kept, PASSED_BY_THE_CONFIG,
        "the dishonest kinds the config lets through (to the views, which do not count them)"
    );
    drop(collector);

    let today = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64;
    // Requests a fastest row needs, in windows that give none.
    const MIN_REQUESTS: u64 = 3;
    // (since, until, min_launches, min_nodes, min_requests)
    let windows = [
        (None, None, 0, 1, Some(0)),
        (Some(today - 6), Some(today - 2), 0, 1, None),
        (Some(today - 4), None, 3, 1, Some(6)),
        (None, Some(today - 3), 0, 1, Some(0)),
        (Some(today), None, 0, 1, None),
        (None, None, 0, 3, Some(2)),
    ];
    let mut command = Command::new(&python);
    command
        .arg(workspace().join("deploy/clickhouse/report.py"))
        .arg("--url")
        .arg(clickhouse.url())
        .arg("--user")
        .arg(CLICKHOUSE_USER)
        .env("SURVEY_CLICKHOUSE_PASSWORD", CLICKHOUSE_PASSWORD)
        .arg(format!("--min-requests={MIN_REQUESTS}"))
        .arg("--streams");
    for (since, until, min_launches, min_nodes, min_requests) in windows {
        let date = |d: Option<i64>| d.map(|d| Day(d).to_date()).unwrap_or_default();
        let min_requests = min_requests.map(|n| format!(":{n}")).unwrap_or_default();
        command.arg(format!(
            "--window={}:{}:{min_launches}:{min_nodes}{min_requests}",
            date(since),
            date(until)
        ));
    }
    let mut answers: Vec<Json> =
        String::from_utf8(block_in_place(|| support::stdout_of(&mut command)))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let counted = answers.pop().unwrap();
    assert_eq!(answers.len(), windows.len());

    let store = Store::open_read_only(&dir.join("survey.db")).unwrap();
    let questions: Vec<&str> = QUESTIONS.iter().map(|q| q.key).collect();
    let mut compared_rows = 0;
    let mut compared_fastest = 0;
    let mut suppressed = 0;
    let mut left_out = 0;
    for ((since, until, min_launches, min_nodes, min_requests), ch) in windows.iter().zip(&answers)
    {
        let options = ReportOptions {
            since: since.map(Day),
            until: until.map(Day),
            min_launches: *min_launches,
            min_requests: min_requests.unwrap_or(MIN_REQUESTS),
            min_nodes: *min_nodes,
        };
        let report = Report::build(&store, options).unwrap();
        suppressed += report.suppressed();
        let embedded = report.to_json();
        // Every question, on both sides.
        let keys = |answers: &Json| {
            let mut keys: Vec<String> = answers.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let mut expected: Vec<String> = questions.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(keys(&embedded), expected);
        assert_eq!(keys(ch), expected);
        for key in &questions {
            let (e, c) = (&embedded[key], &ch[key]);
            assert!(
                same(e, c),
                "window {options:?}, {key}:\nsurvey-collector: {e:#}\nClickHouse: {c:#}"
            );
            compared_rows += e.as_array().unwrap().len();
        }
        compared_fastest += embedded["fastest"].as_array().unwrap().len();
        if options.min_requests > 0 {
            let all = Report::build(
                &store,
                ReportOptions {
                    min_requests: 0,
                    ..options
                },
            )
            .unwrap();
            left_out += all.answer("fastest").unwrap().rows.len()
                - report.answer("fastest").unwrap().rows.len();
        }
    }
    // The comparison had something to compare, and the twin and the
    // restart counted: two nodes' 10 launches each count twice, and their
    // requests.
    assert!(compared_rows > 100, "{compared_rows} rows compared");
    assert!(
        compared_fastest > 30,
        "{compared_fastest} fastest rows compared"
    );
    assert!(suppressed > 0, "no window suppressed a row");
    assert!(
        left_out > 0,
        "no window left a fastest row out for its requests"
    );
    let all = Report::build(&store, ReportOptions::default())
        .unwrap()
        .to_json();
    let total = |key: &str, column: &str| -> i64 {
        all[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[column].as_i64().unwrap())
            .sum()
    };
    assert_eq!(
        total("most_launched", "launches"),
        launches.len() as i64 + 2 * fleet.launches as i64
    );
    assert_eq!(total("fastest", "requests") as f64, truth as f64 + repeated);

    // The views hold the streams survey-collector stored, no more, no
    // fewer: of every node (the dishonest ones' refused points in none),
    // of every metric they roll up.
    let stored: Vec<Json> = store
        .connection()
        .prepare(
            "SELECT Node, MetricName, count(*) FROM streams
             WHERE Kind IN ('sum', 'histogram') OR MetricName = ?1
             GROUP BY Node, MetricName ORDER BY Node, MetricName",
        )
        .unwrap()
        .query_map([schema::MODEL_CONTEXT_LENGTH], |r| {
            Ok(serde_json::json!([
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?
            ]))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let counted = counted["streams"].as_array().unwrap();
    let only_in = |a: &[Json], b: &[Json]| -> Vec<Json> {
        a.iter().filter(|s| !b.contains(s)).cloned().collect()
    };
    assert!(
        counted == &stored,
        "[node, metric, streams]\nonly in ClickHouse's views: {:?}\nonly in survey-collector: {:?}",
        only_in(counted, &stored),
        only_in(&stored, counted)
    );
    let dishonest_streams = stored
        .iter()
        .filter(|s| s[0].as_str().unwrap().starts_with("d1540e57-"))
        .count();
    assert!(
        dishonest_streams > 0,
        "no dishonest export kept an honest point"
    );
    drop(store);
}

/// Runs a small fleet and returns its exports as a collector receives
/// them over days ([`replayed`]).
async fn small_fleet_replay(seed: u64) -> Vec<ExportMetricsServiceRequest> {
    let receiver = Receiver::start();
    let endpoint = receiver.endpoint();
    let fleet = Fleet {
        nodes: 3,
        launches: 4,
        seed,
        parallel: 3,
    };
    tokio::task::spawn_blocking(move || {
        fleet::run(
            Path::new(env!("CARGO_BIN_EXE_survey-fleet")),
            &endpoint,
            fleet,
        )
    })
    .await
    .unwrap()
    .expect("the fleet runs");
    let captured = receiver
        .requests()
        .into_iter()
        .map(|r| r.decoded.expect("every export decodes"))
        .collect();
    receiver.stop();
    replayed(captured)
}

/// Sends `requests` to the Collector with the token; each must be taken.
async fn send_all(
    client: &reqwest::Client,
    collector: &Collector,
    requests: &[ExportMetricsServiceRequest],
) {
    for request in requests {
        let answer = client
            .post(collector.metrics_url())
            .header("content-type", "application/x-protobuf")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
}

/// The seven answers ClickHouse gives over `since..until` (days; `None`
/// for no bound), all rows kept.
fn clickhouse_answers(clickhouse: &ClickHouse, since: Option<i64>, until: Option<i64>) -> Json {
    let date = |d: Option<i64>| d.map(|d| Day(d).to_date()).unwrap_or_default();
    let mut command = Command::new(chdb_python());
    command
        .arg(workspace().join("deploy/clickhouse/report.py"))
        .arg("--url")
        .arg(clickhouse.url())
        .arg("--user")
        .arg(CLICKHOUSE_USER)
        .env("SURVEY_CLICKHOUSE_PASSWORD", CLICKHOUSE_PASSWORD)
        .arg(format!("--window={}:{}:0:1:0", date(since), date(until)));
    serde_json::from_slice(&support::stdout_of(&mut command)).unwrap()
}

/// Faults on the way, and what the pipeline loses:
/// 1. ClickHouse down for 30 s mid-replay and back: the exporter's queue
///    and retries bring everything the Collector took, counted once.
/// 2. The Collector stopped with SIGTERM right after the last request it
///    took: it exports what it holds before it ends.
///    The answers after both equal survey-collector's over the same
///    exports.
/// 3. Past the retry bound (shortened here by an overlay; 300 s in the
///    shipped config) the exporter drops the batch: none of its rows
///    arrive; the node's next cumulative export brings its counts.
/// 4. SIGTERM while ClickHouse is down: the batches held are dropped after
///    one last try, as deploy/README.md says (a crash or kill -9 loses them too;
///    that is stated, not tested).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_loses_nothing_it_acknowledged_until_its_bounds() {
    let dir = TestDir::new("clickhouse-faults");
    let sends = small_fleet_replay(11).await;
    let today = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64;
    let windows = [
        (None, None),
        (Some(today - 3), None),
        (None, Some(today - 1)),
    ];
    // The request sent just before SIGTERM (below), from a node of its own.
    let mut last = sends
        .iter()
        .max_by_key(|r| r.encoded_len())
        .unwrap()
        .clone();
    const LAST: &str = "10000000-0000-4000-8000-00000000a57e";
    set_instance_id(&mut last, LAST);
    let all: Vec<ExportMetricsServiceRequest> = sends.iter().chain([&last]).cloned().collect();
    let expected = collector_reports(&dir, &all, &windows).await;

    let tls = Tls::create(&dir);
    let mut clickhouse = block_in_place(|| ClickHouse::start(&dir.join("clickhouse")));
    // Retries close together, so the test sees the end of the outage soon;
    // the bound stays the shipped one.
    let quick_retries = "exporters:\n  clickhouse:\n    retry_on_failure:\n      initial_interval: 500ms\n      max_interval: 2s\n";
    let mut collector =
        block_in_place(|| Collector::start(&dir.join("otelcol"), &tls, &clickhouse, quick_retries));
    let client = tls.client();
    let third = sends.len() / 3;
    send_all(&client, &collector, &sends[..third]).await;
    block_in_place(|| collector.drained(Duration::from_secs(60)));

    // 1. ClickHouse down for 30 s while the Collector takes more.
    block_in_place(|| clickhouse.stop());
    let outage = std::time::Instant::now();
    send_all(&client, &collector, &sends[third..2 * third]).await;
    block_in_place(|| {
        wait_until(
            "the exporter to hold data it cannot write",
            Duration::from_secs(20),
            || {
                let (sent, _) = collector.exported("clickhouse");
                let (passed, _) = collector.exported("file");
                (passed > sent).then_some(())
            },
        )
    });
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    let (_, failed) = block_in_place(|| collector.exported("clickhouse"));
    assert_eq!(failed, 0.0, "the exporter gave up within its retry bound");
    block_in_place(|| clickhouse.resume());
    block_in_place(|| collector.drained(Duration::from_secs(60)));
    let (_, failed) = block_in_place(|| collector.exported("clickhouse"));
    assert_eq!(failed, 0.0, "the exporter dropped data after the outage");

    // 2. SIGTERM right after the last request taken; the last one is a
    // node of its own, whose rows must all arrive.
    send_all(&client, &collector, &sends[2 * third..]).await;
    send_all(&client, &collector, std::slice::from_ref(&last)).await;
    let status = block_in_place(|| collector.stop("TERM"));
    assert!(status.success(), "the Collector ended with {status}");
    let log = collector.log_text();
    drop(collector);
    assert_eq!(
        block_in_place(|| clickhouse.rows_stored(Some(LAST))),
        point_count(&last) as u64,
        "rows of the request taken just before SIGTERM"
    );
    // Every point the Collector took (the file exporter wrote it beside the
    // clickhouse exporter, through the outage and the shutdown) is stored:
    // the same exports, to the second (raw rows may repeat).
    let taken: std::collections::BTreeSet<_> =
        std::fs::read_to_string(dir.join("otelcol/passed.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| point_groups(&serde_json::from_str(l).unwrap()))
            .collect();
    let stored = block_in_place(|| clickhouse.point_groups());
    assert!(taken.len() > 100, "{} point groups taken", taken.len());
    assert_eq!(
        taken.difference(&stored).collect::<Vec<_>>(),
        Vec::<&(String, String, u64, u64)>::new(),
        "taken by the Collector, not stored"
    );
    for ((since, until), expected) in windows.iter().zip(&expected) {
        let answers = block_in_place(|| clickhouse_answers(&clickhouse, *since, *until));
        for question in QUESTIONS {
            let (e, c) = (&expected[question.key], &answers[question.key]);
            assert!(
                same(e, c),
                "window {since:?}..{until:?}, {}:\nsurvey-collector: {e:#}\nClickHouse: {c:#}\nCollector log: {log}",
                question.key
            );
        }
    }
    assert!(
        expected[0]["most_launched"].as_array().unwrap().len() > 1,
        "the comparison had rows to compare"
    );

    // 3. Past the retry bound, the batch is dropped.
    let mut lost = sends
        .iter()
        .max_by_key(|r| r.encoded_len())
        .unwrap()
        .clone();
    const LOST: &str = "10000000-0000-4000-8000-00000000b0a7";
    set_instance_id(&mut lost, LOST);
    let short_bound = "exporters:\n  clickhouse:\n    retry_on_failure:\n      initial_interval: 200ms\n      max_interval: 500ms\n      max_elapsed_time: 2s\n";
    let collector = block_in_place(|| {
        Collector::start(&dir.join("otelcol-bound"), &tls, &clickhouse, short_bound)
    });
    block_in_place(|| clickhouse.stop());
    send_all(&client, &collector, std::slice::from_ref(&lost)).await;
    block_in_place(|| {
        wait_until(
            "the exporter to give up past its retry bound",
            Duration::from_secs(30),
            || (collector.exported("clickhouse").1 > 0.0).then_some(()),
        )
    });
    block_in_place(|| clickhouse.resume());
    assert_eq!(block_in_place(|| clickhouse.rows_stored(Some(LOST))), 0);
    // The node's next export (cumulative: the same values again) arrives.
    send_all(&client, &collector, std::slice::from_ref(&lost)).await;
    block_in_place(|| collector.drained(Duration::from_secs(60)));
    assert_eq!(
        block_in_place(|| clickhouse.rows_stored(Some(LOST))),
        point_count(&lost) as u64
    );
    drop(collector);

    // 4. SIGTERM while ClickHouse is down: at shutdown the exporter gives
    // each batch it holds one more try and drops it when that fails (its
    // retries stop with the Collector), as deploy/README.md says.
    const STOPPED: &str = "10000000-0000-4000-8000-00000000d0e5";
    set_instance_id(&mut lost, STOPPED);
    let mut collector = block_in_place(|| {
        Collector::start(
            &dir.join("otelcol-stopped"),
            &tls,
            &clickhouse,
            quick_retries,
        )
    });
    block_in_place(|| clickhouse.stop());
    send_all(&client, &collector, std::slice::from_ref(&lost)).await;
    block_in_place(|| {
        wait_until(
            "the Collector to take the request",
            Duration::from_secs(20),
            || (collector.exported("file").0 > 0.0).then_some(()),
        )
    });
    let status = block_in_place(|| collector.stop("TERM"));
    assert!(status.success(), "the Collector ended with {status}");
    drop(collector);
    block_in_place(|| clickhouse.resume());
    assert_eq!(block_in_place(|| clickhouse.rows_stored(Some(STOPPED))), 0);
    drop(clickhouse);
}

/// What `script` writes to its standard output, run by the pinned chdb's
/// Python after `import sys, report` (deploy/clickhouse/report.py). It
/// must succeed.
fn chdb_python_stdout(script: &str) -> Vec<u8> {
    let script = format!(
        "import sys; sys.path.insert(0, {dir:?}); import report; {script}",
        dir = workspace().join("deploy/clickhouse").to_str().unwrap()
    );
    support::stdout_of(Command::new(chdb_python()).arg("-c").arg(script))
}

/// The rows of `sql` run on schema.sql in chdb, as JSON objects.
fn chdb_rows(sql: &str) -> Vec<Json> {
    let stdout = chdb_python_stdout(&format!(
        "sys.stdout.write(report.session().query({sql:?}, 'JSONEachRow').bytes().decode())"
    ));
    String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The values of `key`'s closed enum; `None` for a key whose values come
/// from a sanitizer, or are numbers or flags.
fn enum_values(key: AttributeKey) -> Option<Vec<&'static str>> {
    let values: Vec<&'static str> = match key {
        AttributeKey::LaunchKind => LaunchKind::ALL.iter().map(|v| v.as_str()).collect(),
        AttributeKey::ContextBucket => ContextBucket::ALL.iter().map(|v| v.as_str()).collect(),
        AttributeKey::FailureReason => FailureKind::ALL.iter().map(|v| v.as_str()).collect(),
        AttributeKey::RequestOutcome => RequestOutcome::ALL.iter().map(|v| v.as_str()).collect(),
        AttributeKey::Model
        | AttributeKey::Architecture
        | AttributeKey::Quantization
        | AttributeKey::GpuName
        | AttributeKey::GpuStableId
        | AttributeKey::BackendDevice
        | AttributeKey::GpuCount
        | AttributeKey::IsSoc
        | AttributeKey::Backend
        | AttributeKey::ServiceVersion => return None,
    };
    // Exactly what the schema accepts under the key.
    for value in &values {
        assert!(
            key.accepts(schema::ReceivedValue::Str(value)),
            "{key} = {value}"
        );
    }
    assert!(
        !key.accepts(schema::ReceivedValue::Str("not_a_value")),
        "{key}"
    );
    Some(values)
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    }
}

/// The keys survey puts on `metric`'s points, and those always there, in
/// schema order.
fn keys_of(metric: &schema::MetricSpec) -> (Vec<&'static str>, Vec<&'static str>) {
    let keys = MetricKeys::of_metric(metric);
    let pick = |f: &dyn Fn(AttributeKey) -> bool| {
        AttributeKey::ALL
            .iter()
            .filter(|k| f(**k))
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
    };
    (pick(&|k| keys.allows(k)), pick(&|k| keys.requires(k)))
}

fn strings(value: &Json) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// schema.sql's functions list survey's schema exactly: each metric with
/// its kind, unit, bucket bounds and attribute keys (those its points may
/// carry and those they always carry, as survey-collector admits them),
/// nothing else; each attribute key with the values of its closed enum.
#[test]
fn the_sql_lists_survey_s_schema_exactly() {
    let rows = chdb_rows(
        "SELECT m.1 AS name, m.2 AS kind, m.3 AS unit, m.4 AS bounds,
                survey_kind(m.1) AS survey_kind, survey_unit(m.1) AS survey_unit,
                survey_bounds(m.1) AS survey_bounds,
                survey_allowed_keys(m.1) AS allowed, survey_required_keys(m.1) AS required
         FROM (SELECT arrayJoin(survey_metrics()) AS m)
         UNION ALL
         SELECT 'mesh_llm_other', '', '', [], survey_kind('mesh_llm_other'),
                survey_unit('mesh_llm_other'), survey_bounds('mesh_llm_other'),
                survey_allowed_keys('mesh_llm_other'), survey_required_keys('mesh_llm_other')",
    );
    let mut listed = BTreeMap::new();
    for row in &rows {
        let name = row["name"].as_str().unwrap();
        assert!(listed.insert(name, row).is_none(), "{name} twice");
        // The functions the views use read the list.
        for (function, field) in [
            ("survey_kind", "kind"),
            ("survey_unit", "unit"),
            ("survey_bounds", "bounds"),
        ] {
            assert_eq!(row[function], row[field], "{name}");
        }
    }
    let other = listed.remove("mesh_llm_other").unwrap();
    assert_eq!(
        (
            &other["survey_kind"],
            &other["survey_bounds"],
            &other["allowed"]
        ),
        (&Json::from(""), &Json::Array(vec![]), &Json::Array(vec![]))
    );
    assert_eq!(
        listed.keys().copied().collect::<Vec<_>>(),
        sorted(METRICS.iter().map(|m| m.name).collect())
    );
    for metric in METRICS {
        let row = listed[metric.name];
        let name = metric.name;
        assert_eq!(row["kind"], kind_name(metric.kind), "{name}");
        assert_eq!(row["unit"], metric.unit, "{name}");
        let bounds: Vec<f64> = serde_json::from_value(row["bounds"].clone()).unwrap();
        assert_eq!(bounds, metric.boundaries, "{name}");
        let (allowed, required) = keys_of(metric);
        assert_eq!(sorted(strings(&row["allowed"])), sorted(allowed), "{name}");
        assert_eq!(
            sorted(strings(&row["required"])),
            sorted(required),
            "{name}"
        );
    }

    let attributes = chdb_rows(
        "SELECT a.1 AS key, a.2 AS values FROM (SELECT arrayJoin(survey_attributes()) AS a)",
    );
    let keys: Vec<&str> = attributes
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = AttributeKey::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(keys, expected);
    for (key, row) in AttributeKey::ALL.iter().zip(&attributes) {
        let values = strings(&row["values"]);
        assert_eq!(values, enum_values(*key).unwrap_or_default(), "{key}");
    }
}

/// The filter list of the Collector config, each condition on one line.
fn config_conditions(config: &str) -> Vec<String> {
    let filter = &config[config.find("\n  filter/survey_drop:").unwrap()..];
    let list = &filter[filter.find("metric_conditions:").unwrap()..];
    let mut items: Vec<String> = Vec::new();
    for line in list.lines().skip(1) {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if indent <= 4 {
            break;
        }
        if let Some(item) = line.strip_prefix("      - ") {
            let item = item.trim();
            let item = item.strip_prefix(">-").unwrap_or(item);
            let item = item.trim_matches('\'');
            items.push(item.to_string());
        } else {
            let last = items.last_mut().expect("a condition's continuation");
            last.push(' ');
            last.push_str(text);
        }
    }
    items
        .into_iter()
        .map(|i| i.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Every string in `text` after `prefix` up to the next `"`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// The Collector config's lists are survey's schema exactly: its metrics
/// with their data types and units; the attribute keys, which of them each
/// metric may carry and which it always carries; the values of the closed
/// enums; the resource keys.
#[test]
fn the_collector_config_lists_survey_s_schema_exactly() {
    let config = std::fs::read_to_string(workspace().join("deploy/otelcol/config.yaml")).unwrap();

    // Attribute and resource keys, in the marking processor.
    let keep = |cache: &str| {
        let from = config.find(&format!("keep_keys({cache}, [")).unwrap();
        let list = &config[from..from + config[from..].find("])").unwrap()];
        list.split('"').skip(1).step_by(2).collect::<Vec<_>>()
    };
    let expected: Vec<&str> = AttributeKey::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(keep("datapoint.cache"), expected);
    let expected: Vec<&str> = ResourceKey::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(keep("resource.cache"), expected);

    let conditions = config_conditions(&config);
    assert!(conditions.len() > 15, "{conditions:#?}");
    let mut metrics = Vec::new();
    let mut never: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut only_on: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut always: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in &conditions {
        let keys = quoted_after(c, "datapoint.attributes[\"");
        let names = quoted_after(c, "metric.name == \"");
        if c.starts_with("not (") && c.contains("metric.unit == ") {
            // One entry per metric: name, unit, type.
            for entry in c.split("(metric.name == ").skip(1) {
                let name = &entry[1..entry[1..].find('"').unwrap() + 1];
                let unit = quoted_after(entry, "metric.unit == \"")[0];
                let kind = if entry.contains("METRIC_DATA_TYPE_SUM and metric.is_monotonic == true")
                {
                    "counter"
                } else if entry.contains("METRIC_DATA_TYPE_GAUGE") {
                    "gauge"
                } else if entry.contains("METRIC_DATA_TYPE_HISTOGRAM") {
                    "histogram"
                } else {
                    panic!("no data type in {entry}")
                };
                metrics.push((name, kind, unit));
            }
        } else if keys.is_empty() || keys == ["survey.reject"] {
            // Not about attribute keys or values.
            assert!(
                !c.contains("mesh_llm"),
                "a condition not understood here: {c}"
            );
        } else if c.contains("IsMatch(") {
            let pattern = &c[c.find("\"^(").unwrap() + 3..c.find(")$\"").unwrap()];
            assert!(
                values
                    .insert(keys[0], pattern.split('|').collect())
                    .is_none()
            );
            assert!(keys.iter().all(|k| *k == keys[0]), "{c}");
            assert!(c.contains(&format!("IsString(datapoint.attributes[\"{}\"])", keys[0])));
        } else if c.starts_with("metric.name == \"") && c.contains("!= nil") {
            for key in keys {
                never.entry(key).or_default().extend(&names);
            }
        } else if c.contains("\"] != nil and not (metric.name == ") {
            assert_eq!(keys.len(), 1, "{c}");
            assert!(only_on.insert(keys[0], names).is_none(), "{c}");
        } else if c.contains("\"] == nil and metric.name == ") {
            assert_eq!(keys.len(), 1, "{c}");
            always.entry(keys[0]).or_default().extend(names);
        } else {
            panic!("a condition not understood here: {c}");
        }
    }
    let expected: Vec<(&str, &str, &str)> = METRICS
        .iter()
        .map(|m| (m.name, kind_name(m.kind), m.unit))
        .collect();
    assert_eq!(sorted(metrics), sorted(expected));

    // Which keys each metric takes.
    for metric in METRICS {
        let (allowed, required) = keys_of(metric);
        for key in AttributeKey::ALL.iter().map(|k| k.as_str()) {
            let name = &metric.name;
            let takes = !never.get(key).is_some_and(|n| n.contains(name))
                && only_on.get(key).is_none_or(|n| n.contains(name));
            assert_eq!(takes, allowed.contains(&key), "{key} on {name}");
            let needs = always.get(key).is_some_and(|n| n.contains(name));
            assert_eq!(needs, required.contains(&key), "{key} always on {name}");
        }
    }
    // The closed enums' values.
    let expected: BTreeMap<&str, Vec<&str>> = AttributeKey::ALL
        .iter()
        .filter_map(|k| Some((k.as_str(), enum_values(*k)?)))
        .collect();
    assert_eq!(values, expected);
}

/// The ClickHouse queries are survey-collector's questions, one file each,
/// named like its key, headed by its title; report.py answers them all.
#[test]
fn the_queries_are_the_collector_s_questions() {
    let dir = workspace().join("deploy/clickhouse/queries");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let expected: Vec<String> =
        sorted(QUESTIONS.iter().map(|q| format!("{}.sql", q.key)).collect());
    assert_eq!(files, expected);
    for question in QUESTIONS {
        let sql = std::fs::read_to_string(dir.join(format!("{}.sql", question.key))).unwrap();
        assert_eq!(
            sql.lines().next(),
            Some(format!("-- {}", question.title).as_str()),
            "{}",
            question.key
        );
    }
    let stdout = chdb_python_stdout("import json; print(json.dumps(report.QUESTIONS))");
    let answered: Vec<String> = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        answered,
        sorted(QUESTIONS.iter().map(|q| q.key.to_string()).collect())
    );
}

#[test]
fn the_cluster_schema_is_generated_from_the_single_server_one_and_parses() {
    let stdout = support::stdout_of(
        Command::new(chdb_python())
            .arg(workspace().join("deploy/clickhouse/cluster.py"))
            .arg("--check"),
    );
    let said = String::from_utf8_lossy(&stdout);
    let parsed: usize = said.split_whitespace().next().unwrap().parse().unwrap();
    assert!(parsed >= 20, "{said}");
}
