//! The attribute keys survey may export, on data points ([`AttributeKey`])
//! and on the resource ([`ResourceKey`]), which keys each metric carries
//! ([`MetricKeys`]), and what a collector accepts as their values.

use crate::metrics::{self, MetricSpec};
use crate::privacy;
use crate::values::{ContextBucket, FailureKind, LaunchKind, RequestOutcome, closed_enum};

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

/// The attribute keys survey puts on one metric's points: those they may
/// carry, and those a point must carry (only the inference counter's
/// request outcome, which splits its streams by outcome).
///
/// As the runtime builds them: every metric about a model may carry the
/// model's facts, its node's hardware and its context bucket;
/// `mesh_llm_loaded_models` only the node's hardware and version. The
/// lifecycle metrics of a model add its launch kind, and those of a failed
/// launch (the failure counter, the launch duration) its failure reason.
/// The inference metrics carry neither; the inference counter always
/// carries the request's outcome, and no other metric does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricKeys {
    allowed: u32,
    required: u32,
}

impl MetricKeys {
    /// The facts of a model on its node.
    const MODEL: MetricKeys = MetricKeys::of(&[
        AttributeKey::Model,
        AttributeKey::Architecture,
        AttributeKey::Quantization,
        AttributeKey::GpuName,
        AttributeKey::GpuStableId,
        AttributeKey::BackendDevice,
        AttributeKey::GpuCount,
        AttributeKey::IsSoc,
        AttributeKey::Backend,
        AttributeKey::ContextBucket,
        AttributeKey::ServiceVersion,
    ]);

    /// A node's hardware and version.
    const NODE: MetricKeys = MetricKeys::of(&[
        AttributeKey::GpuName,
        AttributeKey::GpuStableId,
        AttributeKey::BackendDevice,
        AttributeKey::GpuCount,
        AttributeKey::IsSoc,
        AttributeKey::ServiceVersion,
    ]);

    const fn bit(key: AttributeKey) -> u32 {
        1 << key as u32
    }

    /// `keys`, none of them required.
    const fn of(keys: &[AttributeKey]) -> MetricKeys {
        let mut allowed = 0;
        let mut i = 0;
        while i < keys.len() {
            allowed |= MetricKeys::bit(keys[i]);
            i += 1;
        }
        MetricKeys {
            allowed,
            required: 0,
        }
    }

    /// These keys and `key`, which may be absent.
    const fn with(self, key: AttributeKey) -> MetricKeys {
        MetricKeys {
            allowed: self.allowed | MetricKeys::bit(key),
            ..self
        }
    }

    /// These keys and `key`, which is always there.
    const fn with_required(self, key: AttributeKey) -> MetricKeys {
        MetricKeys {
            allowed: self.allowed | MetricKeys::bit(key),
            required: self.required | MetricKeys::bit(key),
        }
    }

    /// The keys survey puts on the points of `metric`.
    pub fn of_metric(metric: &MetricSpec) -> MetricKeys {
        match metric.name {
            metrics::LOADED_MODELS => MetricKeys::NODE,
            metrics::INFERENCE_REQUESTS_TOTAL => {
                MetricKeys::MODEL.with_required(AttributeKey::RequestOutcome)
            }
            _ if metric.prompt_shape => MetricKeys::MODEL,
            metrics::LAUNCH_FAILURE_TOTAL | metrics::LAUNCH_DURATION_MS => MetricKeys::MODEL
                .with(AttributeKey::LaunchKind)
                .with(AttributeKey::FailureReason),
            _ => MetricKeys::MODEL.with(AttributeKey::LaunchKind),
        }
    }

    /// Whether points of the metric may carry `key`.
    pub fn allows(self, key: AttributeKey) -> bool {
        self.allowed & MetricKeys::bit(key) != 0
    }

    /// Whether points of the metric always carry `key`.
    pub fn requires(self, key: AttributeKey) -> bool {
        self.required & MetricKeys::bit(key) != 0
    }

    /// Whether a point with exactly the keys `present` has only keys the
    /// metric may carry, and every key it always carries.
    pub fn admits(self, present: impl IntoIterator<Item = AttributeKey>) -> bool {
        let present = present
            .into_iter()
            .fold(0, |keys, key| keys | MetricKeys::bit(key));
        present & !self.allowed == 0 && present & self.required == self.required
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
