//! The scale-out path gives the same answers: a fleet's exports, captured,
//! go both to `survey-collector serve` and, mapped to the rows the
//! OpenTelemetry Collector's clickhouse exporter writes, into a real
//! ClickHouse engine (chdb) holding `deploy/clickhouse/schema.sql`; the six
//! queries of `deploy/clickhouse/queries/` must return what
//! `survey-collector report --format json` returns, for several windows:
//! the same rows in the same order, integers equal, floats equal to 1e-9
//! relative.
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
//! ahead, a counter not monotonic, a gauge sent as a counter): ClickHouse
//! must not count them either.
//!
//! chdb comes from the Python package registry, pinned in
//! `deploy/clickhouse/requirements.txt`, in a virtual environment under
//! `target/` that `deploy/clickhouse/venv.sh` creates on first use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Metric, Sum, exemplar, metric, number_data_point,
};
use prost::Message;
use serde_json::Value as Json;
use survey_collector::{Day, Report, ReportOptions, ServeConfig, Server, Store};
use survey_fleet::exporter_rows;
use survey_fleet::fleet::{self, Fleet};

const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;
/// The instance id of the node identical to node 0.
const TWIN: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The pinned chdb's Python, the environment created if needed (once for
/// all the tests here).
fn chdb_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(create_chdb_environment).clone()
}

fn create_chdb_environment() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("chdb-venv");
    let status = Command::new(workspace().join("deploy/clickhouse/venv.sh"))
        .arg(&dir)
        .status()
        .expect("deploy/clickhouse/venv.sh runs");
    assert!(
        status.success(),
        "deploy/clickhouse/venv.sh could not create the chdb environment in {}",
        dir.display()
    );
    dir.join("bin/python")
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

/// Applies `f` to every data point's (start, time) of `request`.
fn retime(request: &mut ExportMetricsServiceRequest, f: impl Fn(&mut u64, &mut u64)) {
    for sm in request
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| rm.scope_metrics.iter_mut())
    {
        for metric in &mut sm.metrics {
            match &mut metric.data {
                Some(metric::Data::Sum(sum)) => sum
                    .data_points
                    .iter_mut()
                    .for_each(|p| f(&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
                Some(metric::Data::Gauge(gauge)) => gauge
                    .data_points
                    .iter_mut()
                    .for_each(|p| f(&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
                Some(metric::Data::Histogram(histogram)) => histogram
                    .data_points
                    .iter_mut()
                    .for_each(|p| f(&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
                _ => {}
            }
        }
    }
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

/// Applies `f` to every metric of `request`.
fn each_metric(request: &mut ExportMetricsServiceRequest, mut f: impl FnMut(&mut Metric)) {
    request
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| rm.scope_metrics.iter_mut())
        .flat_map(|sm| sm.metrics.iter_mut())
        .for_each(&mut f);
}

/// Copies of `template` that survey never sends, each changed one way and
/// from a node of its own: survey-collector rejects their points.
fn dishonest(template: &ExportMetricsServiceRequest) -> Vec<ExportMetricsServiceRequest> {
    type Change = fn(&mut ExportMetricsServiceRequest);
    /// Keeps the histograms alone, so that a change to them is all the
    /// export holds.
    fn only_histograms(r: &mut ExportMetricsServiceRequest) {
        for sm in r
            .resource_metrics
            .iter_mut()
            .flat_map(|rm| rm.scope_metrics.iter_mut())
        {
            sm.metrics
                .retain(|m| matches!(m.data, Some(metric::Data::Histogram(_))));
        }
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
            scope.attributes.push(KeyValue {
                key: "k".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("v".into())),
                }),
                ..KeyValue::default()
            });
        }),
        ("a scope schema URL", |r| {
            r.resource_metrics[0].scope_metrics[0].schema_url = "s".into()
        }),
        ("a resource schema URL", |r| {
            r.resource_metrics[0].schema_url = "s".into()
        }),
        ("another unit", |r| each_metric(r, |m| m.unit = "1".into())),
        ("exemplars", |r| {
            each_metric(r, |m| match &mut m.data {
                Some(metric::Data::Sum(sum)) => sum
                    .data_points
                    .iter_mut()
                    .for_each(|p| p.exemplars.push(exemplar(p.time_unix_nano))),
                Some(metric::Data::Gauge(gauge)) => gauge
                    .data_points
                    .iter_mut()
                    .for_each(|p| p.exemplars.push(exemplar(p.time_unix_nano))),
                Some(metric::Data::Histogram(h)) => h
                    .data_points
                    .iter_mut()
                    .for_each(|p| p.exemplars.push(exemplar(p.time_unix_nano))),
                _ => {}
            })
        }),
        ("flags", |r| {
            each_metric(r, |m| match &mut m.data {
                Some(metric::Data::Sum(sum)) => {
                    sum.data_points.iter_mut().for_each(|p| p.flags = 1)
                }
                Some(metric::Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| p.flags = 1),
                Some(metric::Data::Histogram(h)) => {
                    h.data_points.iter_mut().for_each(|p| p.flags = 1)
                }
                _ => {}
            })
        }),
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
            for sm in r
                .resource_metrics
                .iter_mut()
                .flat_map(|rm| rm.scope_metrics.iter_mut())
            {
                sm.metrics
                    .retain(|m| matches!(m.data, Some(metric::Data::Gauge(_))));
            }
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
    ];
    changes
        .into_iter()
        .enumerate()
        .map(|(i, (_, change))| {
            let mut request = template.clone();
            set_instance_id(&mut request, &format!("d1540e57-0000-4000-8000-{i:012x}"));
            change(&mut request);
            request
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_answers_equal_the_collector_s() {
    let python = chdb_python();
    let dir = std::env::temp_dir().join(format!("survey-clickhouse-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // A fleet's exports, captured.
    let receiver = survey_otlp_receiver::Receiver::start();
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
    let server = Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.join("survey.db"),
        tokens: Default::default(),
        tls: None,
        retention: Duration::from_secs(48 * 3600),
        limits: Default::default(),
    })
    .await
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    for (request, honest) in sends
        .iter()
        .map(|r| (r, true))
        .chain(lies.iter().map(|r| (r, false)))
    {
        let answer = client
            .post(format!("{}/v1/metrics", server.endpoint()))
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let rejected = ExportMetricsServiceResponse::decode(answer.bytes().await.unwrap())
            .unwrap()
            .partial_success
            .map_or(0, |p| p.rejected_data_points);
        // Honest exports are taken whole; each dishonest one loses points.
        assert_eq!(rejected == 0, honest, "{rejected} points rejected");
    }
    server.shutdown().await;

    // Into ClickHouse, as the exporter writes them.
    let batches_path = dir.join("batches.jsonl");
    let lines: Vec<String> = sends
        .iter()
        .chain(&lies)
        .flat_map(exporter_rows::batches)
        .map(|b| b.to_line())
        .collect();
    std::fs::write(&batches_path, lines.join("\n")).unwrap();

    let today = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64;
    // (since, until, min_launches, min_nodes)
    let windows = [
        (None, None, 0, 1),
        (Some(today - 6), Some(today - 2), 0, 1),
        (Some(today - 4), None, 3, 1),
        (None, Some(today - 3), 0, 1),
        (Some(today), None, 0, 1),
        (None, None, 0, 3),
    ];
    let mut command = Command::new(&python);
    command
        .arg(workspace().join("deploy/clickhouse/report.py"))
        .arg("--batches")
        .arg(&batches_path);
    for (since, until, min_launches, min_nodes) in windows {
        let date = |d: Option<i64>| d.map(|d| Day(d).to_date()).unwrap_or_default();
        command.arg(format!(
            "--window={}:{}:{min_launches}:{min_nodes}",
            date(since),
            date(until)
        ));
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "report.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let clickhouse: Vec<Json> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(clickhouse.len(), windows.len());

    let store = Store::open_read_only(&dir.join("survey.db")).unwrap();
    let mut compared_rows = 0;
    let mut suppressed = 0;
    for ((since, until, min_launches, min_nodes), ch) in windows.iter().zip(&clickhouse) {
        let options = ReportOptions {
            since: since.map(Day),
            until: until.map(Day),
            min_launches: *min_launches,
            min_nodes: *min_nodes,
        };
        let report = Report::build(&store, options).unwrap();
        suppressed += report.suppressed();
        let embedded = report.to_json();
        for key in embedded.as_object().unwrap().keys() {
            let (e, c) = (&embedded[key], &ch[key]);
            assert!(
                same(e, c),
                "window {options:?}, {key}:\nsurvey-collector: {e:#}\nClickHouse: {c:#}"
            );
            compared_rows += e.as_array().unwrap().len();
        }
    }
    // The comparison had something to compare, and the twin and the
    // restart counted: two nodes' 10 launches each count twice.
    assert!(compared_rows > 50, "{compared_rows} rows compared");
    assert!(suppressed > 0, "no window suppressed a row");
    let all = Report::build(&store, ReportOptions::default())
        .unwrap()
        .to_json();
    let counted: i64 = all["most_launched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["launches"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, launches.len() as i64 + 2 * fleet.launches as i64);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_kinds_and_units_in_sql_are_survey_s() {
    let query = survey::schema::METRICS
        .iter()
        .map(|m| {
            format!(
                "SELECT '{0}', survey_kind('{0}'), survey_unit('{0}')",
                m.name
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let script = format!(
        "import sys; sys.path.insert(0, {dir:?}); import report; \
         print(report.session().query(\"{query} FORMAT TSV\").bytes().decode())",
        dir = workspace().join("deploy/clickhouse").to_str().unwrap()
    );
    let output = Command::new(chdb_python())
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8(output.stdout).unwrap();
    let mut rows: Vec<&str> = said.lines().filter(|l| !l.is_empty()).collect();
    rows.sort();
    let mut expected: Vec<String> = survey::schema::METRICS
        .iter()
        .map(|m| {
            let kind = format!("{:?}", m.kind).to_lowercase();
            format!("{}\t{kind}\t{}", m.name, m.unit)
        })
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
}

#[test]
fn the_cluster_schema_is_generated_from_the_single_server_one_and_parses() {
    let output = Command::new(chdb_python())
        .arg(workspace().join("deploy/clickhouse/cluster.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cluster.py --check: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    let parsed: usize = said.split_whitespace().next().unwrap().parse().unwrap();
    assert!(parsed >= 20, "{said}");
}

#[test]
fn the_bucket_bounds_in_sql_are_survey_s() {
    let schema = std::fs::read_to_string(workspace().join("deploy/clickhouse/schema.sql")).unwrap();
    let function = &schema[schema
        .find("CREATE FUNCTION IF NOT EXISTS survey_bounds")
        .unwrap()..];
    for (metric, bounds) in [
        (
            survey::schema::LAUNCH_DURATION_MS,
            &survey::schema::LAUNCH_DURATION_BOUNDARIES_MS[..],
        ),
        (
            survey::schema::UPTIME_S,
            &survey::schema::UPTIME_BOUNDARIES_S[..],
        ),
    ] {
        let after = &function[function.find(&format!("'{metric}'")).unwrap()..];
        let list = &after[after.find('[').unwrap() + 1..after.find(']').unwrap()];
        let parsed: Vec<f64> = list.split(',').map(|n| n.trim().parse().unwrap()).collect();
        assert_eq!(parsed, bounds, "{metric}");
    }
}
