//! One node that stays up for days and mostly idles, on survey's simulated
//! clock: it loads a model, later loads and unloads another, fails a
//! launch, crashes the first, and otherwise does nothing. Every simulated
//! export interval it asks survey for an export (`flush_export`), so with
//! heartbeats on (`telemetry.heartbeat_secs`) most of them are left out as
//! unchanged. It says when, in simulated seconds since its start, each
//! export it sent was made, so that a test can give the exports those
//! times and compare what a collector counts with and without heartbeats.

use std::time::Duration;

use survey::{ExportOutcome, FailureKind, LaunchKind};

/// The simulated export interval.
pub const INTERVAL: Duration = Duration::from_secs(15 * 60);

struct Model {
    slot: u64,
    name: &'static str,
    context: u64,
}

impl survey::SurveyModel for Model {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.slot, self.name)
            .architecture("qwen3")
            .quantization("Q4_K_M")
            .context_length(self.context)
            .backend("llama.cpp")
    }
}

#[survey::launch(kind = kind, model = model)]
async fn launch(kind: LaunchKind, model: &Model, fails: bool) -> Result<(), FailureKind> {
    crate::clock::advance(Duration::from_secs(40));
    if fails {
        Err(FailureKind::CapacityRejected)
    } else {
        Ok(())
    }
}

#[survey::unload(model = model)]
async fn unload(model: &Model) {
    let _ = model.slot;
}

#[survey::exit(model = model)]
fn crashed(model: &Model) {
    let _ = model.slot;
}

/// Runs the idle node for `days` simulated days, exporting to `endpoint`
/// with `heartbeat_secs`. Returns the simulated second of each export it
/// sent, in the order sent (a last one, if its shutdown sent one, at the
/// end's second).
pub async fn run(endpoint: &str, heartbeat_secs: u64, days: u64) -> Result<Vec<u64>, String> {
    // The interval is the simulated one (the exports asked for come from
    // flushes; a heartbeat shorter than the interval would mean every
    // interval).
    let config: survey::TelemetryConfig = toml::from_str(&format!(
        "enabled = true\nendpoint = \"{endpoint}\"\nexport_interval_secs = 900\n\
         heartbeat_secs = {heartbeat_secs}\ntimeout_secs = 10\n"
    ))
    .map_err(|e| e.to_string())?;
    let guard = survey::Setup::new(&config)
        .clock(crate::clock::SimulatedClock)
        .env([("OTEL_UNUSED", "")])
        .service_version(env!("CARGO_PKG_VERSION"))
        .hardware(survey::HardwareFacts {
            backend_device: "cuda".into(),
            gpus: vec![survey::GpuInfo {
                name: "NVIDIA GeForce RTX 4090".into(),
                uuid: None,
            }],
            is_soc: false,
        })
        .start();
    if !guard.is_enabled() {
        return Err(guard.status().to_string());
    }
    let first = Model {
        slot: 0,
        name: "Qwen3-8B-Q4_K_M",
        context: 32_768,
    };
    let second = Model {
        slot: 1,
        name: "gemma-3-4b-it-Q4_K_M",
        context: 8192,
    };
    let third = Model {
        slot: 2,
        name: "Llama-3.3-70B-Q4_K_M",
        context: 131_072,
    };
    let ticks_a_day = 86_400 / INTERVAL.as_secs();
    let mut sent = Vec::new();
    let mut elapsed = 0;
    for tick in 0..days * ticks_a_day {
        // What happens in this interval, at fixed ticks.
        match tick {
            0 => launch(LaunchKind::Startup, &first, false)
                .await
                .map_err(|e| format!("{e:?}"))?,
            t if t == ticks_a_day + 30 => launch(LaunchKind::RuntimeLoad, &second, false)
                .await
                .map_err(|e| format!("{e:?}"))?,
            t if t == ticks_a_day + 60 => unload(&second).await,
            t if t == 2 * ticks_a_day + 10 => {
                let _ = launch(LaunchKind::RuntimeLoad, &third, true).await;
            }
            t if t == 3 * ticks_a_day + 50 => crashed(&first),
            _ => {}
        }
        crate::clock::advance(INTERVAL);
        elapsed += INTERVAL.as_secs();
        match guard.flush_export(Duration::from_secs(30)) {
            Some(ExportOutcome::Sent) => sent.push(elapsed),
            Some(ExportOutcome::Unchanged) => {}
            other => {
                return Err(format!(
                    "tick {tick}: the export was {other:?}: {}",
                    guard.status()
                ));
            }
        }
    }
    // Anything sent at shutdown carries the last values, at the end.
    sent.push(elapsed);
    guard.shutdown();
    Ok(sent)
}
