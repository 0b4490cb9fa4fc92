//! One simulated node: a real survey exporter in its own process (its own
//! `service.instance.id`), with the hardware of its kind, launching what
//! the truth draws, and serving requests with each model it loaded, with
//! the inference metrics on (`prompt_shape_metrics = true`). Time passes on
//! survey's simulated clock: a launch takes its drawn time and a model
//! stays up for its drawn uptime, in an instant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use survey::{ContextBucket, FailureKind, Inference, LaunchKind, RequestOutcome, Throughput};

use crate::rng::Rng;
use crate::truth::{self, Draw, RequestDraw};

/// What one launch really was: the ground truth the report is checked
/// against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// Index of the node that launched.
    pub node: usize,
    /// `mesh_llm.model`.
    pub model: String,
    /// GPU name, `None` on a CPU node.
    pub gpu_name: Option<String>,
    /// Device family.
    pub backend_device: String,
    /// GPUs on the node.
    pub gpu_count: usize,
    /// Context size given to the backend.
    pub context: u64,
    /// Its bucket.
    pub context_bucket: String,
    /// Failure reason, `None` for a success.
    pub failure: Option<String>,
    /// Launch time.
    pub launch_ms: f64,
    /// For a success: whether it crashed (else it was unloaded).
    pub crashed: Option<bool>,
    /// For a success: how long it stayed loaded.
    pub uptime_s: Option<f64>,
    /// For a success: the requests it served while loaded.
    pub requests: Vec<Request>,
}

/// One request a loaded model served, as it really was: the numbers
/// survey recorded for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// `mesh_llm.request_outcome`.
    pub outcome: String,
    /// Answered in full: prompt processing speed, tokens/s, as survey
    /// computes it from the tokens and the time.
    pub prefill_tps: Option<f64>,
    /// Answered in full: decode speed, tokens/s, likewise.
    pub decode_tps: Option<f64>,
    /// Answered in full as a stream: time to first token, ms.
    pub ttft_ms: Option<f64>,
}

/// Tokens per second as survey computes them from a [`Throughput`]: this
/// mirrors survey-runtime's rule (the private `Throughput::per_second` of
/// survey-runtime/src/inference.rs; its checks for no tokens or no time
/// are left out, as no draw has either), so that the truth is the very
/// number survey recorded: the drawn speed, through the time and back,
/// may be a rounding off it.
fn per_second(tokens: u64, millis: f64) -> f64 {
    tokens as f64 * 1000.0 / millis
}

/// Serves `draw` with `running`: records it as a host would, and returns
/// what was recorded.
fn serve(running: &Running, draw: &RequestDraw) -> Request {
    let mut request = Request {
        outcome: draw.outcome.as_str().to_string(),
        prefill_tps: None,
        decode_tps: None,
        ttft_ms: None,
    };
    let (prompt, output) = (draw.prompt_tokens, draw.output_tokens);
    let prefill_ms = prompt as f64 * 1000.0 / draw.prefill_tps;
    let decode_ms = output as f64 * 1000.0 / draw.decode_tps;
    // The numbers a backend measured go along whatever the outcome; survey
    // keeps those of requests answered in full only.
    let mut inference = Inference::new(draw.outcome)
        .prompt_tokens(prompt)
        .output_tokens(output)
        .prefill(Throughput::new(prompt, prefill_ms))
        .decode(Throughput::new(output, decode_ms));
    let first_token_ms = draw.overhead_ms + prefill_ms + 1000.0 / draw.decode_tps;
    let first_token = Duration::from_nanos((first_token_ms * 1e6).round() as u64);
    if draw.streamed {
        inference = inference.time_to_first_token(first_token);
    }
    survey::record_inference(running, inference);
    if draw.outcome == RequestOutcome::Ok {
        request.prefill_tps = Some(per_second(prompt, prefill_ms));
        request.decode_tps = Some(per_second(output, decode_ms));
        request.ttft_ms = draw.streamed.then(|| first_token.as_nanos() as f64 / 1e6);
    }
    request
}

struct Spec<'a> {
    slot: u64,
    draw: &'a Draw,
    gpu_index: usize,
}

impl survey::SurveyModel for Spec<'_> {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.slot, self.draw.model.name)
            .architecture(self.draw.model.architecture)
            .quantization(self.draw.model.quantization)
            .context_length(self.draw.context)
            .backend("llama.cpp")
            .device(survey::DeviceFacts {
                gpu_index: Some(self.gpu_index),
                ..Default::default()
            })
    }
}

struct Running {
    slot: u64,
}

impl survey::SurveyModel for Running {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.slot, "")
    }
}

/// A launch that takes its drawn time and ends as drawn.
#[survey::launch(kind = kind, model = spec)]
async fn launch(kind: LaunchKind, spec: &Spec<'_>) -> Result<Running, FailureKind> {
    crate::clock::advance(Duration::from_secs_f64(spec.draw.launch_ms / 1000.0));
    match spec.draw.failure {
        None => Ok(Running { slot: spec.slot }),
        Some(reason) => Err(reason),
    }
}

#[survey::unload(model = running)]
async fn unload(running: Running) {
    let _ = running.slot;
}

#[survey::exit(model = running)]
fn crashed(running: &Running) {
    let _ = running.slot;
}

/// Runs node `index` of the fleet drawn from `seed`: `launches` launches,
/// exported to `endpoint`. Returns what really happened.
pub async fn run(
    endpoint: &str,
    seed: u64,
    index: usize,
    launches: usize,
) -> Result<Vec<Launch>, String> {
    let hardware = truth::hardware_of(index);
    let mut rng = Rng::new(seed, index as u64);
    // Requests are drawn from a stream of their own, so the launches are
    // those of the same seed without them.
    let mut served = Rng::new(seed, (1 << 32) | index as u64);
    let facts = survey::HardwareFacts {
        backend_device: hardware.device.to_string(),
        gpus: (0..hardware.gpu_count)
            .map(|_| survey::GpuInfo {
                name: hardware.gpu.unwrap_or_default().to_string(),
                uuid: Some(format!("GPU-{}", rng.hex(16))),
            })
            .collect(),
        is_soc: hardware.is_soc,
    };
    let config: survey::TelemetryConfig = toml::from_str(&format!(
        "enabled = true\nendpoint = \"{endpoint}\"\nexport_interval_secs = 3600\ntimeout_secs = 10\n\
         prompt_shape_metrics = true\n"
    ))
    .map_err(|e| e.to_string())?;
    let guard = survey::Setup::new(&config)
        .clock(crate::clock::SimulatedClock)
        .env([("OTEL_UNUSED", "")])
        .service_version(env!("CARGO_PKG_VERSION"))
        .hardware(facts)
        .start();
    if !guard.is_enabled() {
        return Err(guard.status().to_string());
    }
    let flush = || {
        if guard.flush(Duration::from_secs(30)) {
            Ok(())
        } else {
            Err(format!("node {index}: export failed: {}", guard.status()))
        }
    };
    let mut record = Vec::with_capacity(launches);
    for slot in 0..launches {
        let draw = truth::draw(&mut rng, hardware);
        let spec = Spec {
            slot: slot as u64,
            draw: &draw,
            gpu_index: slot % hardware.gpu_count.max(1),
        };
        let kind = if slot == 0 {
            LaunchKind::Startup
        } else {
            LaunchKind::RuntimeLoad
        };
        let outcome = launch(kind, &spec).await;
        let mut requests = Vec::new();
        if let Ok(running) = outcome {
            for request in truth::draw_requests(&mut served, draw.model, hardware, draw.context) {
                requests.push(serve(&running, &request));
            }
            // Exported while loaded: its exact context is seen.
            flush()?;
            crate::clock::advance(Duration::from_secs_f64(draw.uptime_s));
            if draw.crashes {
                crashed(&running);
            } else {
                unload(running).await;
            }
        }
        let success = draw.failure.is_none();
        record.push(Launch {
            node: index,
            model: draw.model.name.to_string(),
            gpu_name: hardware.gpu.map(str::to_string),
            backend_device: hardware.device.to_string(),
            gpu_count: hardware.gpu_count,
            context: draw.context,
            context_bucket: ContextBucket::of(draw.context).as_str().to_string(),
            failure: draw.failure.map(|f| f.as_str().to_string()),
            launch_ms: draw.launch_ms,
            crashed: success.then_some(draw.crashes),
            uptime_s: success.then_some(draw.uptime_s),
            requests,
        });
    }
    flush()?;
    // The truth is what survey recorded: nothing dropped on the way.
    let status = guard.status();
    if !status.prompt_shape_metrics
        || status.events_dropped > 0
        || status.inference_unloaded > 0
        || status.inference_values_rejected > 0
    {
        return Err(format!(
            "node {index}: not everything was recorded: {status}"
        ));
    }
    guard.shutdown();
    Ok(record)
}
