//! A small OTLP/HTTP metrics receiver for tests and demos.
//!
//! It listens on 127.0.0.1 (hyper, on the workspace's serve loop in
//! `survey-serve`), records every request as received (path,
//! headers, raw bytes), decodes bodies with the official `opentelemetry-proto`
//! types (protobuf or JSON, gzip or not), and can be told to misbehave:
//! answer with an error status, hang without answering, or drop connections.
//! Stopping it closes the port, so a collector that is down can be simulated
//! too, and [`Receiver::start_on`] brings it back on the same port.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Response, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use prost::Message;

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `200 OK` with an empty export response.
    Accept,
    /// `200 OK` with a `partial_success` rejecting this many points.
    Reject(i64),
    /// This status, with an optional `Retry-After` header.
    Status(u16, Option<String>),
    /// Read the request and never answer (until the mode changes or the receiver stops).
    Hang,
    /// Read the request and close the connection without answering.
    Drop,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// Headers, names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received (compressed if it was sent compressed).
    pub raw_body: Vec<u8>,
    /// The decoded export request, if the body decoded.
    pub decoded: Option<ExportMetricsServiceRequest>,
    /// Decoding problem, if any.
    pub decode_error: Option<String>,
    /// The status the receiver answered with (`0`: none).
    pub answered: u16,
    /// Whether it arrived over TLS.
    pub tls: bool,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every data point in the request, flattened.
    pub fn points(&self) -> Vec<Point> {
        self.decoded.as_ref().map(points).unwrap_or_default()
    }

    /// The resource attributes of the request, as strings.
    pub fn resource_attributes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(decoded) = &self.decoded {
            for rm in &decoded.resource_metrics {
                if let Some(resource) = &rm.resource {
                    for kv in &resource.attributes {
                        out.insert(kv.key.clone(), attribute_text(kv));
                    }
                }
            }
        }
        out
    }
}

/// What kind of metric a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// A monotonic sum (counter).
    Counter,
    /// A non-monotonic sum.
    UpDownCounter,
    /// A gauge.
    Gauge,
    /// A histogram.
    Histogram,
}

/// One data point, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Metric name.
    pub metric: String,
    /// Metric unit.
    pub unit: String,
    /// Metric kind.
    pub kind: PointKind,
    /// Attributes as text (`true`, `2`, `llama`).
    pub attributes: BTreeMap<String, String>,
    /// Counter/gauge value; for a histogram, its count.
    pub value: f64,
    /// Histogram sum.
    pub sum: Option<f64>,
    /// Histogram explicit bounds.
    pub bounds: Vec<f64>,
    /// Histogram bucket counts.
    pub bucket_counts: Vec<u64>,
    /// The point's start time (nanoseconds since the Unix epoch): with the
    /// resource, metric and attributes, it names the point's stream.
    pub start: u64,
}

impl Point {
    /// A row of survey's last export (`survey::last_export`) as a point,
    /// to compare with what arrived; the row has no start time (0 here).
    pub fn from_sent(row: &survey_runtime::SentRow) -> Point {
        use survey_runtime::MetricKind;
        Point {
            metric: row.metric.clone(),
            unit: row.unit.clone(),
            kind: match row.kind {
                MetricKind::Counter => PointKind::Counter,
                MetricKind::UpDownCounter => PointKind::UpDownCounter,
                MetricKind::Gauge => PointKind::Gauge,
                MetricKind::Histogram => PointKind::Histogram,
            },
            attributes: row
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            value: match (&row.value, row.count) {
                (Some(value), None) => value.as_f64(),
                (None, Some(count)) => count as f64,
                other => panic!("a row has a value or a count, not {other:?}"),
            },
            sum: row.sum,
            bounds: row.bounds.clone().unwrap_or_default(),
            bucket_counts: row.bucket_counts.clone().unwrap_or_default(),
            start: 0,
        }
    }

    /// Everything but the start time, as one line: comparable across the
    /// wire and [`Point::from_sent`], and sortable.
    pub fn without_start(&self) -> String {
        format!(
            "{} {:?} {} {:?} {} {:?} {:?} {:?}",
            self.metric,
            self.kind,
            self.unit,
            self.attributes,
            self.value,
            self.sum,
            self.bounds,
            self.bucket_counts
        )
    }

    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Whether every `(key, value)` pair is among the attributes.
    pub fn has(&self, pairs: &[(&str, &str)]) -> bool {
        pairs.iter().all(|(k, v)| self.attr(k) == Some(*v))
    }
}

fn attribute_text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValueKind::StringValue(s)) => s.clone(),
        Some(AnyValueKind::BoolValue(b)) => b.to_string(),
        Some(AnyValueKind::IntValue(i)) => i.to_string(),
        Some(AnyValueKind::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), attribute_text(kv)))
        .collect()
}

/// Survey's kept rows, or a request's points, as sorted lines without
/// start times: equal exactly when they hold the same points.
pub fn sorted_lines(points: impl IntoIterator<Item = Point>) -> Vec<String> {
    let mut lines: Vec<String> = points.into_iter().map(|p| p.without_start()).collect();
    lines.sort();
    lines
}

/// Flattens an export request into points.
pub fn points(request: &ExportMetricsServiceRequest) -> Vec<Point> {
    let mut out = Vec::new();
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                let base = |kind, attrs: &[KeyValue], value, start| Point {
                    metric: metric.name.clone(),
                    unit: metric.unit.clone(),
                    kind,
                    attributes: attributes(attrs),
                    value,
                    sum: None,
                    bounds: Vec::new(),
                    bucket_counts: Vec::new(),
                    start,
                };
                let number = |v: &Option<NumberValue>| match v {
                    Some(NumberValue::AsInt(i)) => *i as f64,
                    Some(NumberValue::AsDouble(d)) => *d,
                    None => f64::NAN,
                };
                match &metric.data {
                    Some(Data::Sum(sum)) => {
                        let kind = if sum.is_monotonic {
                            PointKind::Counter
                        } else {
                            PointKind::UpDownCounter
                        };
                        for p in &sum.data_points {
                            out.push(base(
                                kind,
                                &p.attributes,
                                number(&p.value),
                                p.start_time_unix_nano,
                            ));
                        }
                    }
                    Some(Data::Gauge(gauge)) => {
                        for p in &gauge.data_points {
                            out.push(base(
                                PointKind::Gauge,
                                &p.attributes,
                                number(&p.value),
                                p.start_time_unix_nano,
                            ));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            let mut point = base(
                                PointKind::Histogram,
                                &p.attributes,
                                p.count as f64,
                                p.start_time_unix_nano,
                            );
                            point.sum = p.sum;
                            point.bounds = p.explicit_bounds.clone();
                            point.bucket_counts = p.bucket_counts.clone();
                            out.push(point);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

struct State {
    mode: Mutex<Mode>,
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A running receiver.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
    tls: bool,
}

impl Receiver {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("address")).expect("bind 127.0.0.1")
    }

    /// Starts on `addr` (to come back on the port of a stopped receiver).
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Receiver> {
        Receiver::start_with(addr, None)
    }

    /// Starts an HTTPS receiver on a free port of 127.0.0.1 with this
    /// certificate chain and PKCS#8 private key (DER).
    pub fn start_tls(chain: Vec<Vec<u8>>, key: Vec<u8>) -> std::io::Result<Receiver> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .map_err(std::io::Error::other)?;
        Receiver::start_with(
            "127.0.0.1:0".parse().expect("address"),
            Some(Arc::new(config)),
        )
    }

    fn start_with(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Receiver> {
        let is_tls = tls.is_some();
        let listener = bind_with_retry(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Accept),
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            stop: tokio::sync::watch::Sender::new(false),
        });
        let accept = {
            let state = state.clone();
            std::thread::Builder::new()
                .name("otlp-receiver".into())
                .spawn(move || runtime.block_on(serve(listener, state, tls)))?
        };
        Ok(Receiver {
            addr,
            state,
            accept: Some(accept),
            tls: is_tls,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base endpoint URL (`http://127.0.0.1:PORT`, or `https://` for a TLS
    /// receiver), for `telemetry.endpoint`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode") = mode;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// Waits until `done` holds for the requests so far, or `timeout`.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Request]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut requests = self.state.requests.lock().expect("requests");
        loop {
            if done(&requests) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            requests = self
                .state
                .arrived
                .wait_timeout(requests, deadline - now)
                .expect("requests")
                .0;
        }
    }

    /// Points of the last request answered `2xx`: with cumulative
    /// temporality, the current totals.
    pub fn latest_points(&self) -> Vec<Point> {
        self.requests()
            .iter()
            .rev()
            .find(|r| (200..300).contains(&r.answered) && r.decoded.is_some())
            .map(Request::points)
            .unwrap_or_default()
    }

    /// Stops listening and closes every connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.state.stop.send_replace(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_with_retry(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::AddrInUse => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Largest request body it takes.
const MAX_BODY: usize = 64 << 20;

/// Serves until the receiver stops, on the workspace's serve loop.
async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    // Idle keep-alive connections stay open for the whole of a test, so an
    // export never races the receiver closing its connection.
    let options = survey_serve::Options {
        header_timeout: Duration::from_secs(600),
        drain: Duration::from_secs(5),
        ..survey_serve::Options::default()
    };
    let mut stopped = state.stop.subscribe();
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let is_tls = tls.is_some();
    let service = hyper::service::service_fn(move |request| answer(request, state.clone(), is_tls));
    match tls {
        None => survey_serve::serve(listener, options, shutdown, service).await,
        Some(config) => {
            let tls = tokio_rustls::TlsAcceptor::from(config);
            survey_serve::serve_tls(listener, tls, options, shutdown, service).await
        }
    }
}

/// Records one request and answers it as the mode says; an error closes
/// the connection without an answer.
async fn answer(
    request: hyper::Request<Incoming>,
    state: Arc<State>,
    tls: bool,
) -> std::io::Result<Response<Full<Bytes>>> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().to_string(), |p| p.as_str().to_string());
    // Names come lowercased from hyper.
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
            (name.as_str().to_string(), value)
        })
        .collect();
    let raw_body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes()
        .to_vec();
    let mode = state.mode.lock().expect("mode").clone();
    let answered = match &mode {
        Mode::Accept | Mode::Reject(_) => 200,
        Mode::Status(code, _) => *code,
        Mode::Hang | Mode::Drop => 0,
    };
    let json = headers
        .iter()
        .any(|(n, v)| n == "content-type" && v.contains("json"));
    let mut request = Request {
        method,
        path,
        headers,
        raw_body,
        decoded: None,
        decode_error: None,
        answered,
        tls,
    };
    match decode(&request) {
        Ok(decoded) => request.decoded = Some(decoded),
        Err(e) => request.decode_error = Some(e),
    }
    state.requests.lock().expect("requests").push(request);
    state.arrived.notify_all();
    let unanswered = || std::io::Error::other("closed without an answer");
    match mode {
        Mode::Accept => {
            let (content_type, body): (&str, Vec<u8>) = if json {
                ("application/json", b"{}".to_vec())
            } else {
                ("application/x-protobuf", Vec::new())
            };
            Ok(response(200, content_type, body, None))
        }
        Mode::Reject(points) => {
            use opentelemetry_proto::tonic::collector::metrics::v1::{
                ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
            };
            let answer = ExportMetricsServiceResponse {
                partial_success: Some(ExportMetricsPartialSuccess {
                    rejected_data_points: points,
                    error_message: "RESPONSE-BODY-CANARY".into(),
                }),
            };
            let (content_type, body) = if json {
                (
                    "application/json",
                    serde_json::to_vec(&answer).expect("json"),
                )
            } else {
                ("application/x-protobuf", answer.encode_to_vec())
            };
            Ok(response(200, content_type, body, None))
        }
        Mode::Status(code, retry_after) => Ok(response(
            code,
            "text/plain",
            b"RESPONSE-BODY-CANARY".to_vec(),
            retry_after.as_deref(),
        )),
        Mode::Hang => {
            while !*state.stop.borrow() && *state.mode.lock().expect("mode") == Mode::Hang {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(unanswered())
        }
        Mode::Drop => Err(unanswered()),
    }
}

fn response(
    code: u16,
    content_type: &str,
    body: Vec<u8>,
    retry_after: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut answer = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type);
    if let Some(retry_after) = retry_after {
        answer = answer.header("retry-after", retry_after);
    }
    answer
        .body(Full::new(Bytes::from(body)))
        .expect("a valid answer")
}

fn decode(request: &Request) -> Result<ExportMetricsServiceRequest, String> {
    let body = match request.header("content-encoding") {
        Some(enc) if enc.eq_ignore_ascii_case("gzip") => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(request.raw_body.as_slice())
                .read_to_end(&mut plain)
                .map_err(|e| format!("gzip: {e}"))?;
            plain
        }
        Some(other) => return Err(format!("unsupported content-encoding {other}")),
        None => request.raw_body.clone(),
    };
    match request.header("content-type") {
        Some(ct) if ct.starts_with("application/x-protobuf") => {
            ExportMetricsServiceRequest::decode(body.as_slice())
                .map_err(|e| format!("protobuf: {e}"))
        }
        Some(ct) if ct.starts_with("application/json") => {
            serde_json::from_slice(&body).map_err(|e| format!("json: {e}"))
        }
        other => Err(format!("unexpected content-type {other:?}")),
    }
}

/// A readable table of points: metric, attributes, value.
pub fn render_table(points: &[Point]) -> String {
    let mut rows: Vec<(String, String, String)> = points
        .iter()
        .map(|p| {
            let attrs = p
                .attributes
                .iter()
                .map(|(k, v)| format!("{}={v}", k.trim_start_matches("mesh_llm.")))
                .collect::<Vec<_>>()
                .join(" ");
            let value = match p.kind {
                PointKind::Histogram => format!(
                    "count={} sum={:.1}{}",
                    p.value,
                    p.sum.unwrap_or(f64::NAN),
                    p.unit
                ),
                _ => format!("{}", p.value),
            };
            (p.metric.clone(), attrs, value)
        })
        .collect();
    rows.sort();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    let mut out = format!("{:width$}  {:>20}  attributes\n", "metric", "value");
    for (metric, attrs, value) in rows {
        out.push_str(&format!("{metric:width$}  {value:>20}  {attrs}\n"));
    }
    out
}

/// The points of `metric`.
pub fn of<'a>(points: &'a [Point], metric: &str) -> Vec<&'a Point> {
    points.iter().filter(|p| p.metric == metric).collect()
}

/// The single point of `metric` with these attributes; panics with every
/// point listed otherwise (for tests).
pub fn one<'a>(points: &'a [Point], metric: &str, attrs: &[(&str, &str)]) -> &'a Point {
    let found: Vec<_> = of(points, metric)
        .into_iter()
        .filter(|p| p.has(attrs))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {metric} point with {attrs:?}, got {found:#?}\nall points: {points:#?}"
    );
    found[0]
}

/// The sum of the values of `metric` over every point.
pub fn total(points: &[Point], metric: &str) -> f64 {
    of(points, metric).iter().map(|p| p.value).sum()
}

impl Receiver {
    /// Waits until the latest accepted export satisfies `check`, and returns
    /// its points; panics with the latest points after `timeout` (for tests).
    pub fn wait_for_export(
        &self,
        timeout: Duration,
        check: impl Fn(&[Point]) -> bool,
    ) -> Vec<Point> {
        let matched = self.wait_until(timeout, |requests| {
            requests
                .iter()
                .rev()
                .find(|r| (200..300).contains(&r.answered) && r.decoded.is_some())
                .is_some_and(|r| check(&r.points()))
        });
        let points = self.latest_points();
        assert!(
            matched,
            "no export matched in {timeout:?}; latest: {points:#?}"
        );
        points
    }
}
