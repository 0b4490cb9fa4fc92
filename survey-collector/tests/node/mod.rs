//! Real survey nodes for the collector's tests: each runs in a child
//! process (its own `service.instance.id`), goes through a scripted set of
//! launches, failures, unloads and exits with the real macros and the real
//! OTLP/HTTP exporter, and exports to the collector under test.

#![allow(dead_code)]

use std::process::Child;
use std::time::Duration;

use survey_test_support::child;
use survey_test_support::host::{
    LaunchError, Spec, crashed, load, rtx_4090, setup, started, unload,
};

/// Environment variable naming the script a child runs.
pub const SCRIPT_ENV: &str = "SURVEY_COLLECTOR_TEST_NODE";
/// Environment variable with the endpoint a child exports to.
pub const ENDPOINT_ENV: &str = "SURVEY_COLLECTOR_TEST_ENDPOINT";
/// Environment variable with extra `[telemetry]` lines for a child.
pub const TELEMETRY_ENV: &str = "SURVEY_COLLECTOR_TEST_TELEMETRY";

/// Starts a child process of this test binary that runs `script` and
/// exports to `endpoint`. `test_name` is the test that calls [`run_child`].
pub fn spawn(test_name: &str, script: &str, endpoint: &str) -> Child {
    spawn_with(test_name, script, endpoint, "")
}

/// [`spawn`], with `telemetry` lines added to the node's `[telemetry]` table.
pub fn spawn_with(test_name: &str, script: &str, endpoint: &str, telemetry: &str) -> Child {
    child::this_test(test_name)
        .env(SCRIPT_ENV, script)
        .env(ENDPOINT_ENV, endpoint)
        .env(TELEMETRY_ENV, telemetry)
        .spawn()
        .expect("child node")
}

/// Waits for a child started by [`spawn`] to end, asserting that it
/// succeeded (its exports got through); `what` names it in the failure.
pub async fn finished(mut child: Child, what: &str) {
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("the waiting task")
        .expect("the child's exit status");
    assert!(status.success(), "{what} failed: {status}");
}

/// In a child started by [`spawn`], runs its script; elsewhere, nothing.
pub fn run_child() {
    let (Ok(script), Ok(endpoint)) = (std::env::var(SCRIPT_ENV), std::env::var(ENDPOINT_ENV))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(run_script(&script, &endpoint));
}

/// The fleet of the report test:
///
/// - `gpu` (two identical nodes run it): Qwen3-8B-Q4_K_M at 32768 tokens
///   launches in about 120 ms and stays loaded over an export, then is
///   unloaded; Llama-3.2-1B at 4096 fails with `health_timeout`, then
///   launches and crashes.
/// - `cpu`: Qwen3-8B-Q4_K_M at 8192 fails with `spawn_failed`, then
///   launches, stays loaded over an export and is unloaded; phi-4 at 200000
///   fails with `known_kv_cache_crash`.
///
/// And the inference fleet (with `prompt_shape_metrics = true`), see
/// [`inference_script`]: `inference-gpu` on an RTX 4090, `inference-cpu`
/// on a CPU node.
async fn run_script(script: &str, endpoint: &str) {
    let hardware = match script {
        "gpu" | "inference-gpu" => rtx_4090(),
        "cpu" | "inference-cpu" => survey::HardwareFacts::cpu_only(),
        other => panic!("unknown script {other}"),
    };
    let extra = std::env::var(TELEMETRY_ENV).unwrap_or_default();
    let guard = started(
        setup(endpoint, &extra)
            .service_version("1.4.2")
            .hardware(hardware),
    );
    let flush = || assert!(guard.flush(Duration::from_secs(30)), "{}", guard.status());
    match script {
        "inference-gpu" | "inference-cpu" => {
            inference_script(script == "inference-gpu", &flush).await;
        }
        "gpu" => {
            let qwen = Spec::local_file(
                1,
                "/home/someone/models/Qwen3-8B-Q4_K_M.gguf",
                32768,
                "llama",
            );
            let llama = Spec::local_file(2, "/srv/llm/Llama-3.2-1B.gguf", 4096, "llama");
            let qwen = load(&qwen, Duration::from_millis(120), None).await.unwrap();
            load(&llama, Duration::ZERO, Some(LaunchError::HealthTimeout))
                .await
                .unwrap_err();
            let running = load(&llama, Duration::ZERO, None).await.unwrap();
            crashed(&running);
            flush();
            unload(qwen).await.unwrap();
        }
        _ => {
            let qwen = Spec::local_file(1, "C:\\models\\Qwen3-8B-Q4_K_M.gguf", 8192, "llama");
            let phi = Spec::local_file(3, "/m/phi-4.gguf", 200_000, "llama");
            load(&qwen, Duration::ZERO, Some(LaunchError::Spawn))
                .await
                .unwrap_err();
            let running = load(&qwen, Duration::ZERO, None).await.unwrap();
            flush();
            unload(running).await.unwrap();
            load(&phi, Duration::ZERO, Some(LaunchError::KvCache))
                .await
                .unwrap_err();
        }
    }
    flush();
    guard.shutdown();
}

/// The report's `most_launched` rows of one `cpu` node: Qwen3-8B-Q4_K_M
/// launched twice (a failure, then a success), phi-4 once (a failure).
pub fn cpu_most_launched() -> serde_json::Value {
    serde_json::json!([
        {"model": "Qwen3-8B-Q4_K_M", "launches": 2, "nodes": 1},
        {"model": "phi-4", "launches": 1, "nodes": 1},
    ])
}

/// Decode time of the inference scripts' 64 generated tokens, in ms, on
/// the CPU node then the GPU node: 8 and 40 tokens/s.
pub const DECODE_MS: [f64; 2] = [8_000.0, 1_600.0];
/// Prompt processing time of their 500 prompt tokens, in ms, on the CPU
/// node then the GPU node: 125 and 2,000 tokens/s.
pub const PREFILL_MS: [f64; 2] = [4_000.0, 250.0];
/// Time to the first token of their streamed answers.
pub const FIRST_TOKEN: Duration = Duration::from_millis(300);

/// A node that serves: every metric survey has, with the switch on.
/// Llama-3.2-1B at 4096 fails with `health_timeout`; Qwen3-8B-Q4_K_M at
/// 32768 launches and answers 5 requests: 3 in full (2 streamed, first
/// token after [`FIRST_TOKEN`]; 700 prompt tokens, 500 of them processed
/// in [`PREFILL_MS`], 64 generated in [`DECODE_MS`]), 1 `backend_error`,
/// 1 `client_cancelled`; it is loaded over an export (the gauges), then
/// crashes, launches again and is unloaded.
async fn inference_script(gpu: bool, flush: &dyn Fn()) {
    use survey::{Inference, RequestOutcome, Throughput};
    let qwen = Spec::local_file(
        1,
        "/home/someone/models/Qwen3-8B-Q4_K_M.gguf",
        32768,
        "llama",
    );
    let llama = Spec::local_file(2, "/srv/llm/Llama-3.2-1B.gguf", 4096, "llama");
    load(&llama, Duration::ZERO, Some(LaunchError::HealthTimeout))
        .await
        .unwrap_err();
    let running = load(&qwen, Duration::ZERO, None).await.unwrap();
    let i = usize::from(gpu);
    for streamed in [true, true, false] {
        let answered = Inference::new(RequestOutcome::Ok)
            .prompt_tokens(700)
            .output_tokens(64)
            .prefill(Throughput::new(500, PREFILL_MS[i]))
            .decode(Throughput::new(64, DECODE_MS[i]));
        let answered = if streamed {
            answered.time_to_first_token(FIRST_TOKEN)
        } else {
            answered
        };
        survey::record_inference(&running, answered);
    }
    survey::record_inference(&running, Inference::new(RequestOutcome::BackendError));
    survey::record_inference(&running, Inference::new(RequestOutcome::ClientCancelled));
    flush();
    crashed(&running);
    let again = load(&qwen, Duration::ZERO, None).await.unwrap();
    unload(again).await.unwrap();
}
