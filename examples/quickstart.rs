//! Survey end to end in one process: a local OTLP/HTTP receiver, a few
//! annotated launches (one failing), an unload and a crash, then the table of
//! what the receiver decoded.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use survey_test_support::{Receiver, render_table};

/// What the host knows about a model before launching it.
struct LaunchSpec {
    name: String,
    path: String,
    ctx_size: u64,
}

impl survey::SurveyModel for LaunchSpec {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.name.as_str(), &self.path)
            .architecture("qwen3")
            .quantization("Q4_K_M")
            .context_length(self.ctx_size)
            .backend("llama.cpp")
    }
}

/// A running backend; the same name finds it in survey's loaded set.
struct Running {
    name: String,
    path: String,
}

impl survey::SurveyModel for Running {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.name.as_str(), &self.path)
    }
}

#[derive(Debug, survey::FailureReason)]
enum LaunchError {
    #[survey(reason = "mmproj_missing")]
    MmprojMissing { path: String },
}

#[survey::launch(kind = "runtime_load", model = spec)]
async fn load(spec: &LaunchSpec, mmproj: Option<&str>) -> Result<Running, LaunchError> {
    if let Some(path) = mmproj {
        return Err(LaunchError::MmprojMissing { path: path.into() });
    }
    std::thread::sleep(Duration::from_millis(120)); // spawn + health check
    Ok(Running {
        name: spec.name.clone(),
        path: spec.path.clone(),
    })
}

#[survey::unload(model = running)]
async fn unload(running: Running) -> Result<(), std::io::Error> {
    drop(running);
    Ok(())
}

#[survey::exit(model = running)]
fn backend_died(running: &Running) {
    eprintln!("backend of {} exited unexpectedly", running.name);
}

fn main() {
    let receiver = Receiver::start();
    let config: survey::TelemetryConfig = toml::from_str(&format!(
        "enabled = true\nendpoint = \"{}\"\nexport_interval_secs = 60",
        receiver.endpoint()
    ))
    .expect("config");
    let guard = survey::Setup::new(&config)
        .service_version(env!("CARGO_PKG_VERSION"))
        .start();

    futures::executor::block_on(async {
        let qwen = LaunchSpec {
            name: "qwen".into(),
            path: "/home/me/models/Qwen3-8B-Q4_K_M.gguf".into(),
            ctx_size: 32768,
        };
        let gemma = LaunchSpec {
            name: "gemma".into(),
            path: "/home/me/models/gemma-3-4b-it-Q4_0.gguf".into(),
            ctx_size: 8192,
        };
        let phi = LaunchSpec {
            name: "phi".into(),
            path: "/home/me/models/phi-4-Q8_0.gguf".into(),
            ctx_size: 16384,
        };
        let _qwen = load(&qwen, None).await.expect("qwen loads");
        let gemma_running = load(&gemma, None).await.expect("gemma loads");
        let phi_running = load(&phi, None).await.expect("phi loads");
        if let Err(LaunchError::MmprojMissing { path }) =
            load(&qwen, Some("/home/me/models/mmproj.gguf")).await
        {
            eprintln!("launch failed as planned: {path} is missing");
        }
        unload(gemma_running).await.expect("gemma unloads");
        backend_died(&phi_running);
    });

    let report = guard.shutdown(); // final export
    println!("survey shutdown: {report:?}\n");
    println!("{}", render_table(&receiver.latest_points()));
    println!(
        "requests received: {} (all POST /v1/metrics)",
        receiver.requests().len()
    );
}
