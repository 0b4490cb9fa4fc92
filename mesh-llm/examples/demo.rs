//! See survey work: a real mesh-llm node with survey enabled (the opt-in
//! inference metrics too), a local OTLP receiver, and the stand-in
//! `llama-server`; a startup, a failed launch, a runtime load, a whole and
//! a streamed chat completion, an unload and a backend crash; then what the
//! receiver got.
//!
//! ```sh
//! cargo run -p mesh-llm --example demo
//! ```
//!
//! This one program plays three parts: the demo itself, the node (when run
//! as `demo node ...`), and the backend (when run through a link named
//! `llama-server`), so one command needs nothing else built or installed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mesh_llm::api::Client;
use mesh_llm::node::LoadRequest;
use survey::schema;
// The node harness, model files and receiver the tests use too.
use survey_test_support::mesh::{Launch, ModelFile, Node, write_model};
use survey_test_support::{Point, Receiver, TestDir, render_table};

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    if Path::new(&program)
        .file_name()
        .is_some_and(|n| n == "llama-server")
    {
        return llama_server_standin::main();
    }
    let rest: Vec<OsString> = args.collect();
    if rest.first().is_some_and(|a| a == "node") {
        return mesh_llm::cli::main_with(
            std::iter::once(OsString::from("mesh-llm")).chain(rest.into_iter().skip(1)),
        );
    }
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<(), String> {
    let work = TestDir::new("mesh-llm-demo");
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(&exe, bin.join("llama-server")).map_err(|e| e.to_string())?;

    let model = |file: &str, arch: &str, file_type: u32, mode: &str| -> PathBuf {
        write_model(
            &work,
            &format!("models/{file}"),
            ModelFile {
                architecture: Some(arch),
                file_type: Some(file_type),
                mode: Some(mode),
                load_ms: Some(400),
                // 25 ms a word: 40 tokens/s decoding, as a consumer GPU.
                token_ms: Some(25),
                padding: 4096,
            },
        )
    };
    let qwen = model("Qwen3-8B-Q4_K_M.gguf", "qwen3", 15, "healthy");
    let gemma = model("gemma-3-4b-it-Q8_0.gguf", "gemma3", 7, "healthy");
    let phi = model("phi-4-Q4_K_M.gguf", "phi3", 15, "kv-crash");
    let llama = model("Llama-3.2-1B-Instruct-F16.gguf", "llama", 1, "healthy");

    let receiver = Receiver::start();
    let config = work.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[models]]
model = "{}"
ctx_size = 32768

[[models]]
model = "{}"
ctx_size = 8192

[[plugin]]
name = "survey"
enabled = true

[telemetry]
endpoint = "{}"
export_interval_secs = 1
prompt_shape_metrics = true
"#,
            qwen.display(),
            gemma.display(),
            receiver.endpoint()
        ),
    )
    .map_err(|e| e.to_string())?;
    println!("== OTLP/HTTP receiver on {}", receiver.endpoint());
    println!("== starting a mesh-llm node with survey enabled, two models in its config\n");

    let node = Node::spawn(Launch {
        program: &exe,
        prefix: &["node"],
        config: &config,
        log_dir: &work.join("logs"),
        llama_server: Some(&bin.join("llama-server")),
        extra_args: &[],
        env: &[],
        log_filter: "warn",
    })
    .map_err(|(_, stderr)| format!("the node did not start:\n{stderr}"))?;
    println!(
        "   node control API on {}, inference API on {}",
        node.api, node.http
    );
    if !node.wait_line("mesh-llm: startup complete", Duration::from_secs(60)) {
        return Err(format!(
            "the node did not start its models:\n{}",
            node.stderr()
        ));
    }
    println!("   mesh-llm: startup complete\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = Client::new(node.api);
    let call = |what: &str| println!("-- {what}");

    runtime.block_on(async {
        call("runtime load of phi-4 (its backend crashes on a quantized V cache)");
        match client
            .load(&request(&phi, 16384), Duration::from_secs(60))
            .await
        {
            Ok(_) => println!("   unexpectedly loaded"),
            Err(error) => println!("   failed: {error}"),
        }
        call("runtime load of Llama-3.2-1B");
        let status = client
            .load(&request(&llama, 4096), Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        println!("   loaded on port {} (pid {})", status.port, status.pid);
        call("a chat completion for Llama-3.2-1B through the node's inference API");
        let answer = chat(node.http, &status.name, false).await?;
        println!("   answered: {answer:?}");
        call("the same, streamed: the node measures the time to its first token");
        let answer = chat(node.http, &status.name, true).await?;
        println!("   answered: {answer:?}");
        call("unload of gemma-3-4b-it");
        client
            .unload("gemma-3-4b-it-Q8_0", Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        call(&format!(
            "SIGKILL to the Llama-3.2-1B backend (pid {}) after 1.5 s up",
            status.pid
        ));
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(status.pid as i32, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = client.status().await.map_err(|e| e.to_string())?;
            if !status.unexpected_exits.is_empty() {
                println!(
                    "\n== node status\n{}",
                    mesh_llm::cli::render_status(&status)
                );
                break;
            }
            if Instant::now() > deadline {
                return Err("the node did not notice the crash".to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<(), String>(())
    })?;

    // An export after the crash shows the gauges of what is still loaded.
    let seen = receiver.wait_until(Duration::from_secs(20), |requests| {
        requests
            .iter()
            .rev()
            .find(|r| r.answered == 200)
            .is_some_and(|r| {
                r.points()
                    .iter()
                    .any(|p| p.metric == schema::EXIT_UNEXPECTED_TOTAL)
            })
    });
    if !seen {
        return Err("no export arrived after the crash".into());
    }
    let running = receiver.latest_points();
    println!("== gauges in the last export while the node runs");
    print!(
        "{}",
        render_table(&only(
            &running,
            &[
                schema::LOADED_MODELS,
                schema::MODEL_LOADED,
                schema::MODEL_CONTEXT_LENGTH
            ]
        ))
    );

    println!("\n== `mesh-llm survey show`: what the node says its last export held");
    let shown = node.cli(&["survey", "show"]);
    if !shown.status.success() {
        return Err(format!(
            "survey show failed: {}",
            String::from_utf8_lossy(&shown.stderr)
        ));
    }
    print!("{}", String::from_utf8_lossy(&shown.stdout));

    println!("\n== SIGTERM to the node: it unloads what is left, then makes a final export");
    let (status, took, _) = node.terminate();
    println!("   node exited: {status} after {:.1} s", took.as_secs_f64());
    let last = receiver.latest_points();
    println!("\n== counters and histograms in the final export");
    print!(
        "{}",
        render_table(&only(
            &last,
            &[
                schema::LAUNCH_TOTAL,
                schema::LAUNCH_SUCCESS_TOTAL,
                schema::LAUNCH_FAILURE_TOTAL,
                schema::UNLOAD_TOTAL,
                schema::EXIT_UNEXPECTED_TOTAL,
                schema::LAUNCH_DURATION_MS,
                schema::UPTIME_S,
            ],
        ))
    );
    println!("\n== inference metrics in the final export (opt-in: prompt_shape_metrics = true)");
    print!(
        "{}",
        render_table(&only(
            &last,
            &[
                schema::INFERENCE_REQUESTS_TOTAL,
                schema::INFERENCE_PROMPT_TOKENS,
                schema::INFERENCE_OUTPUT_TOKENS,
                schema::INFERENCE_PREFILL_TOKENS_PER_S,
                schema::INFERENCE_DECODE_TOKENS_PER_S,
                schema::INFERENCE_TIME_TO_FIRST_TOKEN_MS,
            ],
        ))
    );
    let requests = receiver.requests();
    let paths: std::collections::BTreeSet<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    println!(
        "\n{} export requests received, all to: {}",
        requests.len(),
        paths.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// One chat completion through the node's OpenAI-compatible API, whole
/// or streamed; the answer's text.
async fn chat(http: std::net::SocketAddr, model: &str, stream: bool) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 9,
        "stream": stream,
    });
    let response = client
        .post(format!("http://{http}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("the inference API answered {status}: {text}"));
    }
    if stream {
        // SSE: the text is the chunks' `delta.content`, up to `[DONE]`.
        let mut answer = String::new();
        for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
            if data == "[DONE]" {
                return Ok(answer);
            }
            let chunk: serde_json::Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
            if let Some(content) = chunk["choices"][0]["delta"]["content"].as_str() {
                answer.push_str(content);
            }
        }
        return Err(format!("the stream ended without [DONE]: {text}"));
    }
    let answer: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    answer["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no message in {text}"))
}

fn request(model: &Path, ctx: u32) -> LoadRequest {
    LoadRequest {
        model: model.to_string_lossy().into_owned(),
        ctx_size: Some(ctx),
        mmproj: None,
        gpu_id: None,
    }
}

fn only(points: &[Point], metrics: &[&str]) -> Vec<Point> {
    points
        .iter()
        .filter(|p| metrics.contains(&p.metric.as_str()))
        .cloned()
        .collect()
}
