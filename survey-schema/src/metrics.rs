//! The metrics survey exports: their names, instruments, units and
//! histogram boundaries ([`METRICS`]).
//!
//! Ten metrics are the spec's model lifecycle. Six more, the inference
//! metrics, are recorded only when `telemetry.prompt_shape_metrics = true`
//! ([`MetricSpec::prompt_shape`]): numbers about the requests a loaded model
//! answered, never anything of their content.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
