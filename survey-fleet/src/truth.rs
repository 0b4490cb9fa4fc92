//! The ground truth the fleet is drawn from: which models nodes launch and
//! how often, on what hardware, at what context sizes, how likely each
//! launch is to fail and why, how likely a loaded model is to crash, how
//! long launches take and models stay up, and how a loaded model serves:
//! how many requests, how they end, and how fast each model decodes and
//! processes prompts on each kind of hardware at each context size.

use survey::{FailureKind, RequestOutcome};

use crate::rng::Rng;

/// A model in the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// What survey exports as `mesh_llm.model` (a file stem).
    pub name: &'static str,
    /// GGUF architecture.
    pub architecture: &'static str,
    /// Quantization.
    pub quantization: &'static str,
    /// Share of launches.
    pub popularity: f64,
    /// Failure probability on the reference GPU at up to 8k tokens.
    pub failure: f64,
    /// Probability that a loaded instance crashes instead of being unloaded.
    pub crash: f64,
    /// Median launch time on the reference GPU.
    pub launch_median_ms: f64,
    /// Median time an instance stays loaded.
    pub uptime_median_s: f64,
    /// Decode and prefill speed relative to an 8B model at 4 bits (its
    /// size, quantization and active parameters).
    pub speed: f64,
}

/// What kind of machine a node is, for speed: the classes the decode
/// histogram's bounds are chosen to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// No GPU: about 1 to 20 tokens/s.
    Cpu,
    /// A consumer GPU or Apple silicon: about 30 to 200 tokens/s.
    ConsumerGpu,
    /// A datacenter GPU: hundreds to thousands of tokens/s.
    DatacenterGpu,
}

/// A kind of node.
#[derive(Debug, Clone, Copy)]
pub struct Hardware {
    /// GPU name, `None` for a CPU-only node.
    pub gpu: Option<&'static str>,
    /// Number of GPUs.
    pub gpu_count: usize,
    /// Device family.
    pub device: &'static str,
    /// Apple silicon or Jetson.
    pub is_soc: bool,
    /// Failure probabilities are multiplied by this.
    pub failure_factor: f64,
    /// Launch times are multiplied by this.
    pub slowness: f64,
    /// Why launches fail here, with weights.
    pub reasons: &'static [(FailureKind, f64)],
    /// Its speed class.
    pub class: Class,
    /// Median decode speed of the reference model (8B, 4 bits) up to 8k
    /// tokens of context, tokens/s.
    pub decode_tps: f64,
    /// Median prompt processing speed of the reference model, tokens/s.
    pub prefill_tps: f64,
}

/// The models.
pub const MODELS: [Model; 6] = [
    Model {
        name: "Qwen3-8B-Q4_K_M",
        architecture: "qwen3",
        quantization: "Q4_K_M",
        popularity: 0.35,
        failure: 0.04,
        crash: 0.05,
        launch_median_ms: 8_000.0,
        uptime_median_s: 6.0 * 3600.0,
        speed: 1.0,
    },
    Model {
        name: "Llama-3.2-3B-Instruct-Q8_0",
        architecture: "llama",
        quantization: "Q8_0",
        popularity: 0.22,
        failure: 0.03,
        crash: 0.02,
        launch_median_ms: 3_000.0,
        uptime_median_s: 12.0 * 3600.0,
        speed: 1.8,
    },
    Model {
        name: "gemma-3-27b-it-Q4_K_M",
        architecture: "gemma3",
        quantization: "Q4_K_M",
        popularity: 0.14,
        failure: 0.15,
        crash: 0.10,
        launch_median_ms: 45_000.0,
        uptime_median_s: 2.0 * 3600.0,
        speed: 0.32,
    },
    Model {
        name: "phi-4-Q4_K_M",
        architecture: "phi3",
        quantization: "Q4_K_M",
        popularity: 0.12,
        failure: 0.06,
        crash: 0.03,
        launch_median_ms: 6_000.0,
        uptime_median_s: 24.0 * 3600.0,
        speed: 0.6,
    },
    Model {
        name: "Mistral-Small-24B-Q5_K_M",
        architecture: "llama",
        quantization: "Q5_K_M",
        popularity: 0.09,
        failure: 0.10,
        crash: 0.06,
        launch_median_ms: 30_000.0,
        uptime_median_s: 3.0 * 3600.0,
        speed: 0.33,
    },
    Model {
        name: "GLM-4.5-Air-Q4_K_M",
        architecture: "glm4moe",
        quantization: "Q4_K_M",
        popularity: 0.08,
        failure: 0.30,
        crash: 0.25,
        launch_median_ms: 150_000.0,
        uptime_median_s: 40.0 * 60.0,
        speed: 0.55,
    },
];

/// The kinds of node, assigned in turn.
pub const HARDWARE: [Hardware; 5] = [
    Hardware {
        gpu: Some("NVIDIA GeForce RTX 4090"),
        gpu_count: 1,
        device: "cuda",
        is_soc: false,
        failure_factor: 1.0,
        slowness: 1.0,
        reasons: &[
            (FailureKind::HealthTimeout, 0.4),
            (FailureKind::KnownKvCacheCrash, 0.3),
            (FailureKind::ExitedBeforeHealthy, 0.3),
        ],
        class: Class::ConsumerGpu,
        decode_tps: 110.0,
        prefill_tps: 4_000.0,
    },
    Hardware {
        gpu: Some("NVIDIA GeForce RTX 3060"),
        gpu_count: 1,
        device: "cuda",
        is_soc: false,
        failure_factor: 1.8,
        slowness: 1.6,
        reasons: &[
            (FailureKind::CapacityRejected, 0.5),
            (FailureKind::HealthTimeout, 0.3),
            (FailureKind::KnownKvCacheCrash, 0.2),
        ],
        class: Class::ConsumerGpu,
        decode_tps: 55.0,
        prefill_tps: 1_500.0,
    },
    Hardware {
        gpu: Some("Apple M2 Max"),
        gpu_count: 1,
        device: "metal",
        is_soc: true,
        failure_factor: 1.2,
        slowness: 1.3,
        reasons: &[
            (FailureKind::CapacityRejected, 0.4),
            (FailureKind::ExitedBeforeHealthy, 0.4),
            (FailureKind::Other, 0.2),
        ],
        class: Class::ConsumerGpu,
        decode_tps: 45.0,
        prefill_tps: 600.0,
    },
    Hardware {
        gpu: Some("AMD Instinct MI300X"),
        gpu_count: 8,
        device: "rocm",
        is_soc: false,
        failure_factor: 0.7,
        slowness: 0.8,
        reasons: &[
            (FailureKind::SpawnFailed, 0.3),
            (FailureKind::HealthTimeout, 0.4),
            (FailureKind::Other, 0.3),
        ],
        class: Class::DatacenterGpu,
        decode_tps: 1_200.0,
        prefill_tps: 30_000.0,
    },
    Hardware {
        gpu: None,
        gpu_count: 0,
        device: "cpu",
        is_soc: false,
        failure_factor: 2.5,
        slowness: 6.0,
        reasons: &[
            (FailureKind::CapacityRejected, 0.6),
            (FailureKind::HealthTimeout, 0.4),
        ],
        class: Class::Cpu,
        decode_tps: 9.0,
        prefill_tps: 60.0,
    },
];

/// Context sizes launched, with weights, and the factor each puts on the
/// failure probability.
pub const CONTEXTS: [(u64, f64, f64); 5] = [
    (4_096, 0.35, 1.0),
    (8_192, 0.25, 1.0),
    (32_768, 0.25, 1.3),
    (131_072, 0.10, 1.8),
    (262_144, 0.05, 2.5),
];

/// The hardware of node `index`.
pub fn hardware_of(index: usize) -> &'static Hardware {
    &HARDWARE[index % HARDWARE.len()]
}

/// Failure probability of `model` on `hardware` at `context` tokens.
pub fn failure_probability(model: &Model, hardware: &Hardware, context: u64) -> f64 {
    let factor = CONTEXTS
        .iter()
        .find(|(c, _, _)| *c == context)
        .map_or(1.0, |(_, _, f)| *f);
    (model.failure * hardware.failure_factor * factor).min(0.95)
}

/// The expected failure rate of `model` over a fleet of `nodes` nodes
/// (hardware assigned in turn, contexts by weight).
pub fn expected_failure_rate(model: &Model, nodes: usize) -> f64 {
    let mut total = 0.0;
    for index in 0..nodes {
        let hardware = hardware_of(index);
        for (context, weight, _) in CONTEXTS {
            total += weight * failure_probability(model, hardware, context);
        }
    }
    total / nodes as f64
}

/// One launch, drawn.
#[derive(Debug, Clone)]
pub struct Draw {
    /// Which model.
    pub model: &'static Model,
    /// Context size.
    pub context: u64,
    /// `Some(reason)` if it fails.
    pub failure: Option<FailureKind>,
    /// How long the launch takes.
    pub launch_ms: f64,
    /// If it succeeds: whether it later crashes, and after how long.
    pub crashes: bool,
    /// How long it stays loaded.
    pub uptime_s: f64,
}

/// Draws one launch on `hardware`.
pub fn draw(rng: &mut Rng, hardware: &Hardware) -> Draw {
    let weights: Vec<f64> = MODELS.iter().map(|m| m.popularity).collect();
    let model = &MODELS[rng.weighted(&weights)];
    let context_weights: Vec<f64> = CONTEXTS.iter().map(|c| c.1).collect();
    let context = CONTEXTS[rng.weighted(&context_weights)].0;
    let failure = if rng.unit() < failure_probability(model, hardware, context) {
        let reason_weights: Vec<f64> = hardware.reasons.iter().map(|r| r.1).collect();
        Some(hardware.reasons[rng.weighted(&reason_weights)].0)
    } else {
        None
    };
    let launch_ms = rng.log_normal(model.launch_median_ms * hardware.slowness, 0.5);
    let crashes = rng.unit() < model.crash;
    let uptime_s = rng.log_normal(model.uptime_median_s, 0.8);
    Draw {
        model,
        context,
        failure,
        launch_ms,
        crashes,
        uptime_s,
    }
}

/// Requests a loaded instance serves before it ends: drawn uniformly
/// between these two, inclusive.
pub const REQUESTS_PER_LOAD: (u64, u64) = (2, 6);

/// How requests end, with weights: most are answered in full.
pub const OUTCOMES: [(RequestOutcome, f64); 5] = [
    (RequestOutcome::Ok, 0.88),
    (RequestOutcome::BackendError, 0.04),
    (RequestOutcome::Timeout, 0.02),
    (RequestOutcome::ClientCancelled, 0.05),
    (RequestOutcome::Shutdown, 0.01),
];

/// The share of requests answered as a stream (only those have a time to
/// first token).
pub const STREAMED: f64 = 0.6;

/// Spread (log-space standard deviation) of one request's decode speed
/// around the median of its model, hardware and context: one machine
/// decodes one model at a steady speed.
pub const DECODE_SIGMA: f64 = 0.15;

/// Spread of one request's prompt processing speed (batching and prompt
/// length move it more).
pub const PREFILL_SIGMA: f64 = 0.25;

/// The factor a context size puts on speeds: attention over a longer
/// context costs more per token.
pub fn context_speed(context: u64) -> f64 {
    match context {
        ..=8_192 => 1.0,
        8_193..=32_768 => 0.85,
        32_769..=131_072 => 0.7,
        _ => 0.55,
    }
}

/// Median decode speed, tokens/s, of `model` on `hardware` at `context`.
pub fn decode_median(model: &Model, hardware: &Hardware, context: u64) -> f64 {
    hardware.decode_tps * model.speed * context_speed(context)
}

/// Median prompt processing speed, tokens/s.
pub fn prefill_median(model: &Model, hardware: &Hardware, context: u64) -> f64 {
    hardware.prefill_tps * model.speed * context_speed(context)
}

/// One request to a loaded instance, drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestDraw {
    /// How it ends.
    pub outcome: RequestOutcome,
    /// Answered as a stream.
    pub streamed: bool,
    /// Prompt tokens (all evaluated: no cache).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub output_tokens: u64,
    /// Prompt processing speed, tokens/s.
    pub prefill_tps: f64,
    /// Decode speed, tokens/s.
    pub decode_tps: f64,
    /// The node's time before the backend starts on the prompt, ms.
    pub overhead_ms: f64,
}

/// How many requests an instance of `context` tokens serves, and each
/// request, drawn.
pub fn draw_requests(
    rng: &mut Rng,
    model: &Model,
    hardware: &Hardware,
    context: u64,
) -> Vec<RequestDraw> {
    let (least, most) = REQUESTS_PER_LOAD;
    let n = least + rng.next_u64() % (most - least + 1);
    let outcome_weights: Vec<f64> = OUTCOMES.iter().map(|o| o.1).collect();
    (0..n)
        .map(|_| {
            let outcome = OUTCOMES[rng.weighted(&outcome_weights)].0;
            let streamed = rng.unit() < STREAMED;
            let prompt = rng.log_normal(900.0, 1.0).clamp(16.0, context as f64 / 2.0);
            let output = rng.log_normal(250.0, 0.7).clamp(1.0, 8_192.0);
            RequestDraw {
                outcome,
                streamed,
                prompt_tokens: prompt.round() as u64,
                output_tokens: output.round() as u64,
                prefill_tps: rng
                    .log_normal(prefill_median(model, hardware, context), PREFILL_SIGMA),
                decode_tps: rng.log_normal(decode_median(model, hardware, context), DECODE_SIGMA),
                overhead_ms: rng.log_normal(15.0, 0.3),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The speed classes are far apart for every model at every context
    /// size: the slowest consumer GPU decodes at least 4 times the CPU's
    /// speed, a datacenter GPU at least 4 times the fastest consumer
    /// GPU's, beyond the spread of single requests (e^(4 sigma) < 1.9).
    #[test]
    fn the_speed_classes_are_far_apart() {
        assert!((4.0 * DECODE_SIGMA).exp() < 1.9);
        for model in &MODELS {
            for (context, _, _) in CONTEXTS {
                let speeds = |class: Class| {
                    HARDWARE
                        .iter()
                        .filter(|h| h.class == class)
                        .map(|h| decode_median(model, h, context))
                        .collect::<Vec<_>>()
                };
                let min = |v: Vec<f64>| v.into_iter().fold(f64::INFINITY, f64::min);
                let max = |v: Vec<f64>| v.into_iter().fold(0.0, f64::max);
                assert!(min(speeds(Class::ConsumerGpu)) >= 4.0 * max(speeds(Class::Cpu)));
                assert!(min(speeds(Class::DatacenterGpu)) >= 4.0 * max(speeds(Class::ConsumerGpu)));
            }
        }
    }
}
