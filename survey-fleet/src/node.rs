//! One simulated node: a real survey exporter in its own process (its own
//! `service.instance.id`), with the hardware of its kind, launching what
//! the truth draws. Time passes on survey's simulated clock: a launch takes
//! its drawn time and a model stays up for its drawn uptime, in an instant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use survey::{ContextBucket, FailureKind, LaunchKind};

use crate::rng::Rng;
use crate::truth::{self, Draw};

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
    survey::__private::advance_clock(Duration::from_secs_f64(spec.draw.launch_ms / 1000.0));
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
        "enabled = true\nendpoint = \"{endpoint}\"\nexport_interval_secs = 3600\ntimeout_secs = 10\n"
    ))
    .map_err(|e| e.to_string())?;
    let guard = survey::Setup::new(&config)
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
        if let Ok(running) = outcome {
            // Exported while loaded: its exact context is seen.
            flush()?;
            survey::__private::advance_clock(Duration::from_secs_f64(draw.uptime_s));
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
        });
    }
    flush()?;
    guard.shutdown();
    Ok(record)
}
