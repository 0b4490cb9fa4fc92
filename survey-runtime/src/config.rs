//! Configuration: the `[telemetry]` table, the standard `OTEL_*` environment
//! variables, and the pure resolver that turns both into [`Settings`].
//!
//! Precedence, per setting: the config file, then the signal-specific `OTEL_*`
//! variable, then the general one, then the default. Opt-in is explicit:
//! ambient `OTEL_*` variables alone never enable survey.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::privacy;

/// The `[telemetry]` table of the host's config file.
///
/// ```toml
/// [telemetry]
/// enabled = true
/// service_name = "mesh-llm"
/// endpoint = "https://otel.example.com"        # /v1/metrics is appended
/// headers = { "authorization" = "Bearer TOKEN" }
/// export_interval_secs = 15
/// queue_size = 2048
/// prompt_shape_metrics = false
/// heartbeat_secs = 3600    # an unchanged export is sent at most this often; 0 = every interval
///
/// [telemetry.metrics]
/// endpoint = "https://otel.example.com/v1/metrics"  # used as given
/// ```
///
/// `mode = "local"` records everything at each interval without sending
/// anything, so a person can look at what would be sent (`survey show`)
/// before opting in.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `true` opts in; `false` always turns survey off.
    pub enabled: Option<bool>,
    /// `"export"` (default) sends to the endpoint; `"local"` opts in but
    /// only records locally: nothing leaves the machine and no endpoint is
    /// needed. A switch set to `false` still wins.
    pub mode: Option<String>,
    /// `service.name` of the exported resource (default `OTEL_SERVICE_NAME`, else `mesh-llm`).
    pub service_name: Option<String>,
    /// Base OTLP/HTTP endpoint; `/v1/metrics` is appended.
    pub endpoint: Option<String>,
    /// Headers sent with every export; they win over `OTEL_EXPORTER_OTLP_*HEADERS`.
    pub headers: BTreeMap<String, String>,
    /// Seconds between exports (default 15). Fractions are allowed.
    pub export_interval_secs: Option<f64>,
    /// Capacity of the event queue (default 2048); the oldest event is dropped when full.
    pub queue_size: Option<usize>,
    /// `true` records the inference metrics (opt-in, default `false`): per
    /// request, its outcome, token counts, speeds and time to first token,
    /// as numbers only. No `OTEL_*` variable turns it on.
    pub prompt_shape_metrics: bool,
    /// Seconds one export may take, retries included (default 10, at most the interval).
    pub timeout_secs: Option<f64>,
    /// `gzip` (default) or `none`.
    pub compression: Option<String>,
    /// `http/protobuf` (default) or `http/json`.
    pub protocol: Option<String>,
    /// Longest time shutdown may take, final export included (default 3 s).
    pub shutdown_timeout_secs: Option<f64>,
    /// Seconds between restarts of the cumulative series (default 3600; `0`
    /// never restarts). Right after a successful export, when models that
    /// ended still have series, survey starts every series anew, so series
    /// of models gone long ago stop being exported. No count is lost: the
    /// restart happens only when everything recorded was in that export.
    pub series_reset_secs: Option<f64>,
    /// Seconds between heartbeats (default 3600; `0` sends every
    /// interval). Under cumulative temporality an export whose points
    /// equal those of the last export the collector accepted whole (only
    /// the point times differ) is not sent until this long after that
    /// export; anything that changed goes out at the next interval. A
    /// value below the export interval sends every interval (with a
    /// warning). No `OTEL_*` variable sets it.
    pub heartbeat_secs: Option<f64>,
    /// `[telemetry.metrics]`: overrides for the metrics signal.
    pub metrics: MetricsConfig,
}

/// The `[telemetry.metrics]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Full metrics endpoint, used exactly as given.
    pub endpoint: Option<String>,
}

/// Where environment variables come from; tests pass a table.
pub trait EnvSource {
    /// The value of `key`, or `None` when unset.
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl EnvSource for [(&str, &str)] {
    fn var(&self, key: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_string())
    }
}

impl<const N: usize> EnvSource for [(&str, &str); N] {
    fn var(&self, key: &str) -> Option<String> {
        self.as_slice().var(key)
    }
}

/// Names of the environment variables survey reads.
pub mod env {
    /// `true` turns survey off.
    pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    /// `service.name` when the config has none.
    pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    /// Base endpoint; `/v1/metrics` is appended.
    pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// Metrics endpoint, used as given.
    pub const METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
    /// `key=value,key2=value2` headers.
    pub const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    /// Metrics-only headers, preferred over [`HEADERS`].
    pub const METRICS_HEADERS: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
    /// Export timeout in milliseconds.
    pub const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    /// Metrics export timeout in milliseconds.
    pub const METRICS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
    /// `gzip` or `none`.
    pub const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    /// Metrics compression.
    pub const METRICS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION";
    /// `http/protobuf` or `http/json`.
    pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// Metrics protocol.
    pub const METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
    /// `cumulative` (default), `delta` or `lowmemory`.
    pub const TEMPORALITY: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
    /// Export interval in milliseconds.
    pub const EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
}

/// Wire encoding of the OTLP/HTTP request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`, `application/x-protobuf`.
    HttpProtobuf,
    /// `http/json`, `application/json`.
    HttpJson,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `Content-Encoding: gzip`.
    Gzip,
    /// Uncompressed.
    None,
}

/// Where the collected metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelemetryMode {
    /// Exported to the endpoint (`mode = "export"`, the default).
    Export,
    /// Recorded locally only (`mode = "local"`): nothing is sent.
    Local,
}

/// Aggregation temporality of counters and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Totals since start: a lost export delays data but never loses counts.
    Cumulative,
    /// Changes since the last export.
    Delta,
    /// Delta for counters and histograms (`lowmemory` in the OTel spec).
    LowMemory,
}

/// Everything the exporter needs, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Export, or record locally only.
    pub mode: TelemetryMode,
    /// Full URL the metrics are posted to (empty in local mode).
    pub endpoint: String,
    /// The config key or variable the endpoint came from.
    pub endpoint_source: &'static str,
    /// Headers sent with each export, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// Body encoding.
    pub protocol: Protocol,
    /// Body compression.
    pub compression: Compression,
    /// Time budget of one export, retries included.
    pub timeout: Duration,
    /// Time between exports.
    pub export_interval: Duration,
    /// Event queue capacity.
    pub queue_size: usize,
    /// Aggregation temporality.
    pub temporality: Temporality,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// Bound on [`SurveyGuard::shutdown`](crate::SurveyGuard::shutdown).
    pub shutdown_timeout: Duration,
    /// Least time between two restarts of the cumulative series; `None`: never.
    pub series_reset: Option<Duration>,
    /// Longest time an unchanged export goes unsent after the last
    /// export the collector accepted (`telemetry.heartbeat_secs`); `None`:
    /// every export is sent (heartbeat 0, delta temporality, or a
    /// heartbeat shorter than the interval).
    pub heartbeat: Option<Duration>,
    /// Whether the opt-in inference metrics are recorded
    /// (`telemetry.prompt_shape_metrics`).
    pub prompt_shape_metrics: bool,
}

impl Settings {
    /// The endpoint without user info, query or fragment, for status and
    /// logs; `local` in local mode.
    pub fn display_endpoint(&self) -> String {
        match self.mode {
            TelemetryMode::Export => display_url(&self.endpoint),
            TelemetryMode::Local => "local (nothing is sent)".to_string(),
        }
    }
}

/// Default seconds between exports.
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(15);
/// Default export timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default event queue capacity.
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
/// Largest accepted event queue capacity.
pub const MAX_QUEUE_SIZE: usize = 1 << 20;
/// Default bound on shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// Default least time between two restarts of the cumulative series.
pub const DEFAULT_SERIES_RESET: Duration = Duration::from_secs(3600);
/// Default longest time an unchanged export goes unsent.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3600);
/// Default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "mesh-llm";

/// A setting that cannot be used. Names the key and says what is expected;
/// never echoes header values or endpoint credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidSetting {
    /// The config key (`telemetry.endpoint`) or variable (`OTEL_METRIC_EXPORT_INTERVAL`).
    pub key: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl InvalidSetting {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        InvalidSetting {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Why survey is not running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisabledReason {
    /// Nothing in the config opted in.
    #[error(
        "not enabled: enable the \"survey\" plugin, set telemetry.enabled = true, or set telemetry.endpoint"
    )]
    NotOptedIn,
    /// A switch in the config is `false`.
    #[error("switched off by {0} = false")]
    SwitchedOff(&'static str),
    /// `OTEL_SDK_DISABLED=true`.
    #[error("switched off by OTEL_SDK_DISABLED=true")]
    SdkDisabled,
    /// Opted in, but no endpoint anywhere.
    #[error(
        "no endpoint: set telemetry.endpoint, telemetry.metrics.endpoint, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    NoEndpoint,
    /// A value cannot be used.
    #[error("invalid setting {0}")]
    Invalid(#[from] InvalidSetting),
    /// The exporter could not be built.
    #[error("exporter could not start: {0}")]
    ExporterFailed(String),
    /// Another [`SurveyGuard`](crate::SurveyGuard) is running in this process.
    #[error("already running: shut the running instance down first")]
    AlreadyRunning,
}

/// The result of resolving config and environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Survey runs with these settings; `warnings` are worth a log line each.
    Enabled {
        /// The settings.
        settings: Settings,
        /// Ignored values.
        warnings: Vec<String>,
    },
    /// Survey is off, and why.
    Disabled(DisabledReason),
}

/// Switch name used in [`DisabledReason::SwitchedOff`] for the plugin entry.
pub const PLUGIN_SWITCH: &str = "[[plugin]] name = \"survey\" enabled";

impl TelemetryConfig {
    /// Resolves this table with the `[[plugin]] name = "survey"` switch
    /// (`None` when the config has no such entry) and an environment.
    pub fn resolve(
        &self,
        plugin_enabled: Option<bool>,
        env: &(impl EnvSource + ?Sized),
    ) -> Resolution {
        match resolve(self, plugin_enabled, env) {
            Ok((settings, warnings)) => Resolution::Enabled { settings, warnings },
            Err(reason) => Resolution::Disabled(reason),
        }
    }
}

fn resolve(
    config: &TelemetryConfig,
    plugin_enabled: Option<bool>,
    env: &(impl EnvSource + ?Sized),
) -> Result<(Settings, Vec<String>), DisabledReason> {
    let var = |key: &str| env.var(key).filter(|v| !v.trim().is_empty());

    if plugin_enabled == Some(false) {
        return Err(DisabledReason::SwitchedOff(PLUGIN_SWITCH));
    }
    if config.enabled == Some(false) {
        return Err(DisabledReason::SwitchedOff("telemetry.enabled"));
    }
    let mode = match config.mode.as_deref().map(str::trim) {
        None | Some("export") => TelemetryMode::Export,
        Some("local") => TelemetryMode::Local,
        Some(_) => {
            return Err(
                InvalidSetting::new("telemetry.mode", "expected \"export\" or \"local\"").into(),
            );
        }
    };
    let config_names_endpoint = config.endpoint.is_some() || config.metrics.endpoint.is_some();
    if !(plugin_enabled == Some(true)
        || config.enabled == Some(true)
        || config_names_endpoint
        || mode == TelemetryMode::Local)
    {
        return Err(DisabledReason::NotOptedIn);
    }
    if var(env::SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Err(DisabledReason::SdkDisabled);
    }

    let export_interval = match config.export_interval_secs {
        Some(secs) => positive_secs("telemetry.export_interval_secs", secs)?,
        None => match var(env::EXPORT_INTERVAL) {
            Some(ms) => positive_millis(env::EXPORT_INTERVAL, &ms)?,
            None => DEFAULT_EXPORT_INTERVAL,
        },
    };

    // Local mode sends nothing: neither the endpoint nor the transport's
    // settings and variables (set for other programs, perhaps) are read.
    let transport = match mode {
        TelemetryMode::Export => transport(config, &var, export_interval)?,
        TelemetryMode::Local => Transport {
            endpoint: String::new(),
            endpoint_source: "telemetry.mode",
            headers: BTreeMap::new(),
            protocol: Protocol::HttpProtobuf,
            compression: Compression::Gzip,
            timeout: DEFAULT_TIMEOUT.min(export_interval),
        },
    };

    let queue_size = match config.queue_size {
        None => DEFAULT_QUEUE_SIZE,
        Some(n) if (1..=MAX_QUEUE_SIZE).contains(&n) => n,
        Some(_) => {
            return Err(InvalidSetting::new(
                "telemetry.queue_size",
                format!("expected an integer from 1 to {MAX_QUEUE_SIZE}"),
            )
            .into());
        }
    };

    let shutdown_timeout = match config.shutdown_timeout_secs {
        Some(secs) => positive_secs("telemetry.shutdown_timeout_secs", secs)?,
        None => DEFAULT_SHUTDOWN_TIMEOUT,
    };

    let temporality = match var(env::TEMPORALITY) {
        None => Temporality::Cumulative,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "cumulative" => Temporality::Cumulative,
            "delta" => Temporality::Delta,
            "lowmemory" => Temporality::LowMemory,
            _ => {
                return Err(InvalidSetting::new(
                    env::TEMPORALITY,
                    "expected \"cumulative\", \"delta\" or \"lowmemory\"",
                )
                .into());
            }
        },
    };

    let series_reset =
        match config.series_reset_secs {
            Some(0.0) => None,
            Some(secs) => Some(positive_secs("telemetry.series_reset_secs", secs).map_err(
                |e| InvalidSetting::new(e.key, format!("{}, or 0 for never", e.problem)),
            )?),
            None => Some(DEFAULT_SERIES_RESET),
        }
        // Delta series without new points are not exported: nothing to reset.
        .filter(|_| temporality == Temporality::Cumulative);

    let service_name = match config
        .service_name
        .as_ref()
        .map(|name| ("telemetry.service_name", name.clone()))
        .or_else(|| var(env::SERVICE_NAME).map(|name| (env::SERVICE_NAME, name)))
    {
        None => DEFAULT_SERVICE_NAME.to_string(),
        Some((key, name)) => privacy::service_name(&name)
            .ok_or_else(|| {
                InvalidSetting::new(key, "expected a name of letters, digits, '.', '_' or '-'")
            })?
            .into_string(),
    };

    let mut warnings = Vec::new();

    let heartbeat = match config.heartbeat_secs {
        Some(0.0) => None,
        Some(secs) => Some(
            positive_secs("telemetry.heartbeat_secs", secs).map_err(|e| {
                InvalidSetting::new(e.key, format!("{}, or 0 for every interval", e.problem))
            })?,
        ),
        None => Some(DEFAULT_HEARTBEAT),
    }
    .filter(|heartbeat| {
        let shorter = *heartbeat < export_interval;
        if shorter {
            warnings.push(format!(
                "telemetry.heartbeat_secs = {} is shorter than the export interval ({} s): \
                 every export is sent, changed or not; set it to 0 to say so, or to at least \
                 the interval",
                heartbeat.as_secs_f64(),
                export_interval.as_secs_f64()
            ));
        }
        !shorter
    })
    // Delta exports hold only what changed: nothing to leave out.
    .filter(|_| temporality == Temporality::Cumulative);

    Ok((
        Settings {
            mode,
            endpoint: transport.endpoint,
            endpoint_source: transport.endpoint_source,
            headers: transport.headers,
            protocol: transport.protocol,
            compression: transport.compression,
            timeout: transport.timeout,
            export_interval,
            queue_size,
            temporality,
            service_name,
            shutdown_timeout,
            series_reset,
            heartbeat,
            prompt_shape_metrics: config.prompt_shape_metrics,
        },
        warnings,
    ))
}

/// Where and how exports are sent.
struct Transport {
    endpoint: String,
    endpoint_source: &'static str,
    headers: BTreeMap<String, String>,
    protocol: Protocol,
    compression: Compression,
    timeout: Duration,
}

/// The transport settings of export mode, from the config and `var`.
fn transport(
    config: &TelemetryConfig,
    var: &impl Fn(&str) -> Option<String>,
    export_interval: Duration,
) -> Result<Transport, DisabledReason> {
    let (endpoint, endpoint_source) = if let Some(url) = &config.metrics.endpoint {
        (
            checked_url("telemetry.metrics.endpoint", url)?,
            "telemetry.metrics.endpoint",
        )
    } else if let Some(url) = &config.endpoint {
        (
            with_metrics_path(&checked_url("telemetry.endpoint", url)?),
            "telemetry.endpoint",
        )
    } else if let Some(url) = var(env::METRICS_ENDPOINT) {
        (
            checked_url(env::METRICS_ENDPOINT, &url)?,
            env::METRICS_ENDPOINT,
        )
    } else if let Some(url) = var(env::ENDPOINT) {
        (
            with_metrics_path(&checked_url(env::ENDPOINT, &url)?),
            env::ENDPOINT,
        )
    } else {
        return Err(DisabledReason::NoEndpoint);
    };

    // Headers: environment first, then the config on top (config wins per name).
    let mut headers = BTreeMap::new();
    let env_headers = [env::METRICS_HEADERS, env::HEADERS]
        .into_iter()
        .find_map(|key| var(key).map(|value| (key, value)));
    if let Some((key, value)) = env_headers {
        for (name, value) in parse_header_list(key, &value)? {
            headers.insert(name, value);
        }
    }
    for (name, value) in &config.headers {
        let (name, value) = checked_header(&format!("telemetry.headers.{name}"), name, value)?;
        headers.insert(name, value);
    }

    let protocol = match first(
        &config.protocol,
        "telemetry.protocol",
        var,
        &[env::METRICS_PROTOCOL, env::PROTOCOL],
    ) {
        None => Protocol::HttpProtobuf,
        Some((key, value)) => match value.trim() {
            "http/protobuf" => Protocol::HttpProtobuf,
            "http/json" => Protocol::HttpJson,
            "grpc" => {
                return Err(InvalidSetting::new(
                    key,
                    "\"grpc\" is not supported: survey exports over OTLP/HTTP; expected \"http/protobuf\" or \"http/json\"",
                )
                .into());
            }
            _ => {
                return Err(InvalidSetting::new(
                    key,
                    "expected \"http/protobuf\" or \"http/json\"",
                )
                .into());
            }
        },
    };

    let compression = match first(
        &config.compression,
        "telemetry.compression",
        var,
        &[env::METRICS_COMPRESSION, env::COMPRESSION],
    ) {
        None => Compression::Gzip,
        Some((key, value)) => match value.trim().to_ascii_lowercase().as_str() {
            "gzip" => Compression::Gzip,
            "none" => Compression::None,
            _ => return Err(InvalidSetting::new(key, "expected \"gzip\" or \"none\"").into()),
        },
    };

    let timeout = match config.timeout_secs {
        Some(secs) => positive_secs("telemetry.timeout_secs", secs)?,
        None => match [env::METRICS_TIMEOUT, env::TIMEOUT]
            .into_iter()
            .find_map(|key| var(key).map(|v| (key, v)))
        {
            Some((key, ms)) => positive_millis(key, &ms)?,
            None => DEFAULT_TIMEOUT,
        },
    }
    // A retry never outlives the next export.
    .min(export_interval);

    Ok(Transport {
        endpoint,
        endpoint_source,
        headers,
        protocol,
        compression,
        timeout,
    })
}

/// The config value if set, else the first set variable, with the key it came from.
fn first(
    config_value: &Option<String>,
    config_key: &'static str,
    var: &impl Fn(&str) -> Option<String>,
    env_keys: &[&'static str],
) -> Option<(&'static str, String)> {
    if let Some(value) = config_value {
        return Some((config_key, value.clone()));
    }
    env_keys
        .iter()
        .find_map(|key| var(key).map(|value| (*key, value)))
}

/// Checks that `raw` is an absolute `http://` or `https://` URL with a host.
fn checked_url(key: &str, raw: &str) -> Result<String, InvalidSetting> {
    let raw = raw.trim();
    let expected = "expected an http:// or https:// URL with a host";
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|p| raw.len() > p.len() && raw[..p.len()].eq_ignore_ascii_case(p));
    if !scheme_ok {
        let found = match raw.split_once("://") {
            Some((scheme, _)) => {
                format!("scheme \"{}\"", scheme.chars().take(16).collect::<String>())
            }
            None => "no scheme".to_string(),
        };
        return Err(InvalidSetting::new(
            key,
            format!("{expected}, found {found}"),
        ));
    }
    let uri: http::Uri = raw.parse().map_err(|_| {
        InvalidSetting::new(
            key,
            format!("{expected}; the value does not parse as a URL"),
        )
    })?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(InvalidSetting::new(
            key,
            format!("{expected}; the URL has no host"),
        ));
    }
    Ok(raw.to_string())
}

/// Appends `/v1/metrics` to a base endpoint, keeping any path prefix.
fn with_metrics_path(base: &str) -> String {
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base, None),
    };
    let mut url = format!("{}/v1/metrics", base.trim_end_matches('/'));
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// `scheme://host[:port]/path` without user info, query or fragment.
pub(crate) fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = match rest.split_once('/') {
        Some((authority, path)) => {
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{host}/{path}")
        }
        None => rest.rsplit('@').next().unwrap_or_default().to_string(),
    };
    format!("{scheme}://{rest}")
}

fn checked_header(key: &str, name: &str, value: &str) -> Result<(String, String), InvalidSetting> {
    let name = name.trim().to_ascii_lowercase();
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(InvalidSetting::new(
            key,
            "expected a header name of visible ASCII letters, digits and !#$%&'*+-.^_`|~",
        ));
    }
    let value = value.trim();
    if http::HeaderValue::from_str(value).is_err() {
        return Err(InvalidSetting::new(
            key,
            "expected a header value of visible ASCII characters",
        ));
    }
    Ok((name, value.to_string()))
}

/// Parses `name=value,name2=value2` (values may be percent-encoded).
fn parse_header_list(key: &str, list: &str) -> Result<Vec<(String, String)>, InvalidSetting> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once('=').ok_or_else(|| {
            InvalidSetting::new(key, "expected name=value pairs separated by ','")
        })?;
        let value = percent_decode(value)
            .ok_or_else(|| InvalidSetting::new(key, "a header value has a bad %-escape"))?;
        out.push(checked_header(key, name, &value)?);
    }
    Ok(out)
}

/// Decodes %-escapes; `None` if one is not `%` and two hex digits (the
/// crate would pass it through) or the result is not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, byte)| {
        *byte != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

/// A number of seconds greater than 0 and at most a day, as every `*_secs`
/// setting takes it; the error names `key`.
pub fn positive_secs(key: &str, secs: f64) -> Result<Duration, InvalidSetting> {
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(InvalidSetting::new(
            key,
            "expected a number of seconds greater than 0 and at most 86400",
        ))
    }
}

fn positive_millis(key: &str, ms: &str) -> Result<Duration, InvalidSetting> {
    match ms.trim().parse::<u64>() {
        Ok(ms) if ms > 0 && ms <= 86_400_000 => Ok(Duration::from_millis(ms)),
        _ => Err(InvalidSetting::new(
            key,
            "expected a whole number of milliseconds greater than 0",
        )),
    }
}
