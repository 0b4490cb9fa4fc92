//! What one machine can take, measured:
//!
//! 1. `ingest`: export requests per second through the real HTTP endpoint,
//!    with the load generator on the same machine. Each request is a
//!    realistic export: a node with 20 models seen, 100 points, most values
//!    repeating the node's previous export. The baseline of the same run is
//!    an empty export request to the same endpoint (HTTP, framing and the
//!    client, without points).
//! 2. Storage per node-day: rows and bytes after the daily rollup, for nodes
//!    exporting hourly through a day with a few launches and unloads each.
//! 3. `report`: building the report over generated rollups of 10,000 nodes
//!    × 30 days.
//!
//! Run with `cargo bench -p survey-collector`; the figures print at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use prost::Message;
use survey_collector::__private::{Clock, validate};
use survey_collector::Limits;
use survey_collector::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use survey_collector::otlp::common::v1::KeyValue;
use survey_collector::otlp::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, metric::Data,
    number_data_point::Value as NumberValue,
};
use survey_collector::report::Rows;
use survey_collector::{Report, ReportOptions, ServeConfig, Server, Store};
use survey_schema::{self as schema, ContextBucket};
use survey_test_support::TestDir;
use survey_test_support::bench::mean_ns;
use survey_test_support::otlp::{export_request, gzip, kv_str, launch_attrs};

/// The collector binary's allocator, measured with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Nodes the ingest benchmark sends for (their streams are all in the store).
const INGEST_NODES: u32 = 2_000;
/// Models each node has seen.
const MODELS: u32 = 20;
/// Requests in flight at once.
const CONCURRENCY: usize = 32;
/// Nodes and days of the storage measurement.
const STORAGE_NODES: u32 = 20;
/// Nodes and days of the generated report data.
const REPORT_NODES: u32 = 10_000;
const REPORT_DAYS: i64 = 30;

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

fn instance_id(node: u32) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        node,
        u64::from(node) * 7919
    )
}

fn model_name(model: u32) -> String {
    format!("model-{model:02}-Q4_K_M")
}

/// What survey puts on the points of `model` on a node with one RTX 4090.
fn attributes(model: u32) -> Vec<KeyValue> {
    let buckets = ContextBucket::ALL;
    launch_attrs(
        &model_name(model),
        "llama",
        buckets[model as usize % buckets.len()].as_str(),
        "0.9.0",
    )
}

/// A node's export: for each of its 20 models, its launch, success and
/// unload counters, launch-time and uptime histograms (100 points), plus
/// `extra` gauges. `launches[m]` launches of model `m` so far.
fn export(
    node: u32,
    launches: &[u64],
    start: u64,
    time: u64,
    gauges: &[(u32, u64)],
) -> ExportMetricsServiceRequest {
    let sum = |name: &str, values: Vec<(Vec<KeyValue>, u64)>| Metric {
        name: name.into(),
        unit: schema::metric(name).unwrap().unit.into(),
        data: Some(Data::Sum(Sum {
            data_points: values
                .into_iter()
                .map(|(attributes, v)| NumberDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    value: Some(NumberValue::AsInt(v as i64)),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let histogram = |name: &str, bucket: usize, counts: &[u64]| {
        let spec = schema::metric(name).unwrap();
        Metric {
            name: name.into(),
            unit: spec.unit.into(),
            data: Some(Data::Histogram(Histogram {
                data_points: counts
                    .iter()
                    .enumerate()
                    .map(|(m, n)| {
                        let mut buckets = vec![0; spec.boundaries.len() + 1];
                        buckets[bucket] = *n;
                        HistogramDataPoint {
                            attributes: attributes(m as u32),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: *n,
                            sum: Some(*n as f64 * spec.boundaries[bucket]),
                            bucket_counts: buckets,
                            explicit_bounds: spec.boundaries.to_vec(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                aggregation_temporality: 2,
            })),
            ..Default::default()
        }
    };
    let per_model = |v: &dyn Fn(u64) -> u64| -> Vec<(Vec<KeyValue>, u64)> {
        (0..MODELS)
            .map(|m| (attributes(m), v(launches[m as usize])))
            .collect()
    };
    let mut metrics = vec![
        sum(schema::LAUNCH_TOTAL, per_model(&|n| n)),
        sum(schema::LAUNCH_SUCCESS_TOTAL, per_model(&|n| n)),
        sum(schema::UNLOAD_TOTAL, per_model(&|n| n)),
        histogram(schema::LAUNCH_DURATION_MS, 5, launches),
        histogram(schema::UPTIME_S, 6, launches),
    ];
    if !gauges.is_empty() {
        metrics.push(Metric {
            name: schema::MODEL_CONTEXT_LENGTH.into(),
            unit: "{token}".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: gauges
                    .iter()
                    .map(|(m, ctx)| NumberDataPoint {
                        attributes: attributes(*m),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        value: Some(NumberValue::AsInt(*ctx as i64)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        });
    }
    export_request(
        vec![
            kv_str("service.name", "mesh-llm"),
            kv_str("service.version", "0.9.0"),
            kv_str("service.instance.id", &instance_id(node)),
            kv_str("telemetry.sdk.language", "rust"),
            kv_str("telemetry.sdk.name", "opentelemetry"),
            kv_str("telemetry.sdk.version", "0.33.1"),
        ],
        metrics,
    )
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Sends `count` requests, `CONCURRENCY` at a time, cycling through `bodies`.
async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    next: &Arc<AtomicUsize>,
    count: usize,
) {
    let start = next.load(Ordering::Relaxed);
    let end = start + count;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, bodies, next) = (
            client.clone(),
            url.to_string(),
            bodies.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let body = bodies[i % bodies.len()].clone();
                let response = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "gzip")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Requests past `end` were not sent; the next batch starts there.
    next.store(end, Ordering::Relaxed);
}

fn ingest(c: &mut Criterion, figures: &mut Vec<String>) {
    let dir = TestDir::new(concat!("collector-bench-", "ingest"));
    // The collector on its own runtime, as `serve` runs it.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = server_runtime
        .block_on(Server::start(ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: dir.join("survey.db"),
            tokens: Default::default(),
            tls: None,
            retention: Duration::from_secs(48 * 3600),
            limits: Limits::default(),
        }))
        .unwrap();
    let url = format!("{}/v1/metrics", server.endpoint());
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();

    // Each node's export, and the same export after one more launch of one
    // of its models: 5 of its 100 points change.
    let now = now_nanos();
    let start = now - 3_600_000_000_000;
    let mut first = Vec::new();
    let mut later = Vec::new();
    for node in 0..INGEST_NODES {
        let mut launches: Vec<u64> = (0..MODELS).map(|m| 1 + u64::from((node + m) % 3)).collect();
        first.push(gzip(
            &export(node, &launches, start, now - 60_000_000_000, &[]).encode_to_vec(),
        ));
        launches[(node % MODELS) as usize] += 1;
        later.push(gzip(
            &export(node, &launches, start, now - 30_000_000_000, &[]).encode_to_vec(),
        ));
    }
    let points_per_request = 100;
    let bytes = first.iter().map(Vec::len).sum::<usize>() / first.len();
    // Warm-up: every node's streams are created.
    let first = Arc::new(first);
    let warm = Instant::now();
    client_runtime.block_on(send_all(
        &client,
        &url,
        &first,
        &Arc::new(AtomicUsize::new(0)),
        first.len(),
    ));
    let warm = warm.elapsed();
    // Measured: mostly repeats, one node in 20 with a change.
    let mut bodies = Vec::new();
    for round in 0..20 {
        for node in 0..INGEST_NODES as usize {
            bodies.push(if (node + round) % 20 == 0 {
                later[node].clone()
            } else {
                first[node].clone()
            });
        }
    }
    let bodies = Arc::new(bodies);
    let empty = Arc::new(vec![gzip(
        &ExportMetricsServiceRequest::default().encode_to_vec(),
    )]);

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (name, requests) in [("empty_export", &empty), ("realistic_export", &bodies)] {
        let next = Arc::new(AtomicUsize::new(0));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                client_runtime.block_on(send_all(&client, &url, requests, &next, iters as usize));
                t.elapsed()
            })
        });
    }
    group.finish();
    let totals = server.totals();
    server_runtime.block_on(server.shutdown());
    let (empty_ns, export_ns) = (
        mean_ns("ingest", "empty_export"),
        mean_ns("ingest", "realistic_export"),
    );
    if let (Some(empty_ns), Some(export_ns)) = (empty_ns, export_ns) {
        figures.push(format!(
            "ingest, {CONCURRENCY} requests in flight, load generator on the same machine:\n  \
             realistic export ({points_per_request} points, {bytes} bytes gzipped, {INGEST_NODES} nodes' streams stored): \
             {:.0} requests/s = {:.0} points/s\n  \
             empty export (baseline): {:.0} requests/s; a realistic export costs x{:.2} the baseline\n  \
             ({} requests answered, {} points stored; first contact of {INGEST_NODES} nodes took {:.1} s)",
            1e9 / export_ns,
            1e9 / export_ns * points_per_request as f64,
            1e9 / empty_ns,
            export_ns / empty_ns,
            totals.requests,
            totals.accepted,
            warm.as_secs_f64(),
        ));
    }
}

/// The size of the database at `path` after a VACUUM.
fn vacuumed_size(store: &Store) -> u64 {
    let conn = store.connection();
    conn.execute_batch("VACUUM").unwrap();
    let pages: u64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    pages * size
}

fn rows(store: &Store, table: &str) -> u64 {
    store
        .connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Nodes export hourly for two days; each day every node launches 3 of
/// its models once more (and unloads them), and 2 models stay loaded.
fn storage(figures: &mut Vec<String>) {
    let dir = TestDir::new(concat!("collector-bench-", "storage"));
    let mut store = Store::open(&dir.join("survey.db")).unwrap();
    let today = now_nanos() as i64 / NANOS_PER_DAY;
    let first_day = today - 2;
    let start = (first_day * NANOS_PER_DAY) as u64;
    let mut launches: Vec<Vec<u64>> = (0..STORAGE_NODES)
        .map(|_| vec![1; MODELS as usize])
        .collect();
    let mut size_after_day = Vec::new();
    let mut rows_after_day = Vec::new();
    for day in first_day..today {
        for hour in 0..24 {
            let time = (day * NANOS_PER_DAY + hour * 3_600_000_000_000 + 60_000_000_000) as u64;
            let clock = Clock {
                now: time as i64,
                retention: 48 * 3600 * 1_000_000_000,
            };
            let mut batches = Vec::new();
            for node in 0..STORAGE_NODES {
                if hour % 8 == 0 {
                    let model = ((day as u32 * 3 + hour as u32 / 8) + node) % MODELS;
                    launches[node as usize][model as usize] += 1;
                }
                let gauges = [(node % MODELS, 8192), ((node + 1) % MODELS, 32768)];
                let request = export(node, &launches[node as usize], start, time, &gauges);
                batches.push(validate(&request, clock));
            }
            let refs: Vec<_> = batches.iter().collect();
            store.ingest(&refs).unwrap();
        }
        size_after_day.push(vacuumed_size(&store));
        rows_after_day.push(rows(&store, "rollup_daily") + rows(&store, "rollup_histogram_daily"));
    }
    let rows_first_day = rows_after_day[0];
    let node_days = u64::from(STORAGE_NODES) * 2;
    let (streams, rollup, raw) = (
        rows(&store, "streams"),
        rows(&store, "rollup_daily") + rows(&store, "rollup_histogram_daily"),
        rows(&store, "otel_metrics_sum")
            + rows(&store, "otel_metrics_gauge")
            + rows(&store, "otel_metrics_histogram"),
    );
    let with_raw = size_after_day[1];
    // After the retention period only streams and rollups remain.
    store.prune(i64::MAX).unwrap();
    let rollups = vacuumed_size(&store);
    let delete = |sql: &str| store.connection().execute(sql, []).unwrap();
    delete(&format!(
        "DELETE FROM rollup_daily WHERE Day = {}",
        today - 1
    ));
    let first_day_only = vacuumed_size(&store);
    delete("DELETE FROM rollup_daily");
    let streams_only = vacuumed_size(&store);
    let per_node = |bytes: u64| bytes as f64 / f64::from(STORAGE_NODES);
    figures.push(format!(
        "storage, {STORAGE_NODES} nodes x 2 days, hourly exports of 102 points, 3 launches and 3 \
         unloads per node-day:\n  \
         kept: {} streams per node ({:.0} bytes); {:.1} rollup rows per node-day after the first \
         ({:.0} bytes)\n  \
         kept for the retention period: {:.1} raw rows per node-day ({:.0} bytes with the rollup)",
        streams / u64::from(STORAGE_NODES),
        per_node(streams_only),
        (rollup as f64 - rows_first_day as f64) / f64::from(STORAGE_NODES),
        per_node(rollups - first_day_only),
        raw as f64 / node_days as f64,
        per_node(with_raw - size_after_day[0]),
    ));
    drop(store);
}

/// Streams and rollups of `REPORT_NODES` nodes × `REPORT_DAYS` days, written
/// straight into the tables as ingest would leave them: each node has 20
/// models' 5 lifecycle streams and 2 context gauges; each day it launches
/// 3 of its models and unloads them.
fn generate_report_data(path: &Path) -> u64 {
    let mut store = Store::open(path).unwrap();
    let conn = store.connection();
    conn.execute_batch("PRAGMA synchronous = OFF; BEGIN")
        .unwrap();
    let today = now_nanos() as i64 / NANOS_PER_DAY;
    let mut resource = conn
        .prepare("INSERT INTO resources (ResourceAttributes, ServiceName, Node) VALUES (?1, 'mesh-llm', ?2)")
        .unwrap();
    let mut stream = conn
        .prepare(
            "INSERT INTO streams (StreamKey, MetricName, ResourceId, StartTimeUnix, Kind, \
             AggregationTemporality, Node, Model, GpuName, BackendDevice, GpuCount, ContextBucket) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'NVIDIA GeForce RTX 4090', 'cuda', 1, ?9)",
        )
        .unwrap();
    let mut rollup = conn
        .prepare("INSERT INTO rollup_daily (StreamId, Day, Value) VALUES (?1, ?2, ?3)")
        .unwrap();
    let mut rollup_histogram = conn
        .prepare(
            "INSERT INTO rollup_histogram_daily (StreamId, Day, Count, Sum, BucketCounts) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .unwrap();
    let lifecycle = [
        (schema::LAUNCH_TOTAL, "sum"),
        (schema::LAUNCH_SUCCESS_TOTAL, "sum"),
        (schema::UNLOAD_TOTAL, "sum"),
        (schema::LAUNCH_DURATION_MS, "histogram"),
        (schema::UPTIME_S, "histogram"),
        (schema::MODEL_CONTEXT_LENGTH, "gauge"),
    ];
    let buckets = ContextBucket::ALL;
    let mut launches_total = 0u64;
    let mut key = 0u128;
    for node in 0..REPORT_NODES {
        let node_id = instance_id(node);
        resource
            .execute(rusqlite::params![
                format!("{{\"service.instance.id\":\"{node_id}\"}}"),
                node_id
            ])
            .unwrap();
        let resource_id = conn.last_insert_rowid();
        let mut ids = Vec::new();
        for model in 0..MODELS {
            let name = model_name(model);
            let bucket = buckets[model as usize % buckets.len()].as_str();
            let mut per_metric = Vec::new();
            for (metric, kind) in lifecycle {
                key += 1;
                let (start, temporality) = if kind == "gauge" { (0, 0) } else { (1, 2) };
                stream
                    .execute(rusqlite::params![
                        key.to_le_bytes().to_vec(),
                        metric,
                        resource_id,
                        start,
                        kind,
                        temporality,
                        node_id,
                        name,
                        bucket
                    ])
                    .unwrap();
                per_metric.push(conn.last_insert_rowid());
            }
            ids.push(per_metric);
        }
        let mut counts = vec![0u64; MODELS as usize];
        for day in today - REPORT_DAYS..today {
            for k in 0..3u32 {
                let model = ((day as u32).wrapping_mul(3) + k + node) % MODELS;
                counts[model as usize] += 1;
                launches_total += 1;
                let n = counts[model as usize];
                let s = &ids[model as usize];
                for sum_stream in &s[..3] {
                    rollup
                        .execute(rusqlite::params![sum_stream, day, n as f64])
                        .ok();
                }
                let mut launch_buckets =
                    vec![0u64; schema::LAUNCH_DURATION_BOUNDARIES_MS.len() + 1];
                launch_buckets[5] = n;
                let mut uptime_buckets = vec![0u64; schema::UPTIME_BOUNDARIES_S.len() + 1];
                uptime_buckets[6] = n;
                rollup_histogram
                    .execute(rusqlite::params![
                        s[3],
                        day,
                        n as f64,
                        n as f64 * 5000.0,
                        serde_json::to_string(&launch_buckets).unwrap()
                    ])
                    .ok();
                rollup_histogram
                    .execute(rusqlite::params![
                        s[4],
                        day,
                        n as f64,
                        n as f64 * 3600.0,
                        serde_json::to_string(&uptime_buckets).unwrap()
                    ])
                    .ok();
            }
            for loaded in 0..2u32 {
                let model = (node + loaded) % MODELS;
                rollup
                    .execute(rusqlite::params![ids[model as usize][5], day, 8192.0])
                    .ok();
            }
        }
    }
    drop((resource, stream, rollup, rollup_histogram));
    conn.execute_batch("COMMIT").unwrap();
    store.summarize_all().unwrap();
    store
        .connection()
        .execute_batch("PRAGMA synchronous = FULL")
        .unwrap();
    launches_total
}

fn report(c: &mut Criterion, figures: &mut Vec<String>) {
    // SURVEY_BENCH_REPORT_DB=PATH keeps the generated data there for the
    // next run.
    let kept = std::env::var_os("SURVEY_BENCH_REPORT_DB").map(PathBuf::from);
    let dir = TestDir::new(concat!("collector-bench-", "report"));
    let path = kept.clone().unwrap_or_else(|| dir.join("survey.db"));
    let generated = Instant::now();
    let launches = if path.exists() {
        u64::from(REPORT_NODES) * REPORT_DAYS as u64 * 3
    } else {
        generate_report_data(&path)
    };
    let generated = generated.elapsed();
    let store = Store::open_read_only(&path).unwrap();
    let (streams, rollup) = (
        rows(&store, "streams"),
        rows(&store, "rollup_daily") + rows(&store, "rollup_histogram_daily"),
    );
    // The counts come out right on this data too.
    let report = Report::build(&store, ReportOptions::default()).unwrap();
    let Some(Rows::MostLaunched(most_launched)) = report.answer("most_launched").map(|a| &a.rows)
    else {
        panic!("no most_launched answer");
    };
    let counted: u64 = most_launched.iter().map(|r| r.launches).sum();
    assert_eq!(counted, launches);
    let mut group = c.benchmark_group("report");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("all_days", |b| {
        b.iter(|| Report::build(&store, ReportOptions::default()).unwrap())
    });
    // The last 7 days: a window that cuts every stream still counting, so
    // each reads its rollup rows (the worst case).
    let today = now_nanos() as i64 / NANOS_PER_DAY;
    let last_week = ReportOptions {
        since: Some(survey_collector::Day(today - 7)),
        ..ReportOptions::default()
    };
    group.bench_function("last_7_days", |b| {
        b.iter(|| Report::build(&store, last_week).unwrap())
    });
    // Baseline of the same run: one pass over every daily rollup row, the
    // least a report reading rollups alone would cost.
    group.bench_function("baseline_rollup_pass", |b| {
        b.iter(|| {
            store
                .connection()
                .query_row(
                    "SELECT count(*) FROM (SELECT StreamId, max(Value) FROM rollup_daily \
                     GROUP BY StreamId)",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
        })
    });
    group.finish();
    if let (Some(all), Some(week), Some(pass)) = (
        mean_ns("report", "all_days"),
        mean_ns("report", "last_7_days"),
        mean_ns("report", "baseline_rollup_pass"),
    ) {
        figures.push(format!(
            "report over {REPORT_NODES} nodes x {REPORT_DAYS} days ({streams} streams, {rollup} rollup rows, \
             generated in {:.0} s): {:.2} s for all days (x{:.2} the baseline); {:.2} s for the last \
             7 days, a window that cuts every stream (x{:.2}); baseline, one pass over the counter \
             rollup rows: {:.2} s",
            generated.as_secs_f64(),
            all / 1e9,
            all / pass,
            week / 1e9,
            week / pass,
            pass / 1e9
        ));
    }
    drop(store);
}

/// One realistic request through each stage of ingest, on this thread.
fn stages(c: &mut Criterion) {
    use survey_collector::__private::{Compression, Encoding, decode};
    let dir = TestDir::new(concat!("collector-bench-", "stages"));
    let mut store = Store::open(&dir.join("survey.db")).unwrap();
    let now = now_nanos();
    let launches: Vec<u64> = (0..MODELS).map(|m| 1 + u64::from(m % 3)).collect();
    let request = export(
        7,
        &launches,
        now - 3_600_000_000_000,
        now - 60_000_000_000,
        &[],
    );
    let body = gzip(&request.encode_to_vec());
    let clock = Clock {
        now: now as i64,
        retention: 48 * 3600 * 1_000_000_000,
    };
    let validated = validate(&request, clock);
    store.ingest(&[&validated]).unwrap();
    let mut group = c.benchmark_group("stages");
    group.bench_function("decode", |b| {
        b.iter(|| decode(&body, Encoding::Protobuf, Compression::Gzip).unwrap())
    });
    group.bench_function("validate", |b| b.iter(|| validate(&request, clock)));
    group.bench_function("store_repeat", |b| {
        b.iter(|| store.ingest(&[&validated]).unwrap())
    });
    group.finish();
    drop(store);
}

fn main() {
    // reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut criterion = Criterion::default().configure_from_args();
    let mut figures = Vec::new();
    // `cargo bench -p survey-collector -- NAME` runs only what NAME names.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if wanted("stages") {
        stages(&mut criterion);
    }
    if wanted("ingest") {
        ingest(&mut criterion, &mut figures);
    }
    if wanted("storage") {
        storage(&mut figures);
    }
    if wanted("report") {
        report(&mut criterion, &mut figures);
    }
    criterion.final_summary();
    println!("\n{}", figures.join("\n\n"));
}
