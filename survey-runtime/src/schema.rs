//! The metric schema: the metric names, their units and histogram
//! boundaries, the closed enums used as attribute values, and the one place
//! where attribute sets are built.
//!
//! Ten metrics are the spec's model lifecycle. Six more, the inference
//! metrics, are recorded only when `telemetry.prompt_shape_metrics = true`
//! ([`MetricSpec::prompt_shape`]): numbers about the requests a loaded model
//! answered, never anything of their content.
//!
//! Attribute keys come only from [`AttributeKey`], a closed enum of the
//! spec's allowlist, and string values only from [`SafeValue`], which only the
//! [`privacy`] module can construct. There is no API that
//! takes a free-form key or an unsanitized string, in debug or release builds.

use std::fmt;
use std::str::FromStr;

use opentelemetry::{KeyValue, Value};

use crate::hardware::DeviceView;
use crate::model::ModelFacts;
use crate::privacy::{self, SafeValue};

/// The instrumentation scope (meter name) of every survey metric.
pub const SCOPE_NAME: &str = "survey";

/// Counter: launch attempts.
pub const LAUNCH_TOTAL: &str = "mesh_llm_model_launch_total";
/// Counter: launches that became healthy.
pub const LAUNCH_SUCCESS_TOTAL: &str = "mesh_llm_model_launch_success_total";
/// Counter: launches that failed, with `mesh_llm.failure_reason`.
pub const LAUNCH_FAILURE_TOTAL: &str = "mesh_llm_model_launch_failure_total";
/// Counter: models unloaded on request.
pub const UNLOAD_TOTAL: &str = "mesh_llm_model_unload_total";
/// Counter: loaded models whose backend exited without being asked to.
pub const EXIT_UNEXPECTED_TOTAL: &str = "mesh_llm_model_exit_unexpected_total";
/// Gauge: number of models loaded on the node.
pub const LOADED_MODELS: &str = "mesh_llm_loaded_models";
/// Gauge: loaded instances per model attribute set.
pub const MODEL_LOADED: &str = "mesh_llm_model_loaded";
/// Gauge: the exact context length of each loaded model.
pub const MODEL_CONTEXT_LENGTH: &str = "mesh_llm_model_context_length";
/// Histogram: launch duration in milliseconds, successes and failures.
pub const LAUNCH_DURATION_MS: &str = "mesh_llm_model_launch_duration_ms";
/// Histogram: how long a model stayed loaded, in seconds.
pub const UPTIME_S: &str = "mesh_llm_model_uptime_s";
/// Counter (opt-in): inference requests forwarded to a loaded model, with
/// `mesh_llm.request_outcome`.
pub const INFERENCE_REQUESTS_TOTAL: &str = "mesh_llm_inference_requests_total";
/// Histogram (opt-in): prompt tokens of a request answered in full, cached
/// ones included.
pub const INFERENCE_PROMPT_TOKENS: &str = "mesh_llm_inference_prompt_tokens";
/// Histogram (opt-in): tokens generated for a request answered in full.
pub const INFERENCE_OUTPUT_TOKENS: &str = "mesh_llm_inference_output_tokens";
/// Histogram (opt-in): prompt processing speed, cached tokens excluded.
pub const INFERENCE_PREFILL_TOKENS_PER_S: &str = "mesh_llm_inference_prefill_tokens_per_s";
/// Histogram (opt-in): generation speed.
pub const INFERENCE_DECODE_TOKENS_PER_S: &str = "mesh_llm_inference_decode_tokens_per_s";
/// Histogram (opt-in): time from a streamed request's arrival to its first
/// event carrying content, in milliseconds.
pub const INFERENCE_TIME_TO_FIRST_TOKEN_MS: &str = "mesh_llm_inference_time_to_first_token_ms";

/// Bucket boundaries of `mesh_llm_model_launch_duration_ms`: 100 ms to 10 min.
pub const LAUNCH_DURATION_BOUNDARIES_MS: [f64; 13] = [
    100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 20_000.0, 30_000.0, 60_000.0,
    120_000.0, 300_000.0, 600_000.0,
];

/// Bucket boundaries of `mesh_llm_model_uptime_s`: 10 s to 7 days.
pub const UPTIME_BOUNDARIES_S: [f64; 14] = [
    10.0, 30.0, 60.0, 300.0, 900.0, 1_800.0, 3_600.0, 7_200.0, 21_600.0, 43_200.0, 86_400.0,
    172_800.0, 345_600.0, 604_800.0,
];

/// Bucket boundaries of the token-count histograms: 1 to 256k tokens, a
/// power of four up to 1k, then a power of two, so that the context
/// buckets' edges (8k, 16k, 32k, 64k, 128k) are bucket edges too. The
/// OpenTelemetry GenAI conventions advise powers of four for
/// `gen_ai.client.token.usage`; local prompts are mostly between 1k and
/// 128k tokens, where powers of four are too coarse to tell a context size
/// from the next.
pub const TOKEN_BOUNDARIES: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1_024.0, 2_048.0, 4_096.0, 8_192.0, 16_384.0, 32_768.0, 65_536.0,
    131_072.0, 262_144.0,
];

/// Bucket boundaries of `mesh_llm_inference_decode_tokens_per_s`: 1 to
/// 5,000 tokens/s. A CPU node decodes at about 1 to 20 tokens/s (five
/// buckets up to 20), a consumer GPU at 30 to 200 (five more from 30), a
/// datacenter GPU at 100 to 3,000 and more (the top six), so each kind of
/// machine lands in buckets of its own and a median interpolated within a
/// bucket is off by at most half its width.
pub const DECODE_BOUNDARIES_TPS: [f64; 17] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1_000.0,
    2_000.0, 3_000.0, 5_000.0,
];

/// Bucket boundaries of `mesh_llm_inference_prefill_tokens_per_s`: 10 to
/// 100,000 tokens/s, in 1-2.5-5 steps. Prompt processing is batched: tens
/// of tokens/s on a small CPU, thousands on a consumer GPU, tens of
/// thousands on a datacenter GPU.
pub const PREFILL_BOUNDARIES_TPS: [f64; 13] = [
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0,
    100_000.0,
];

/// Bucket boundaries of `mesh_llm_inference_time_to_first_token_ms`: 5 ms
/// to 10 min, in 1-2.5-5 steps to 10 s, then wider. The GenAI
/// conventions' advice for `gen_ai.server.time_to_first_token` stops at
/// 10 s; a long prompt on a CPU takes minutes, so the top bound is the
/// proxy's default limit on a backend's silence (10 min).
pub const TIME_TO_FIRST_TOKEN_BOUNDARIES_MS: [f64; 15] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0,
    60_000.0, 180_000.0, 600_000.0,
];

/// The OpenTelemetry instrument behind a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A monotonic counter (`u64_counter`): an OTLP monotonic sum.
    Counter,
    /// An observable gauge over the loaded set: an OTLP gauge.
    Gauge,
    /// A histogram with explicit bucket boundaries: an OTLP histogram.
    Histogram,
}

/// One metric of the schema: what survey exports and what a collector accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// Metric name.
    pub name: &'static str,
    /// Instrument kind.
    pub kind: MetricKind,
    /// UCUM unit.
    pub unit: &'static str,
    /// Description sent with the metric.
    pub description: &'static str,
    /// Explicit bucket boundaries (histograms only; empty otherwise).
    pub boundaries: &'static [f64],
    /// Recorded only with `telemetry.prompt_shape_metrics = true`: the
    /// inference metrics.
    pub prompt_shape: bool,
}

const fn spec(
    name: &'static str,
    kind: MetricKind,
    unit: &'static str,
    description: &'static str,
) -> MetricSpec {
    MetricSpec {
        name,
        kind,
        unit,
        description,
        boundaries: &[],
        prompt_shape: false,
    }
}

const fn inference(
    name: &'static str,
    kind: MetricKind,
    unit: &'static str,
    description: &'static str,
    boundaries: &'static [f64],
) -> MetricSpec {
    MetricSpec {
        boundaries,
        prompt_shape: true,
        ..spec(name, kind, unit, description)
    }
}

/// Every metric survey exports, in schema order: the spec's ten, then the
/// opt-in inference metrics.
pub const METRICS: &[MetricSpec] = &[
    spec(
        LAUNCH_TOTAL,
        MetricKind::Counter,
        "{launch}",
        "Model launch attempts",
    ),
    spec(
        LAUNCH_SUCCESS_TOTAL,
        MetricKind::Counter,
        "{launch}",
        "Model launches that became healthy",
    ),
    spec(
        LAUNCH_FAILURE_TOTAL,
        MetricKind::Counter,
        "{launch}",
        "Model launches that failed, by reason",
    ),
    spec(
        UNLOAD_TOTAL,
        MetricKind::Counter,
        "{unload}",
        "Models unloaded on request",
    ),
    spec(
        EXIT_UNEXPECTED_TOTAL,
        MetricKind::Counter,
        "{exit}",
        "Loaded models whose backend exited unexpectedly",
    ),
    spec(
        LOADED_MODELS,
        MetricKind::Gauge,
        "{model}",
        "Models loaded on the node",
    ),
    spec(
        MODEL_LOADED,
        MetricKind::Gauge,
        "{instance}",
        "Loaded instances of a model",
    ),
    spec(
        MODEL_CONTEXT_LENGTH,
        MetricKind::Gauge,
        "{token}",
        "Context length of a loaded model",
    ),
    MetricSpec {
        boundaries: &LAUNCH_DURATION_BOUNDARIES_MS,
        ..spec(
            LAUNCH_DURATION_MS,
            MetricKind::Histogram,
            "ms",
            "Time from launch start to healthy or failed",
        )
    },
    MetricSpec {
        boundaries: &UPTIME_BOUNDARIES_S,
        ..spec(
            UPTIME_S,
            MetricKind::Histogram,
            "s",
            "How long a model stayed loaded",
        )
    },
    inference(
        INFERENCE_REQUESTS_TOTAL,
        MetricKind::Counter,
        "{request}",
        "Inference requests forwarded to a loaded model, by outcome",
        &[],
    ),
    inference(
        INFERENCE_PROMPT_TOKENS,
        MetricKind::Histogram,
        "{token}",
        "Prompt tokens of requests answered in full, cached tokens included",
        &TOKEN_BOUNDARIES,
    ),
    inference(
        INFERENCE_OUTPUT_TOKENS,
        MetricKind::Histogram,
        "{token}",
        "Tokens generated for requests answered in full",
        &TOKEN_BOUNDARIES,
    ),
    inference(
        INFERENCE_PREFILL_TOKENS_PER_S,
        MetricKind::Histogram,
        "{token}/s",
        "Prompt processing speed of requests answered in full, cached tokens excluded",
        &PREFILL_BOUNDARIES_TPS,
    ),
    inference(
        INFERENCE_DECODE_TOKENS_PER_S,
        MetricKind::Histogram,
        "{token}/s",
        "Generation speed of requests answered in full",
        &DECODE_BOUNDARIES_TPS,
    ),
    inference(
        INFERENCE_TIME_TO_FIRST_TOKEN_MS,
        MetricKind::Histogram,
        "ms",
        "Time from a streamed request's arrival to its first content, answered in full",
        &TIME_TO_FIRST_TOKEN_BOUNDARIES_MS,
    ),
];

/// The schema entry of metric `name`, if survey exports such a metric.
pub fn metric(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

/// Error returned when a string names no value of a closed schema enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{found}\"; expected one of {expected}")]
pub struct UnknownValue {
    what: &'static str,
    found: String,
    expected: String,
}

macro_rules! closed_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exported attribute value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        what: $what,
                        found: s.chars().take(64).collect(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

closed_enum! {
    /// How a launch came about: the values of `mesh_llm.launch_kind`.
    LaunchKind, "launch kind" {
        /// The first model a node launches at startup.
        Startup => "startup",
        /// A model loaded at run time through the control API.
        RuntimeLoad => "runtime_load",
        /// A further model launched at startup beside the first.
        MultiModel => "multi_model",
        /// A fallback launch after a mixture-of-experts split failed.
        MoeFallback => "moe_fallback",
        /// One shard of a mixture-of-experts model.
        MoeShard => "moe_shard",
    }
}

closed_enum! {
    /// Why a launch failed: the values of `mesh_llm.failure_reason`.
    ///
    /// Error types map onto it through [`FailureReason`](crate::FailureReason).
    FailureKind, "failure reason" {
        /// The backend process could not be started.
        SpawnFailed => "spawn_failed",
        /// The backend did not become healthy before its deadline.
        HealthTimeout => "health_timeout",
        /// The backend exited before it became healthy.
        ExitedBeforeHealthy => "exited_before_healthy",
        /// The local proxy in front of the backend failed to start.
        BackendProxyFailed => "backend_proxy_failed",
        /// The node refused the model for lack of capacity.
        CapacityRejected => "capacity_rejected",
        /// The backend crashed with a known llama.cpp KV-cache signature.
        KnownKvCacheCrash => "known_kv_cache_crash",
        /// A configured multimodal projector file is missing.
        MmprojMissing => "mmproj_missing",
        /// Anything else, including a launch future dropped before it finished.
        Other => "other",
    }
}

closed_enum! {
    /// Context-length bucket: the values of `mesh_llm.context_bucket`.
    ContextBucket, "context bucket" {
        /// Up to 8192 tokens.
        UpTo8k => "<=8k",
        /// 8193 to 16384 tokens.
        From8kTo16k => "8k_16k",
        /// 16385 to 32768 tokens.
        From16kTo32k => "16k_32k",
        /// 32769 to 65536 tokens.
        From32kTo64k => "32k_64k",
        /// 65537 to 131072 tokens.
        From64kTo128k => "64k_128k",
        /// More than 131072 tokens.
        Over128k => ">128k",
    }
}

closed_enum! {
    /// How an inference request forwarded to a loaded model ended: the
    /// values of `mesh_llm.request_outcome`. The host decides it from its
    /// own code path, never from text.
    RequestOutcome, "request outcome" {
        /// Answered in full with a 2xx status.
        Ok => "ok",
        /// The backend answered an error status, refused the connection,
        /// or broke off mid-answer.
        BackendError => "backend_error",
        /// The backend was silent past the host's limit.
        Timeout => "timeout",
        /// The client hung up before the answer ended.
        ClientCancelled => "client_cancelled",
        /// The host cut the request at shutdown.
        Shutdown => "shutdown",
    }
}

impl ContextBucket {
    /// The bucket a context length falls in (`k` = 1024 tokens).
    pub const fn of(context_length: u64) -> ContextBucket {
        const K: u64 = 1024;
        match context_length {
            n if n <= 8 * K => ContextBucket::UpTo8k,
            n if n <= 16 * K => ContextBucket::From8kTo16k,
            n if n <= 32 * K => ContextBucket::From16kTo32k,
            n if n <= 64 * K => ContextBucket::From32kTo64k,
            n if n <= 128 * K => ContextBucket::From64kTo128k,
            _ => ContextBucket::Over128k,
        }
    }
}

closed_enum! {
    /// The attribute keys survey may export: the spec's allowlist, nothing else.
    AttributeKey, "attribute key" {
        /// Normalized model identifier.
        Model => "mesh_llm.model",
        /// Model architecture (`general.architecture`).
        Architecture => "mesh_llm.architecture",
        /// Quantization (`Q4_K_M`, `F16`, ...).
        Quantization => "mesh_llm.quantization",
        /// A [`LaunchKind`].
        LaunchKind => "mesh_llm.launch_kind",
        /// Marketing name of the GPU.
        GpuName => "mesh_llm.gpu_name",
        /// Truncated SHA-256 of the GPU's UUID.
        GpuStableId => "mesh_llm.gpu_stable_id",
        /// Device family the backend runs on (`cuda`, `rocm`, `metal`, `cpu`, ...).
        BackendDevice => "mesh_llm.backend_device",
        /// Number of GPUs on the node.
        GpuCount => "mesh_llm.gpu_count",
        /// Whether the node is a system-on-chip (Apple silicon, Jetson).
        IsSoc => "mesh_llm.is_soc",
        /// Inference backend (`llama.cpp`).
        Backend => "mesh_llm.backend",
        /// A [`ContextBucket`].
        ContextBucket => "mesh_llm.context_bucket",
        /// Version of the host.
        ServiceVersion => "mesh_llm.service_version",
        /// A [`FailureKind`].
        FailureReason => "mesh_llm.failure_reason",
        /// A [`RequestOutcome`] (on `mesh_llm_inference_requests_total` only).
        RequestOutcome => "mesh_llm.request_outcome",
    }
}

/// An attribute value as a collector receives it, before it is trusted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReceivedValue<'a> {
    /// A string.
    Str(&'a str),
    /// A 64-bit integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A double.
    Double(f64),
    /// Anything else (bytes, arrays, maps, no value).
    Other,
}

impl AttributeKey {
    /// Whether survey could have exported `value` under this key: the right
    /// type, a value of the key's enum, and for text the exact output of the
    /// key's sanitizer (every sanitizer returns its own output unchanged).
    ///
    /// Collectors use it to refuse data points that no honest survey node
    /// sends, without copying the sanitizers.
    pub fn accepts(self, value: ReceivedValue<'_>) -> bool {
        use ReceivedValue::{Bool, Int, Str};
        match (self, value) {
            (AttributeKey::GpuCount, Int(n)) => n >= 0,
            (AttributeKey::IsSoc, Bool(_)) => true,
            (AttributeKey::LaunchKind, Str(s)) => s.parse::<LaunchKind>().is_ok(),
            (AttributeKey::ContextBucket, Str(s)) => s.parse::<ContextBucket>().is_ok(),
            (AttributeKey::FailureReason, Str(s)) => s.parse::<FailureKind>().is_ok(),
            (AttributeKey::RequestOutcome, Str(s)) => s.parse::<RequestOutcome>().is_ok(),
            (AttributeKey::GpuStableId, Str(s)) => privacy::is_gpu_stable_id(s),
            (key, Str(s)) => key
                .text_sanitizer()
                .is_some_and(|sanitize| privacy::is_sanitized(sanitize, s)),
            _ => false,
        }
    }

    /// The sanitizer of a free-text key; `None` for typed and enum keys.
    fn text_sanitizer(self) -> Option<privacy::Sanitizer> {
        Some(match self {
            AttributeKey::Model => privacy::model_id,
            AttributeKey::Architecture => privacy::architecture,
            AttributeKey::Quantization => privacy::quantization,
            AttributeKey::GpuName => privacy::gpu_name,
            AttributeKey::BackendDevice => privacy::backend_device,
            AttributeKey::Backend => privacy::backend,
            AttributeKey::ServiceVersion => privacy::service_version,
            _ => return None,
        })
    }
}

closed_enum! {
    /// The resource attribute keys survey exports: service identity and the
    /// OpenTelemetry SDK, nothing from the host or the environment.
    ResourceKey, "resource key" {
        /// The host's service name (`mesh-llm`).
        ServiceName => "service.name",
        /// The host's version.
        ServiceVersion => "service.version",
        /// A random UUID v4 drawn once per process: tells two nodes' series apart.
        ServiceInstanceId => "service.instance.id",
        /// `opentelemetry`.
        SdkName => "telemetry.sdk.name",
        /// `rust`.
        SdkLanguage => "telemetry.sdk.language",
        /// The SDK's version.
        SdkVersion => "telemetry.sdk.version",
    }
}

impl ResourceKey {
    /// Whether survey could have exported `value` under this resource key.
    pub fn accepts(self, value: ReceivedValue<'_>) -> bool {
        let ReceivedValue::Str(s) = value else {
            return false;
        };
        match self {
            ResourceKey::ServiceName | ResourceKey::SdkName | ResourceKey::SdkLanguage => {
                privacy::is_sanitized(privacy::service_name, s)
            }
            ResourceKey::ServiceVersion | ResourceKey::SdkVersion => {
                privacy::is_sanitized(privacy::service_version, s)
            }
            ResourceKey::ServiceInstanceId => is_uuid_v4(s),
        }
    }
}

/// A random (version 4, variant 1) UUID in its canonical text form:
/// 8-4-4-4-12 lowercase hex digits. Other versions can carry a machine's
/// address or a time, so survey neither sends nor accepts them.
pub fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            14 => b == b'4',
            19 => matches!(b, b'8' | b'9' | b'a' | b'b'),
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// A value an attribute may carry: closed enums, sanitized strings, numbers
/// and booleans. Raw strings cannot be turned into one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttributeValue {
    Static(&'static str),
    Safe(SafeValue),
    Int(i64),
    Bool(bool),
}

impl From<AttributeValue> for Value {
    fn from(value: AttributeValue) -> Value {
        match value {
            AttributeValue::Static(s) => Value::from(s),
            AttributeValue::Safe(s) => Value::from(s.into_string()),
            AttributeValue::Int(i) => Value::I64(i),
            AttributeValue::Bool(b) => Value::Bool(b),
        }
    }
}

/// Builds the attribute list of one data point, always in [`AttributeKey`]
/// order (the SDK takes its fast path when the order never changes).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct AttributeSet {
    entries: Vec<(AttributeKey, AttributeValue)>,
}

impl AttributeSet {
    pub(crate) fn with_capacity(n: usize) -> Self {
        AttributeSet {
            entries: Vec::with_capacity(n),
        }
    }

    /// Sets `key`, replacing an earlier value of the same key.
    pub(crate) fn set(&mut self, key: AttributeKey, value: AttributeValue) {
        match self.entries.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    /// Sets `key` when `value` is present.
    pub(crate) fn set_opt(&mut self, key: AttributeKey, value: Option<AttributeValue>) {
        if let Some(value) = value {
            self.set(key, value);
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = AttributeKey> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    /// The OpenTelemetry attribute list.
    pub(crate) fn to_key_values(&self) -> Vec<KeyValue> {
        self.entries
            .iter()
            .map(|(k, v)| KeyValue::new(k.as_str(), Value::from(v.clone())))
            .collect()
    }
}

/// The attributes of a data point about one model: model, hardware and
/// runtime facts, plus the launch kind and failure reason when known.
pub(crate) fn model_attributes(
    facts: &ModelFacts,
    device: &DeviceView,
    kind: Option<LaunchKind>,
    failure: Option<FailureKind>,
    service_version: Option<&SafeValue>,
) -> AttributeSet {
    let safe = |v: Option<SafeValue>| v.map(AttributeValue::Safe);
    let mut set = AttributeSet::with_capacity(AttributeKey::ALL.len());
    let model = if facts.model_is_file {
        privacy::model_file(&facts.model)
    } else {
        privacy::model_id(&facts.model)
    };
    set.set_opt(AttributeKey::Model, safe(model));
    set.set_opt(
        AttributeKey::Architecture,
        safe(
            facts
                .architecture
                .as_deref()
                .and_then(privacy::architecture),
        ),
    );
    set.set_opt(
        AttributeKey::Quantization,
        safe(
            facts
                .quantization
                .as_deref()
                .and_then(privacy::quantization),
        ),
    );
    set.set_opt(
        AttributeKey::LaunchKind,
        kind.map(|k| AttributeValue::Static(k.as_str())),
    );
    add_device(&mut set, device);
    set.set_opt(
        AttributeKey::Backend,
        safe(facts.backend.as_deref().and_then(privacy::backend)),
    );
    set.set_opt(
        AttributeKey::ContextBucket,
        facts
            .context_length
            .map(|n| AttributeValue::Static(ContextBucket::of(n).as_str())),
    );
    set.set_opt(AttributeKey::ServiceVersion, safe(service_version.cloned()));
    set.set_opt(
        AttributeKey::FailureReason,
        failure.map(|f| AttributeValue::Static(f.as_str())),
    );
    set
}

/// The attributes of an inference data point about a loaded instance: its
/// model, hardware and context bucket as at its launch, without the launch
/// kind; with `outcome` on the request counter only.
pub(crate) fn inference_attributes(
    facts: &ModelFacts,
    device: &DeviceView,
    outcome: Option<RequestOutcome>,
    service_version: Option<&SafeValue>,
) -> AttributeSet {
    let mut set = model_attributes(facts, device, None, None, service_version);
    set.set_opt(
        AttributeKey::RequestOutcome,
        outcome.map(|o| AttributeValue::Static(o.as_str())),
    );
    set
}

/// The attributes of a node-wide data point: hardware and version only.
pub(crate) fn node_attributes(
    device: &DeviceView,
    service_version: Option<&SafeValue>,
) -> AttributeSet {
    let mut set = AttributeSet::with_capacity(6);
    add_device(&mut set, device);
    set.set_opt(
        AttributeKey::ServiceVersion,
        service_version.cloned().map(AttributeValue::Safe),
    );
    set
}

fn add_device(set: &mut AttributeSet, device: &DeviceView) {
    set.set_opt(
        AttributeKey::GpuName,
        device.gpu_name.clone().map(AttributeValue::Safe),
    );
    set.set_opt(
        AttributeKey::GpuStableId,
        device.gpu_stable_id.clone().map(AttributeValue::Safe),
    );
    set.set_opt(
        AttributeKey::BackendDevice,
        device.backend_device.clone().map(AttributeValue::Safe),
    );
    set.set(
        AttributeKey::GpuCount,
        AttributeValue::Int(device.gpu_count),
    );
    set.set(AttributeKey::IsSoc, AttributeValue::Bool(device.is_soc));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_buckets_have_exact_edges() {
        let cases = [
            (0, "<=8k"),
            (8192, "<=8k"),
            (8193, "8k_16k"),
            (16384, "8k_16k"),
            (16385, "16k_32k"),
            (32768, "16k_32k"),
            (32769, "32k_64k"),
            (65536, "32k_64k"),
            (65537, "64k_128k"),
            (131072, "64k_128k"),
            (131073, ">128k"),
            (u64::MAX, ">128k"),
        ];
        for (n, bucket) in cases {
            assert_eq!(ContextBucket::of(n).as_str(), bucket, "context length {n}");
        }
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for kind in LaunchKind::ALL {
            assert_eq!(kind.as_str().parse::<LaunchKind>(), Ok(*kind));
        }
        for reason in FailureKind::ALL {
            assert_eq!(reason.as_str().parse::<FailureKind>(), Ok(*reason));
        }
        for (i, outcome) in RequestOutcome::ALL.iter().enumerate() {
            assert_eq!(outcome.as_str().parse::<RequestOutcome>(), Ok(*outcome));
            // The recorder indexes its per-outcome attributes so.
            assert_eq!(*outcome as usize, i);
        }
        let outcomes: Vec<_> = RequestOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            outcomes,
            [
                "ok",
                "backend_error",
                "timeout",
                "client_cancelled",
                "shutdown"
            ]
        );
        let err = "runtime_lod".parse::<LaunchKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown launch kind \"runtime_lod\"; expected one of startup, runtime_load, \
             multi_model, moe_fallback, moe_shard"
        );
    }

    #[test]
    fn spec_lists_are_exact() {
        let kinds: Vec<_> = LaunchKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "startup",
                "runtime_load",
                "multi_model",
                "moe_fallback",
                "moe_shard"
            ]
        );
        let reasons: Vec<_> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "spawn_failed",
                "health_timeout",
                "exited_before_healthy",
                "backend_proxy_failed",
                "capacity_rejected",
                "known_kv_cache_crash",
                "mmproj_missing",
                "other"
            ]
        );
        let keys: Vec<_> = AttributeKey::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "mesh_llm.model",
                "mesh_llm.architecture",
                "mesh_llm.quantization",
                "mesh_llm.launch_kind",
                "mesh_llm.gpu_name",
                "mesh_llm.gpu_stable_id",
                "mesh_llm.backend_device",
                "mesh_llm.gpu_count",
                "mesh_llm.is_soc",
                "mesh_llm.backend",
                "mesh_llm.context_bucket",
                "mesh_llm.service_version",
                "mesh_llm.failure_reason",
                "mesh_llm.request_outcome"
            ]
        );
    }

    fn received(value: &AttributeValue) -> ReceivedValue<'_> {
        match value {
            AttributeValue::Static(s) => ReceivedValue::Str(s),
            AttributeValue::Safe(s) => ReceivedValue::Str(s.as_str()),
            AttributeValue::Int(i) => ReceivedValue::Int(*i),
            AttributeValue::Bool(b) => ReceivedValue::Bool(*b),
        }
    }

    proptest::proptest! {
        /// Whatever raw facts a host passes, a collector that checks with
        /// `accepts` takes every attribute survey builds from them.
        #[test]
        fn collectors_accept_every_exported_attribute(
            model in proptest::prelude::any::<String>(),
            is_file in proptest::prelude::any::<bool>(),
            text in proptest::collection::vec(proptest::prelude::any::<String>(), 5),
            ctx in proptest::prelude::any::<u64>(),
            uuid in "(GPU-)?[0-9a-fA-F-]{20,40}",
            gpus in 0usize..4,
            is_soc in proptest::prelude::any::<bool>(),
        ) {
            let facts = if is_file {
                ModelFacts::local_file(1, model)
            } else {
                ModelFacts::new(1, model)
            }
            .architecture(text[0].clone())
            .quantization(text[1].clone())
            .backend(text[2].clone())
            .context_length(ctx);
            let node = crate::HardwareFacts {
                backend_device: text[3].clone(),
                gpus: (0..gpus)
                    .map(|_| crate::GpuInfo { name: text[4].clone(), uuid: Some(uuid.clone()) })
                    .collect(),
                is_soc,
            };
            let version = privacy::service_version(&text[0]);
            for device in [
                DeviceView::node(&node),
                DeviceView::resolve(&node, &crate::DeviceFacts::default()),
            ] {
                for failure in [None, Some(FailureKind::Other)] {
                    let set = model_attributes(
                        &facts,
                        &device,
                        Some(LaunchKind::MoeShard),
                        failure,
                        version.as_ref(),
                    );
                    for (key, value) in &set.entries {
                        proptest::prop_assert!(
                            key.accepts(received(value)),
                            "{key} = {value:?} refused"
                        );
                    }
                }
                for outcome in [None, Some(RequestOutcome::ClientCancelled)] {
                    let set = inference_attributes(&facts, &device, outcome, version.as_ref());
                    proptest::prop_assert_eq!(
                        set.entries.iter().any(|(k, _)| *k == AttributeKey::RequestOutcome),
                        outcome.is_some()
                    );
                    for (key, value) in &set.entries {
                        proptest::prop_assert!(key.accepts(received(value)), "{key} = {value:?}");
                    }
                }
                let set = node_attributes(&device, version.as_ref());
                for (key, value) in &set.entries {
                    proptest::prop_assert!(key.accepts(received(value)), "{key} = {value:?}");
                }
            }
        }
    }

    #[test]
    fn collectors_refuse_what_survey_never_sends() {
        use ReceivedValue::*;
        let refused = [
            (AttributeKey::Model, Str("/home/alice/m.gguf")),
            (AttributeKey::Model, Str("m.gguf")),
            (AttributeKey::Model, Str("")),
            (AttributeKey::Model, Int(1)),
            (AttributeKey::Architecture, Str("LLaMA")),
            (AttributeKey::GpuName, Str("RTX  4090")),
            (AttributeKey::GpuStableId, Str("GPU-6f1c2d3e-4b5a")),
            (AttributeKey::GpuStableId, Str("6F1C2D3E4B5A6978")),
            (AttributeKey::GpuCount, Int(-1)),
            (AttributeKey::GpuCount, Str("2")),
            (AttributeKey::GpuCount, Double(2.0)),
            (AttributeKey::IsSoc, Str("true")),
            (AttributeKey::LaunchKind, Str("runtime_lod")),
            (AttributeKey::ContextBucket, Str("8k")),
            (AttributeKey::FailureReason, Str("oom")),
            (AttributeKey::RequestOutcome, Str("cancelled")),
            (AttributeKey::RequestOutcome, Int(0)),
            (AttributeKey::Backend, Other),
        ];
        for (key, value) in refused {
            assert!(!key.accepts(value), "{key} = {value:?} accepted");
        }
        let accepted = [
            (AttributeKey::Model, Str("Qwen3-8B-Q4_K_M")),
            (AttributeKey::Model, Str("unsloth/Qwen3-8B-GGUF:Q4_K_M")),
            (AttributeKey::GpuName, Str("NVIDIA GeForce RTX 4090")),
            (AttributeKey::GpuStableId, Str("6f1c2d3e4b5a6978")),
            (AttributeKey::GpuCount, Int(0)),
            (AttributeKey::IsSoc, Bool(false)),
            (AttributeKey::ContextBucket, Str(">128k")),
            (AttributeKey::RequestOutcome, Str("client_cancelled")),
        ];
        for (key, value) in accepted {
            assert!(key.accepts(value), "{key} = {value:?} refused");
        }
        assert!(
            ResourceKey::ServiceInstanceId.accepts(Str("0f8a2c1e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"))
        );
        assert!(
            !ResourceKey::ServiceInstanceId.accepts(Str("0F8A2C1E-3B4D-4E5F-8A9B-0C1D2E3F4A5B"))
        );
        assert!(!ResourceKey::ServiceInstanceId.accepts(Str("host-1")));
        // A version 1 UUID carries a MAC address and a time.
        assert!(
            !ResourceKey::ServiceInstanceId.accepts(Str("0f8a2c1e-3b4d-11ef-8a9b-0c1d2e3f4a5b"))
        );
        assert!(ResourceKey::SdkLanguage.accepts(Str("rust")));
        assert!(ResourceKey::SdkVersion.accepts(Str("0.33.1")));
        assert!(!ResourceKey::ServiceName.accepts(Str("mesh llm at alice's")));
        assert!(!ResourceKey::ServiceVersion.accepts(Int(1)));
    }

    #[test]
    fn metric_table_matches_the_names() {
        let names: Vec<_> = METRICS.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), 16);
        // The spec's ten first, then the opt-in inference metrics.
        let opt_in: Vec<_> = METRICS.iter().map(|m| m.prompt_shape).collect();
        assert_eq!(opt_in, [[false; 10].as_slice(), &[true; 6]].concat());
        assert!(
            METRICS
                .iter()
                .all(|m| m.prompt_shape == m.name.starts_with("mesh_llm_inference_"))
        );
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} twice");
            assert_eq!(metric(name).map(|m| m.name), Some(*name));
        }
        for m in METRICS {
            let histogram = m.kind == MetricKind::Histogram;
            assert_eq!(histogram, !m.boundaries.is_empty(), "{}", m.name);
            assert!(m.boundaries.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(metric("mesh_llm_other"), None);
    }

    /// The bucket of `bounds` that `value` falls in (OTLP: a value equal to
    /// a bound belongs to the bucket it ends).
    fn bucket(bounds: &[f64], value: f64) -> usize {
        bounds.iter().take_while(|b| value > **b).count()
    }

    #[test]
    fn inference_bounds_tell_machines_and_sizes_apart() {
        // Decode speeds: CPU nodes (1-20 tokens/s), consumer GPUs (30-200),
        // datacenter GPUs (100-3,000 and more) share no bucket at their
        // typical speeds.
        let cpu: Vec<_> = [1.5, 4.0, 8.0, 15.0]
            .map(|v| bucket(&DECODE_BOUNDARIES_TPS, v))
            .into();
        let consumer: Vec<_> = [35.0, 60.0, 90.0, 140.0]
            .map(|v| bucket(&DECODE_BOUNDARIES_TPS, v))
            .into();
        let datacenter: Vec<_> = [400.0, 900.0, 2_500.0, 4_000.0]
            .map(|v| bucket(&DECODE_BOUNDARIES_TPS, v))
            .into();
        assert!(cpu.iter().max() < consumer.iter().min());
        assert!(consumer.iter().max() < datacenter.iter().min());
        // Within each kind, speeds a factor of two apart are told apart.
        for kind in [&cpu, &consumer, &datacenter] {
            assert!(kind.windows(2).all(|w| w[0] < w[1]), "{kind:?}");
        }
        // Token counts: every context bucket edge is a bucket edge, up to
        // 128k, and a 128k prompt is not in the overflow bucket.
        for edge in [8_192.0, 16_384.0, 32_768.0, 65_536.0, 131_072.0] {
            assert!(TOKEN_BOUNDARIES.contains(&edge), "{edge}");
        }
        assert!(bucket(&TOKEN_BOUNDARIES, 131_072.0) < TOKEN_BOUNDARIES.len());
        // Prefill up to 50,000 tokens/s stays out of the overflow bucket.
        assert!(bucket(&PREFILL_BOUNDARIES_TPS, 50_000.0) < PREFILL_BOUNDARIES_TPS.len());
        // Time to first token: 5 ms to the proxy's default 10 min limit.
        assert_eq!(TIME_TO_FIRST_TOKEN_BOUNDARIES_MS.last(), Some(&600_000.0));
    }

    #[test]
    fn attribute_sets_keep_schema_order_and_replace_duplicates() {
        let mut set = AttributeSet::default();
        set.set(AttributeKey::FailureReason, AttributeValue::Static("other"));
        set.set(AttributeKey::Model, AttributeValue::Static("a"));
        set.set(AttributeKey::GpuCount, AttributeValue::Int(2));
        set.set(AttributeKey::Model, AttributeValue::Static("b"));
        let keys: Vec<_> = set.keys().collect();
        assert_eq!(
            keys,
            [
                AttributeKey::Model,
                AttributeKey::GpuCount,
                AttributeKey::FailureReason
            ]
        );
        let kvs = set.to_key_values();
        assert_eq!(kvs[0], KeyValue::new("mesh_llm.model", "b"));
    }
}
