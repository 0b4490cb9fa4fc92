//! The export pipeline: `opentelemetry-otlp`'s HTTP metric exporter behind a
//! `PeriodicReader`, with survey's own HTTP client (so config headers win over
//! environment headers) and export bookkeeping for [`Status`](crate::Status).
//!
//! The reader runs exports on its own thread with `futures::executor`, so the
//! client is reqwest's blocking client (the async clients need a Tokio
//! reactor there). TLS is rustls with the `ring` provider.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::{CONTENT_ENCODING, HeaderMap, HeaderName, HeaderValue};
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{MetricExporter, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{Instrument, PeriodicReader, SdkMeterProvider, Stream};
use opentelemetry_sdk::resource::TelemetryResourceDetector;

use crate::clock::SurveyClock;
use crate::config::{Compression, Protocol, Settings, TelemetryMode, Temporality};
use crate::heartbeat::{Decision, Heartbeat, Points};
use crate::schema::ResourceKey;
use crate::sent::{ExportOutcome, LastExportCell, Unchanged};
use crate::status::{ExportCounters, ExportProblem};

/// Resolves a host name to addresses (the system resolver unless the host
/// gives another with [`Setup::resolver`](crate::Setup::resolver)).
pub(crate) type Resolver = Arc<dyn Fn(&str) -> std::io::Result<Vec<SocketAddr>> + Send + Sync>;

/// Series one instrument may hold before the SDK folds new ones into its
/// overflow series. A series reset is due well before: see
/// [`SERIES_RESET_DUE_AT`].
pub(crate) const CARDINALITY_LIMIT: usize = 2000;

/// Launched instances since the last series reset at which a reset is due
/// even before `telemetry.series_reset_secs` has passed. Each instance
/// adds at most one series per instrument. A reset needs an export that
/// succeeds with nothing recorded after its collection began, so a period
/// holds this many plus what arrives until such an export: 1,500 more
/// before the limit.
pub(crate) const SERIES_RESET_DUE_AT: usize = 500;

/// What every generation of the pipeline shares: settings, the HTTP client
/// (with its connections), counters, the last export, and how to ask the
/// recorder for a series reset.
pub(crate) struct Pipeline {
    pub settings: Settings,
    service_version: String,
    /// `None` in local mode.
    client: Option<SurveyHttpClient>,
    pub counters: Arc<ExportCounters>,
    pub last_export: LastExportCell,
    pub reset: SeriesReset,
    /// The last export the collector accepted, and when the next
    /// heartbeat is due.
    pub heartbeat: Heartbeat,
    /// Survey's clock: launch durations, uptimes, heartbeats.
    pub clock: SurveyClock,
}

impl Pipeline {
    pub(crate) fn new(
        settings: Settings,
        service_version: &str,
        resolver: Option<Resolver>,
        clock: SurveyClock,
    ) -> Result<Pipeline, String> {
        let counters = Arc::new(ExportCounters::default());
        let client = match settings.mode {
            TelemetryMode::Local => None,
            TelemetryMode::Export => Some(SurveyHttpClient::new(
                &settings,
                resolver,
                counters.clone(),
            )?),
        };
        Ok(Pipeline {
            service_version: service_version.to_string(),
            client,
            counters,
            last_export: LastExportCell::default(),
            reset: SeriesReset::new(settings.series_reset),
            heartbeat: Heartbeat::new(settings.heartbeat),
            clock,
            settings,
        })
    }
}

/// One meter provider's own state. A series reset retires a generation:
/// its exporter starts no export after that (one already in flight ends as
/// it would have), so shutting it down costs no request.
#[derive(Debug)]
pub(crate) struct Generation {
    /// The Unix second it was made in, just before its instruments: their
    /// series start in this second or the next.
    started: u64,
    retired: AtomicBool,
    /// Events recorded when this generation's last collection began: all of
    /// them are in what it exports next.
    collected_events: AtomicU64,
}

impl Generation {
    pub(crate) fn new() -> Generation {
        Generation {
            started: unix_secs(),
            retired: AtomicBool::new(false),
            collected_events: AtomicU64::new(0),
        }
    }

    /// Whether a generation made now would have its series start in a
    /// later second than any of this one's. Collectors that keep start
    /// times to the second (the ClickHouse exporter) tell two streams of a
    /// series apart only then.
    pub(crate) fn second_has_passed(&self) -> bool {
        unix_secs() > self.started + 1
    }

    /// Called at the start of each collection (from a gauge callback).
    pub(crate) fn collecting(&self, events_recorded: u64) {
        self.collected_events
            .store(events_recorded, Ordering::SeqCst);
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Tells generations apart in reset requests.
    pub(crate) fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When a series reset is due, and the wake-up of the recorder that does it.
pub(crate) struct SeriesReset {
    /// Least time between resets; `None`: never.
    every: Option<Duration>,
    last: Mutex<Instant>,
    /// The recorder saw series of instances no longer loaded.
    pub ended_series: AtomicBool,
    /// The recorder saw [`SERIES_RESET_DUE_AT`] instances since the last reset.
    pub crowded: AtomicBool,
    /// Asks the recorder to reset: the generation whose export succeeded,
    /// and the events count all of which that export held.
    request: OnceLock<Box<dyn Fn(usize, u64) + Send + Sync>>,
}

impl SeriesReset {
    pub(crate) fn new(every: Option<Duration>) -> SeriesReset {
        SeriesReset {
            every,
            last: Mutex::new(Instant::now()),
            ended_series: AtomicBool::new(false),
            crowded: AtomicBool::new(false),
            request: OnceLock::new(),
        }
    }

    pub(crate) fn set_request(&self, request: impl Fn(usize, u64) + Send + Sync + 'static) {
        let _ = self.request.set(Box::new(request));
    }

    /// Whether resets happen at all (the recorder then tracks instances).
    pub(crate) fn enabled(&self) -> bool {
        self.every.is_some()
    }

    /// Whether a reset is due at `now`: resets are on, series of instances
    /// no longer loaded are being exported, and the period has passed (or
    /// too many instances have series).
    pub(crate) fn due(&self, now: Instant) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        if !self.ended_series.load(Ordering::SeqCst) {
            return false;
        }
        let waited = self
            .last
            .lock()
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(*last));
        waited >= every || self.crowded.load(Ordering::SeqCst)
    }

    /// After a whole success of `generation` that held every event up to
    /// `exported_events`: asks the recorder for a reset if one is due.
    fn after_success(&self, now: Instant, generation: usize, exported_events: u64) {
        if self.due(now)
            && let Some(request) = self.request.get()
        {
            request(generation, exported_events);
        }
    }

    /// The recorder did a reset at `now`.
    pub(crate) fn done(&self, now: Instant) {
        if let Ok(mut last) = self.last.lock() {
            *last = now;
        }
        self.ended_series.store(false, Ordering::SeqCst);
        self.crowded.store(false, Ordering::SeqCst);
    }
}

/// Builds a meter provider for `generation`: exporting to the endpoint, or
/// in local mode keeping each collection without sending it.
pub(crate) fn meter_provider(
    pipeline: &Arc<Pipeline>,
    generation: Arc<Generation>,
) -> Result<SdkMeterProvider, String> {
    let settings = &pipeline.settings;
    let inner = match &pipeline.client {
        None => None,
        Some(client) => Some(otlp_exporter(settings, client.clone())?),
    };
    let reader = PeriodicReader::builder(SurveyExporter {
        inner,
        pipeline: pipeline.clone(),
        generation,
        temporality: sdk_temporality(settings.temporality),
    })
    .with_interval(settings.export_interval)
    .build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource(&settings.service_name, &pipeline.service_version))
        .with_reader(reader)
        .with_view(|_: &Instrument| {
            Stream::builder()
                .with_cardinality_limit(CARDINALITY_LIMIT)
                .build()
                .ok()
        })
        .build())
}

fn sdk_temporality(temporality: Temporality) -> opentelemetry_sdk::metrics::Temporality {
    match temporality {
        Temporality::Cumulative => opentelemetry_sdk::metrics::Temporality::Cumulative,
        Temporality::Delta => opentelemetry_sdk::metrics::Temporality::Delta,
        Temporality::LowMemory => opentelemetry_sdk::metrics::Temporality::LowMemory,
    }
}

fn otlp_exporter(settings: &Settings, client: SurveyHttpClient) -> Result<MetricExporter, String> {
    let mut builder = MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(settings.endpoint.clone())
        .with_protocol(match settings.protocol {
            Protocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
            Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        })
        .with_timeout(settings.timeout)
        .with_retry_policy(retry_policy(settings.timeout));
    if settings.compression == Compression::Gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    builder
        .with_temporality(sdk_temporality(settings.temporality))
        .build()
        .map_err(|e| e.to_string())
}

/// `service.name`, `service.version`, `service.instance.id` and
/// `telemetry.sdk.*`; nothing from the environment (`OTEL_RESOURCE_ATTRIBUTES`
/// is deliberately not read).
fn resource(service_name: &str, service_version: &str) -> Resource {
    let mut attributes = vec![
        KeyValue::new(ResourceKey::ServiceName.as_str(), service_name.to_string()),
        KeyValue::new(
            ResourceKey::ServiceVersion.as_str(),
            service_version.to_string(),
        ),
    ];
    if let Some(id) = instance_id() {
        attributes.push(KeyValue::new(ResourceKey::ServiceInstanceId.as_str(), id));
    }
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(attributes)
        .build()
}

/// This process's `service.instance.id`: a random UUID v4, drawn from the
/// operating system's random source the first time it is needed and kept
/// for the life of the process (a rebuilt meter provider reuses it).
///
/// It is derived from nothing: not the host, the user, the hardware or the
/// time, so it cannot be linked to a machine or across restarts. It exists so
/// that a collector can tell apart the cumulative series of two nodes that
/// run the same model on the same hardware. `None` only if the operating
/// system has no random source to give, in which case the resource goes
/// without it (collectors accept such exports) rather than use a weak id.
fn instance_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let mut bytes = [0u8; 16];
        match getrandom::fill(&mut bytes) {
            Ok(()) => Some(uuid_v4(bytes)),
            Err(error) => {
                tracing::warn!(
                    target: "survey",
                    "no random source for service.instance.id ({error}); exporting without it"
                );
                None
            }
        }
    })
    .as_deref()
}

/// Formats 16 random bytes as a version 4, variant 1 UUID (RFC 9562).
fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Exponential backoff with jitter inside one export's time budget, so a retry
/// never outlives the next export.
fn retry_policy(budget: Duration) -> RetryPolicy {
    let max_delay = (budget / 4).clamp(Duration::from_millis(10), Duration::from_secs(2));
    RetryPolicy::recommended()
        .with_max_retries(3)
        .with_initial_delay(Duration::from_millis(100).min(max_delay))
        .with_max_delay(max_delay)
        .with_max_jitter(Duration::from_millis(50).min(max_delay))
}

/// The OTLP exporter (none in local mode) with survey's bookkeeping: the
/// last export's content, export health, and series resets.
struct SurveyExporter {
    inner: Option<MetricExporter>,
    pipeline: Arc<Pipeline>,
    generation: Arc<Generation>,
    temporality: opentelemetry_sdk::metrics::Temporality,
}

impl std::fmt::Debug for SurveyExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurveyExporter")
            .field("local", &self.inner.is_none())
            .finish()
    }
}

impl SurveyExporter {
    /// Sends `metrics` (in local mode: keeps them), unless they equal the
    /// last export the collector accepted and no heartbeat is due.
    async fn export_or_leave_out(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let pipeline = &self.pipeline;
        let heartbeat = &pipeline.heartbeat;
        let exported_events = self.generation.collected_events.load(Ordering::SeqCst);
        let points = heartbeat.enabled().then(|| Points::of(metrics));
        if let Some(points) = &points
            && let Decision::Skip {
                since_unix_secs,
                heartbeat_in,
            } = heartbeat.decide(points, pipeline.clock.now())
        {
            let unchanged = Unchanged {
                since_unix_secs,
                heartbeat_in_secs: heartbeat_in.as_secs(),
            };
            pipeline
                .last_export
                .keep(metrics, ExportOutcome::Unchanged, Some(unchanged));
            pipeline
                .counters
                .exports_unchanged
                .fetch_add(1, Ordering::Relaxed);
            // No request: the HTTP client's threads are not woken.
            // The log says so once (not once an export, nor an hour); the
            // status counts them and `last_export` shows the latest.
            if heartbeat.skipped() {
                tracing::info!(
                    target: "survey",
                    "export {unchanged}: an unchanged export is sent at most every {} \
                     (telemetry.heartbeat_secs), a change at the next interval",
                    crate::status::Age(pipeline.settings.heartbeat.unwrap_or_default())
                );
            } else {
                tracing::debug!(target: "survey", "export {unchanged}");
            }
            return Ok(());
        }
        let (whole, result) = match &self.inner {
            None => {
                pipeline
                    .last_export
                    .keep(metrics, ExportOutcome::Local, None);
                let (whole, _) = pipeline.counters.export_finished(Instant::now(), Ok(()));
                (whole, Ok(()))
            }
            Some(inner) => {
                pipeline
                    .last_export
                    .keep(metrics, ExportOutcome::Sending, None);
                let result = inner.export(metrics).await;
                let (whole, line) = pipeline.counters.export_finished(
                    Instant::now(),
                    result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
                );
                pipeline.last_export.finish(if whole {
                    ExportOutcome::Sent
                } else {
                    ExportOutcome::Failed
                });
                if let Some(line) = line {
                    line.log(&pipeline.settings.display_endpoint());
                }
                (whole, result)
            }
        };
        if whole {
            if let Some(points) = points {
                heartbeat.accepted(points, pipeline.clock.now());
            }
            // Only an export sent and accepted may start a series reset.
            pipeline
                .reset
                .after_success(Instant::now(), self.generation.id(), exported_events);
        } else {
            heartbeat.failed();
        }
        result
    }
}

impl PushMetricExporter for SurveyExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        if self.generation.retired.load(Ordering::SeqCst) {
            // Everything this generation held was exported before it retired.
            return Ok(());
        }
        let result = self.export_or_leave_out(metrics).await;
        self.pipeline
            .counters
            .exports_finished
            .fetch_add(1, Ordering::SeqCst);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner
            .as_ref()
            .map_or(Ok(()), |inner| inner.force_flush())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner
            .as_ref()
            .map_or(Ok(()), |inner| inner.shutdown_with_timeout(timeout))
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.temporality
    }
}

/// reqwest's blocking client with the resolved headers applied last, so the
/// config wins over the `OTEL_EXPORTER_OTLP_*HEADERS` values that
/// `opentelemetry-otlp` merges in by itself. Clones share the client and
/// its connections.
#[derive(Debug, Clone)]
struct SurveyHttpClient {
    client: reqwest::blocking::Client,
    headers: HeaderMap,
    /// The config asked for no compression but the environment asked the
    /// exporter for gzip: undo it.
    force_identity: bool,
    protocol: Protocol,
    counters: Arc<ExportCounters>,
}

impl SurveyHttpClient {
    fn new(
        settings: &Settings,
        resolver: Option<Resolver>,
        counters: Arc<ExportCounters>,
    ) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = settings.timeout;
        let resolver = HostResolver(resolver);
        // reqwest's blocking client must not be built on a Tokio thread.
        let client = std::thread::Builder::new()
            .name("survey-http-init".into())
            .spawn(move || {
                reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .redirect(reqwest::redirect::Policy::none())
                    // No idle-connection timer waking the client between exports.
                    .pool_idle_timeout(None)
                    .dns_resolver(Arc::new(resolver))
                    .build()
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?
            .join()
            .map_err(|_| "building the HTTP client panicked".to_string())?
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(SurveyHttpClient {
            client,
            headers: header_map(&settings.headers)?,
            force_identity: settings.compression == Compression::None,
            protocol: settings.protocol,
            counters,
        })
    }
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

#[async_trait]
impl HttpClient for SurveyHttpClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        if self.force_identity
            && request
                .headers()
                .get(CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
        {
            use std::io::Read;
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(request.body().as_ref()).read_to_end(&mut plain)?;
            request.headers_mut().remove(CONTENT_ENCODING);
            *request.body_mut() = Bytes::from(plain);
        }
        match self.client.send_bytes(request).await {
            Ok(response) => {
                if !response.status().is_success() {
                    self.counters
                        .note_transport_problem(ExportProblem::HttpStatus(
                            response.status().as_u16(),
                        ));
                } else if let Some(points) = rejected_points(self.protocol, response.body()) {
                    self.counters
                        .note_transport_problem(ExportProblem::Rejected(points));
                }
                Ok(response)
            }
            Err(error) => {
                self.counters.note_transport_problem(classify(&*error));
                Err(error)
            }
        }
    }
}

/// The points a collector's `partial_success` says it rejected, if any.
fn rejected_points(protocol: Protocol, body: &[u8]) -> Option<u64> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    if body.is_empty() {
        return None;
    }
    let rejected = match protocol {
        Protocol::HttpProtobuf => {
            <ExportMetricsServiceResponse as prost::Message>::decode(body)
                .ok()?
                .partial_success?
                .rejected_data_points
        }
        // OTLP/JSON writes 64-bit integers as strings, and some senders as
        // numbers: take either.
        Protocol::HttpJson => {
            let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
            let count = answer.get("partialSuccess")?.get("rejectedDataPoints")?;
            match count {
                serde_json::Value::String(text) => text.trim().parse().ok()?,
                number => number.as_i64()?,
            }
        }
    };
    u64::try_from(rejected).ok().filter(|n| *n > 0)
}

/// A host name that did not resolve; found again in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve the collector's host name")]
struct ResolveFailed(#[source] std::io::Error);

/// Name resolution for the HTTP client: the host's resolver, else the
/// system's, on the client runtime's pool of blocking threads (bounded, and
/// reused), its failures marked so [`classify`] can name them.
struct HostResolver(Option<Resolver>);

impl reqwest::dns::Resolve for HostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let resolver = self.0.clone();
        let lookup = move || match resolver {
            Some(resolve) => resolve(&host),
            None => std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
                .map(|addrs| addrs.collect()),
        };
        let pending =
            tokio::runtime::Handle::try_current().map(|runtime| runtime.spawn_blocking(lookup));
        Box::pin(async move {
            let result = match pending {
                Ok(task) => task
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("the lookup was cancelled"))),
                Err(_) => Err(std::io::Error::other("no runtime to resolve on")),
            };
            match result {
                Ok(addrs) if !addrs.is_empty() => {
                    let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
                    Ok(addrs)
                }
                Ok(_) => Err(
                    Box::new(ResolveFailed(std::io::Error::other("no addresses")))
                        as Box<dyn std::error::Error + Send + Sync>,
                ),
                Err(error) => Err(Box::new(ResolveFailed(error)) as _),
            }
        })
    }
}

/// Why a request failed, from its error chain. Never holds the URL (which
/// may carry credentials).
fn classify(error: &(dyn std::error::Error + 'static)) -> ExportProblem {
    let mut timed_out = error
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_timeout);
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<ResolveFailed>() {
            return ExportProblem::NameResolution;
        }
        if let Some(problem) = error.downcast_ref::<rustls::Error>().and_then(tls_problem) {
            return problem;
        }
        let mut next = error.source();
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ExportProblem::ConnectionRefused,
                std::io::ErrorKind::TimedOut => timed_out = true,
                _ => {}
            }
            // An io::Error's source skips the error it wraps: go through it.
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
            }
        }
        current = next;
    }
    if timed_out {
        ExportProblem::TimedOut
    } else {
        ExportProblem::Connection
    }
}

fn tls_problem(error: &rustls::Error) -> Option<ExportProblem> {
    use rustls::CertificateError as C;
    Some(match error {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => ExportProblem::CertificateNameMismatch,
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => ExportProblem::CertificateExpired,
        rustls::Error::InvalidCertificate(_) => ExportProblem::CertificateNotTrusted,
        // What an HTTP server answers to a TLS hello ("HTTP/1.1 400 ...")
        // is no TLS record.
        rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
            | rustls::InvalidMessage::UnknownProtocolVersion,
        ) => ExportProblem::PlainHttp,
        _ => ExportProblem::Tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_points_are_read_in_both_encodings_and_both_json_forms() {
        use opentelemetry_proto::tonic::collector::metrics::v1::{
            ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
        };
        let answer = |rejected_data_points| ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message: "why".into(),
            }),
        };
        let proto = prost::Message::encode_to_vec(&answer(4));
        assert_eq!(rejected_points(Protocol::HttpProtobuf, &proto), Some(4));
        let none = prost::Message::encode_to_vec(&answer(0));
        assert_eq!(rejected_points(Protocol::HttpProtobuf, &none), None);
        assert_eq!(rejected_points(Protocol::HttpProtobuf, b""), None);
        for (body, expected) in [
            (r#"{"partialSuccess":{"rejectedDataPoints":"7"}}"#, Some(7)),
            (r#"{"partialSuccess":{"rejectedDataPoints":7}}"#, Some(7)),
            (r#"{"partialSuccess":{"rejectedDataPoints":"0"}}"#, None),
            (
                r#"{"partialSuccess":{"errorMessage":"warning only"}}"#,
                None,
            ),
            (r#"{}"#, None),
            ("not json", None),
        ] {
            assert_eq!(
                rejected_points(Protocol::HttpJson, body.as_bytes()),
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn tls_errors_name_their_cause() {
        use rustls::CertificateError as C;
        let cases = [
            (C::UnknownIssuer, ExportProblem::CertificateNotTrusted),
            (C::BadSignature, ExportProblem::CertificateNotTrusted),
            (C::Expired, ExportProblem::CertificateExpired),
            (C::NotValidYet, ExportProblem::CertificateExpired),
            (C::NotValidForName, ExportProblem::CertificateNameMismatch),
        ];
        for (error, expected) in cases {
            let wrapped = std::io::Error::other(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(error),
            ));
            assert_eq!(classify(&wrapped), expected);
        }
        let plain = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(classify(&plain), ExportProblem::PlainHttp);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), ExportProblem::ConnectionRefused);
        let unresolved = std::io::Error::other(ResolveFailed(std::io::Error::other("x")));
        assert_eq!(classify(&unresolved), ExportProblem::NameResolution);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset), ExportProblem::Connection);
    }

    #[test]
    fn instance_ids_are_uuid_v4_and_drawn_once() {
        let id = instance_id().expect("a random source");
        assert!(crate::schema::is_uuid_v4(id), "{id}");
        assert_eq!(&id[14..15], "4", "version 4: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant 1: {id}"
        );
        assert_eq!(instance_id(), Some(id), "kept for the process");
        assert_eq!(uuid_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }
}
