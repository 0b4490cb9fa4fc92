//! Shared pieces of the collector's tests: temporary directories, an
//! in-process collector, an HTTP client, and OTLP requests built by hand
//! for the cases a real exporter cannot be made to produce on demand
//! (chosen timestamps, retries, out-of-order points, delta temporality).

#![allow(dead_code)]

pub mod node;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use serde_json::Value as Json;
use survey_collector::Limits;
use survey_collector::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use survey_collector::otlp::common::v1::any_value::Value as AnyValueKind;
use survey_collector::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use survey_collector::otlp::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, metric::Data, number_data_point::Value as NumberValue,
};
use survey_collector::otlp::resource::v1::Resource;
use survey_collector::{Report, ReportOptions, ServeConfig, Server, Store};
use survey_schema as schema;

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "survey-collector-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("survey.db")
    }

    /// Every byte of every file in the directory.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.0).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.extend(std::fs::read(&path).unwrap());
            }
        }
        out
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A collector on a free port of 127.0.0.1 with a fresh database.
pub async fn collector(dir: &TempDir) -> Server {
    collector_with(dir, Default::default(), Limits::default()).await
}

pub async fn collector_with(
    dir: &TempDir,
    tokens: survey_collector::Tokens,
    limits: Limits,
) -> Server {
    Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.db(),
        tokens,
        tls: None,
        retention: Duration::from_secs(48 * 3600),
        limits,
    })
    .await
    .expect("collector starts")
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The export response of a protobuf answer.
    pub fn response(&self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse::decode(self.body.as_slice()).expect("export response")
    }

    /// Points rejected through `partial_success` (0 when absent).
    pub fn rejected(&self) -> i64 {
        self.response()
            .partial_success
            .map_or(0, |p| p.rejected_data_points)
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends `body` to `url` with `headers`.
pub async fn send(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut request = client().request(method, url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// POSTs an export request as protobuf to `server`'s `/v1/metrics`.
pub async fn export(server: &Server, request: &ExportMetricsServiceRequest) -> Answer {
    send(
        reqwest::Method::POST,
        &format!("{}/v1/metrics", server.endpoint()),
        &[("content-type", "application/x-protobuf")],
        request.encode_to_vec(),
    )
    .await
}

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

/// The JSON report of the database in `dir`.
pub fn report(dir: &TempDir, options: ReportOptions) -> Json {
    let store = Store::open_read_only(&dir.db()).expect("database");
    summaries_agree(&store, dir);
    Report::build(&store, options).expect("report").to_json()
}

/// The streams' series and summaries that ingest kept, point by point,
/// equal those rebuilt from the rollup rows (on a copy of the database).
fn summaries_agree(store: &Store, dir: &TempDir) {
    const SUMMARY: &str = "SELECT StreamId, SeriesId, FirstDay, LastDay, Whole, \
                           WholeBuckets, WholeDay FROM streams ORDER BY StreamId";
    let read = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut stmt = conn.prepare(SUMMARY).unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..7)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join(" | "))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let kept = read(store.connection());
    let copy = dir.path().join("summaries-copy.db");
    let _ = std::fs::remove_file(&copy);
    store
        .connection()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let mut rebuilt = Store::open(&copy).unwrap();
    rebuilt.summarize_all().unwrap();
    assert_eq!(kept, read(rebuilt.connection()), "summaries kept by ingest");
    drop(rebuilt);
    let _ = std::fs::remove_file(&copy);
}

/// The rows of question `key`.
pub fn rows<'a>(report: &'a Json, key: &str) -> &'a Vec<Json> {
    report[key].as_array().expect("a list of rows")
}

/// The row of `key` whose fields match `pairs`; panics otherwise.
pub fn row<'a>(report: &'a Json, key: &str, pairs: &[(&str, Json)]) -> &'a Json {
    let found: Vec<_> = rows(report, key)
        .iter()
        .filter(|r| pairs.iter().all(|(k, v)| &r[*k] == v))
        .collect();
    assert_eq!(found.len(), 1, "{key} rows with {pairs:?}: {report:#}");
    found[0]
}

/// Rows in the raw table `table`.
pub fn raw_rows(dir: &TempDir, table: &str) -> i64 {
    let store = Store::open_read_only(&dir.db()).unwrap();
    store
        .connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

// ---------------------------------------------------------------------
// OTLP requests by hand.

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

/// Rows in `streams`.
pub fn stream_rows(dir: &TempDir) -> i64 {
    raw_rows(dir, "streams")
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
    pub fn new(n: u32) -> Node {
        Node {
            id: Some(format!("00000000-0000-4000-8000-{n:012x}")),
            extra: Vec::new(),
        }
    }

    pub fn legacy() -> Node {
        Node {
            id: None,
            extra: Vec::new(),
        }
    }
}

pub fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::IntValue(value)),
        }),
        ..Default::default()
    }
}

pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::BoolValue(value)),
        }),
        ..Default::default()
    }
}

/// The attributes survey puts on a launch of `model` on an RTX 4090 node.
pub fn model_attrs(model: &str) -> Vec<KeyValue> {
    vec![
        kv_str("mesh_llm.model", model),
        kv_str("mesh_llm.architecture", "qwen3"),
        kv_str("mesh_llm.quantization", "Q4_K_M"),
        kv_str("mesh_llm.launch_kind", "runtime_load"),
        kv_str("mesh_llm.gpu_name", "NVIDIA GeForce RTX 4090"),
        kv_str("mesh_llm.gpu_stable_id", "6f1c2d3e4b5a6978"),
        kv_str("mesh_llm.backend_device", "cuda"),
        kv_int("mesh_llm.gpu_count", 1),
        kv_bool("mesh_llm.is_soc", false),
        kv_str("mesh_llm.backend", "llama.cpp"),
        kv_str("mesh_llm.context_bucket", "<=8k"),
        kv_str("mesh_llm.service_version", "1.0.0"),
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

/// Sends `head` (request line and headers, without the blank line) and
/// then `body` over a plain TCP connection, and reads the answer's status
/// line; for requests a regular client will not send.
pub async fn raw_status(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Runs `survey-collector report --db DB ARGS...` and waits for it.
pub fn collector_report(db: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_survey-collector"))
        .arg("report")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}
