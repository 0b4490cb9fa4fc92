//! The export pipeline: `opentelemetry-otlp`'s HTTP metric exporter behind a
//! `PeriodicReader`, with survey's own HTTP client (so config headers win over
//! environment headers) and export bookkeeping for [`Status`](crate::Status).
//!
//! The reader runs exports on its own thread with `futures::executor`, so the
//! client is reqwest's blocking client (the async clients need a Tokio
//! reactor there). TLS is rustls with the `ring` provider.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use http::header::{CONTENT_ENCODING, HeaderMap, HeaderName, HeaderValue};
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{MetricExporter, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::resource::TelemetryResourceDetector;

use crate::config::{Compression, Protocol, Settings, Temporality};
use crate::schema::ResourceKey;
use crate::status::ExportCounters;

/// Builds the meter provider that exports to `settings.endpoint`.
pub(crate) fn meter_provider(
    settings: &Settings,
    service_version: &str,
    counters: Arc<ExportCounters>,
) -> Result<SdkMeterProvider, String> {
    let client = SurveyHttpClient::new(settings, counters.clone())?;
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
    let exporter = builder
        .with_temporality(match settings.temporality {
            Temporality::Cumulative => opentelemetry_sdk::metrics::Temporality::Cumulative,
            Temporality::Delta => opentelemetry_sdk::metrics::Temporality::Delta,
            Temporality::LowMemory => opentelemetry_sdk::metrics::Temporality::LowMemory,
        })
        .build()
        .map_err(|e| e.to_string())?;
    let reader = PeriodicReader::builder(CountingExporter {
        inner: exporter,
        counters,
    })
    .with_interval(settings.export_interval)
    .build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource(&settings.service_name, service_version))
        .with_reader(reader)
        .build())
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

/// The OTLP exporter, counting successes and failures for [`Status`](crate::Status).
#[derive(Debug)]
struct CountingExporter {
    inner: MetricExporter,
    counters: Arc<ExportCounters>,
}

impl PushMetricExporter for CountingExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        match &result {
            Ok(()) => self.counters.export_succeeded(),
            Err(error) => self.counters.export_failed(error.to_string()),
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

/// reqwest's blocking client with the resolved headers applied last, so the
/// config wins over the `OTEL_EXPORTER_OTLP_*HEADERS` values that
/// `opentelemetry-otlp` merges in by itself.
#[derive(Debug)]
struct SurveyHttpClient {
    client: reqwest::blocking::Client,
    headers: HeaderMap,
    /// The config asked for no compression but the environment asked the
    /// exporter for gzip: undo it.
    force_identity: bool,
    counters: Arc<ExportCounters>,
}

impl SurveyHttpClient {
    fn new(settings: &Settings, counters: Arc<ExportCounters>) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = settings.timeout;
        // reqwest's blocking client must not be built on a Tokio thread.
        let client = std::thread::Builder::new()
            .name("survey-http-init".into())
            .spawn(move || {
                reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .redirect(reqwest::redirect::Policy::none())
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
                    self.counters.note_transport_problem(format!(
                        "collector answered HTTP {}",
                        response.status().as_u16()
                    ));
                }
                Ok(response)
            }
            Err(error) => {
                self.counters
                    .note_transport_problem(describe_transport_error(&*error));
                Err(error)
            }
        }
    }
}

/// A transport error without the URL (which may carry credentials).
fn describe_transport_error(error: &(dyn std::error::Error + 'static)) -> String {
    match error.downcast_ref::<reqwest::Error>() {
        Some(e) if e.is_timeout() => "the collector did not answer in time".to_string(),
        Some(e) if e.is_connect() => "cannot connect to the collector".to_string(),
        Some(_) => "the request to the collector failed".to_string(),
        None => format!("request failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
