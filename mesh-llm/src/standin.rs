//! A stand-in for llama.cpp's `llama-server`, for tests and demos.
//!
//! It takes the flags mesh-llm passes (`-m`, `-c`, `--host`, `--port`,
//! `--mmproj`, `--main-gpu`), rejects any other, reads the model's GGUF
//! header like the real server, and serves `GET /health` the same way: 503
//! while loading, 200 when ready. Once ready it answers the OpenAI-style
//! endpoints as `llama-server` shapes them (`GET /v1/models`,
//! `POST /v1/chat/completions`, `POST /v1/completions`, streamed as SSE
//! with `"stream": true`), with deterministic text: `max_tokens` (default
//! 16) words of a fixed sentence, whatever the prompt.
//!
//! Its behaviour comes from the model file (GGUF keys `standin.mode`,
//! `standin.load_ms` and `standin.token_ms`, the pause before each streamed
//! word), else from `MESH_LLM_STANDIN_MODE` / `MESH_LLM_STANDIN_LOAD_MS` /
//! `MESH_LLM_STANDIN_TOKEN_MS`:
//!
//! | mode | behaviour |
//! |---|---|
//! | `healthy` (default) | healthy after the load delay; exits 0 on SIGTERM |
//! | `never-healthy` | answers 503 forever |
//! | `exit-before-healthy[:CODE]` | exits with CODE (default 1) while loading |
//! | `kv-crash` | prints a llama.cpp KV-cache crash signature and aborts while loading |
//! | `crash-after:MS` | becomes healthy, then aborts MS milliseconds later |
//! | `ignore-sigterm` | healthy, but ignores SIGTERM (needs SIGKILL) |
//! | `models-fail` | healthy, but `GET /v1/models` answers 500 |
//!
//! It exits on its own when its parent goes away.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::gguf;
use crate::http;

/// GGUF key holding the mode.
pub const MODE_KEY: &str = "standin.mode";
/// GGUF key holding the load delay in milliseconds.
pub const LOAD_MS_KEY: &str = "standin.load_ms";
/// GGUF key holding the pause before each streamed word, in milliseconds.
pub const TOKEN_MS_KEY: &str = "standin.token_ms";

/// The text every completion is made of, word by word (`max_tokens` words,
/// from the first, starting over after the last).
pub const WORDS: &[&str] = &[
    "The",
    "stand-in",
    "answers",
    "every",
    "prompt",
    "with",
    "this",
    "same",
    "sentence.",
];

/// What the stand-in does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Healthy after the load delay.
    Healthy,
    /// Never healthy.
    NeverHealthy,
    /// Exits with this code while loading.
    ExitBeforeHealthy(i32),
    /// Prints a KV-cache crash signature and aborts while loading.
    KvCrash,
    /// Healthy, then aborts after this delay.
    CrashAfter(Duration),
    /// Healthy, ignores SIGTERM.
    IgnoreSigterm,
    /// Healthy, but `GET /v1/models` fails.
    ModelsFail,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Mode, String> {
        let (name, arg) = match text.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (text, None),
        };
        let number = |what: &str| -> Result<u64, String> {
            arg.ok_or(format!("mode {name} needs :{what}"))?
                .parse()
                .map_err(|_| format!("mode {name}: {what} must be a whole number"))
        };
        Ok(match name {
            "healthy" => Mode::Healthy,
            "never-healthy" => Mode::NeverHealthy,
            "exit-before-healthy" => Mode::ExitBeforeHealthy(match arg {
                Some(_) => {
                    i32::try_from(number("CODE")?).map_err(|_| "CODE too large".to_string())?
                }
                None => 1,
            }),
            "kv-crash" => Mode::KvCrash,
            "crash-after" => Mode::CrashAfter(Duration::from_millis(number("MS")?)),
            "ignore-sigterm" => Mode::IgnoreSigterm,
            "models-fail" => Mode::ModelsFail,
            _ => {
                return Err(format!(
                    "unknown mode {text:?}; expected healthy, never-healthy, exit-before-healthy[:CODE], kv-crash, crash-after:MS, ignore-sigterm, models-fail"
                ));
            }
        })
    }
}

#[derive(Debug)]
struct Args {
    model: PathBuf,
    ctx_size: u32,
    host: String,
    port: u16,
    mmproj: Option<PathBuf>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut model = None;
    let mut ctx_size = 4096;
    let mut host = "127.0.0.1".to_string();
    let mut port = 8080;
    let mut mmproj = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("error: {flag} needs a value"));
        match flag.as_str() {
            "-m" | "--model" => model = Some(PathBuf::from(value()?)),
            "-c" | "--ctx-size" => {
                ctx_size = value()?
                    .parse()
                    .map_err(|_| "error: --ctx-size expects a number".to_string())?;
            }
            "--host" => host = value()?,
            "--port" => {
                port = value()?
                    .parse()
                    .map_err(|_| "error: --port expects a port number".to_string())?;
            }
            "--mmproj" => mmproj = Some(PathBuf::from(value()?)),
            "-mg" | "--main-gpu" => {
                value()?
                    .parse::<u32>()
                    .map_err(|_| "error: --main-gpu expects an index".to_string())?;
            }
            other => return Err(format!("error: invalid argument: {other}")),
        }
    }
    Ok(Args {
        model: model.ok_or("error: -m/--model is required")?,
        ctx_size,
        host,
        port,
        mmproj,
    })
}

/// Runs the stand-in with the process arguments.
pub fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "main: loading model '{}' with n_ctx = {}",
        args.model.display(),
        args.ctx_size
    );
    let meta = match gguf::read(&args.model) {
        Ok(meta) => meta,
        Err(error) => {
            eprintln!("llama_model_load: error loading model: {error}");
            eprintln!("main: error: unable to load model");
            return ExitCode::FAILURE;
        }
    };
    if let Some(mmproj) = &args.mmproj
        && !mmproj.is_file()
    {
        eprintln!("clip_model_load: failed to open {}", mmproj.display());
        return ExitCode::FAILURE;
    }
    let mode = match meta
        .string(MODE_KEY)
        .map(str::to_string)
        .or_else(|| std::env::var("MESH_LLM_STANDIN_MODE").ok())
        .unwrap_or_else(|| "healthy".into())
        .parse::<Mode>()
    {
        Ok(mode) => mode,
        Err(error) => {
            eprintln!("standin: {error}");
            return ExitCode::FAILURE;
        }
    };
    let load = Duration::from_millis(
        meta.int(LOAD_MS_KEY)
            .and_then(|n| u64::try_from(n).ok())
            .or_else(|| std::env::var("MESH_LLM_STANDIN_LOAD_MS").ok()?.parse().ok())
            .unwrap_or(300),
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("standin: {error}");
            return ExitCode::FAILURE;
        }
    };
    let token = Duration::from_millis(
        meta.int(TOKEN_MS_KEY)
            .and_then(|n| u64::try_from(n).ok())
            .or_else(|| {
                std::env::var("MESH_LLM_STANDIN_TOKEN_MS")
                    .ok()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0),
    );
    runtime.block_on(run(args, mode, load, token))
}

async fn run(args: Args, mode: Mode, load: Duration, token: Duration) -> ExitCode {
    if mode == Mode::IgnoreSigterm {
        // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    let addr: SocketAddr = match format!("{}:{}", args.host, args.port).parse() {
        Ok(addr) => addr,
        Err(_) => {
            eprintln!("error: invalid --host/--port");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "main: couldn't bind HTTP server socket, hostname: {}, port: {}: {error}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    eprintln!("main: server is listening on http://{addr} - starting the main loop");
    let ready = Arc::new(AtomicBool::new(false));
    let never = mode == Mode::NeverHealthy;
    let health = {
        let ready = ready.clone();
        move || async move {
            if ready.load(Ordering::SeqCst) && !never {
                (StatusCode::OK, r#"{"status":"ok"}"#)
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#,
                )
            }
        }
    };
    let api = Api(Arc::new(ApiState {
        ready: ready.clone(),
        mode: mode.clone(),
        model: args.model.to_string_lossy().into_owned(),
        ctx_size: args.ctx_size,
        token,
        next_id: AtomicU64::new(1),
        fingerprint: format!("b0-standin-{}", args.port),
    }));
    let app = Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .with_state(api)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                r#"{"error":{"code":404,"message":"File Not Found"}}"#,
            )
        });
    // Serves until the process exits.
    let (_serving, serving) = tokio::sync::watch::channel(false);
    let limits = http::Limits {
        max_body: http::MAX_INFERENCE_BODY,
        drain: Duration::ZERO,
    };
    tokio::spawn(http::serve(listener, app, limits, serving));
    tokio::spawn(exit_when_orphaned());

    match mode {
        Mode::ExitBeforeHealthy(code) => {
            tokio::time::sleep(load / 2).await;
            eprintln!("llama_model_load: error loading model: unexpected end of file");
            eprintln!("main: exiting due to model loading error");
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Mode::KvCrash => {
            tokio::time::sleep(load / 2).await;
            eprintln!("llama_init_from_model: V cache quantization requires flash_attn");
            eprintln!("/src/ggml/src/ggml-cuda/fattn.cu:331: fatal error");
            std::process::abort();
        }
        _ => {}
    }
    tokio::time::sleep(load).await;
    ready.store(true, Ordering::SeqCst);
    eprintln!("main: model loaded");

    let crash = async {
        match mode {
            Mode::CrashAfter(after) => {
                tokio::time::sleep(after).await;
                eprintln!("GGML_ASSERT failed: segfault in the backend");
                std::process::abort();
            }
            _ => std::future::pending::<()>().await,
        }
    };
    let terminate = async {
        if mode == Mode::IgnoreSigterm {
            return std::future::pending::<()>().await;
        }
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = crash => {}
        _ = terminate => {
            eprintln!("srv    operator(): operator(): cleaning up before exit...");
        }
    }
    ExitCode::SUCCESS
}

/// What the OpenAI-style endpoints need.
#[derive(Clone)]
struct Api(Arc<ApiState>);

struct ApiState {
    ready: Arc<AtomicBool>,
    mode: Mode,
    model: String,
    ctx_size: u32,
    token: Duration,
    next_id: AtomicU64,
    /// `system_fingerprint`: names the stand-in and its port, so a test
    /// sees which backend answered.
    fingerprint: String,
}

/// The two completion endpoints' shapes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Chat,
    Text,
}

impl Api {
    /// llama-server's answer while the model loads.
    fn loading(&self) -> Option<Response> {
        (!self.0.ready.load(Ordering::SeqCst) || self.0.mode == Mode::NeverHealthy).then(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Loading model",
                "unavailable_error",
            )
        })
    }
}

fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "type": kind}});
    http::json(status, &body)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn models(State(api): State<Api>) -> Response {
    if let Some(loading) = api.loading() {
        return loading;
    }
    if api.0.mode == Mode::ModelsFail {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "model list unavailable",
            "server_error",
        );
    }
    let body = json!({
        "object": "list",
        "data": [{
            "id": api.0.model,
            "object": "model",
            "created": now_secs(),
            "owned_by": "llamacpp",
            "meta": {"n_ctx": api.0.ctx_size},
        }],
    });
    http::json(StatusCode::OK, &body)
}

async fn chat_completions(State(api): State<Api>, body: Bytes) -> Response {
    complete(api, Flavour::Chat, body).await
}

async fn completions(State(api): State<Api>, body: Bytes) -> Response {
    complete(api, Flavour::Text, body).await
}

/// Answers a completion with `max_tokens` words of [`WORDS`], whole or
/// streamed as SSE.
async fn complete(api: Api, flavour: Flavour, body: Bytes) -> Response {
    if let Some(loading) = api.loading() {
        return loading;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body is not a JSON object",
                "invalid_request_error",
            );
        }
    };
    let limit = request
        .get("max_tokens")
        .or_else(|| request.get("n_predict"))
        .and_then(Value::as_u64);
    let count = limit.unwrap_or(16).clamp(1, 4096) as usize;
    let finish = if limit.is_some() { "length" } else { "stop" };
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-3.5-turbo")
        .to_string();
    // A rough token count, as a size: nothing of the prompt is kept.
    let prompt_tokens = body.len() / 4;
    let n = api.0.next_id.fetch_add(1, Ordering::Relaxed);
    let (id, object, chunk_object) = match flavour {
        Flavour::Chat => (
            format!("chatcmpl-standin-{n}"),
            "chat.completion",
            "chat.completion.chunk",
        ),
        Flavour::Text => (
            format!("cmpl-standin-{n}"),
            "text_completion",
            "text_completion",
        ),
    };
    let created = now_secs();
    let word = |i: usize| {
        let word = WORDS[i % WORDS.len()];
        if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        }
    };
    if !stream {
        tokio::time::sleep(api.0.token * count as u32).await;
        let text: String = (0..count).map(word).collect();
        let choice = match flavour {
            Flavour::Chat => json!({
                "finish_reason": finish, "index": 0,
                "message": {"role": "assistant", "content": text},
            }),
            Flavour::Text => json!({
                "text": text, "index": 0, "logprobs": null, "finish_reason": finish,
            }),
        };
        let body = json!({
            "choices": [choice],
            "created": created,
            "model": model,
            "system_fingerprint": api.0.fingerprint,
            "object": object,
            "usage": {
                "completion_tokens": count,
                "prompt_tokens": prompt_tokens,
                "total_tokens": count + prompt_tokens,
            },
            "id": id,
        });
        return http::json(StatusCode::OK, &body);
    }
    let token = api.0.token;
    let fingerprint = api.0.fingerprint.clone();
    let chunk = move |choice: Value| {
        let body = json!({
            "choices": [choice],
            "created": created,
            "id": id,
            "model": model,
            "system_fingerprint": fingerprint,
            "object": chunk_object,
        });
        Bytes::from(format!("data: {body}\n\n"))
    };
    // Words, then the finishing chunk, then `[DONE]`.
    let events = futures::stream::unfold(0usize, move |i| {
        let chunk = chunk.clone();
        async move {
            let event = if i < count {
                tokio::time::sleep(token).await;
                let choice = match flavour {
                    Flavour::Chat if i == 0 => json!({
                        "finish_reason": null, "index": 0,
                        "delta": {"role": "assistant", "content": word(i)},
                    }),
                    Flavour::Chat => json!({
                        "finish_reason": null, "index": 0, "delta": {"content": word(i)},
                    }),
                    Flavour::Text => json!({
                        "text": word(i), "index": 0, "logprobs": null, "finish_reason": null,
                    }),
                };
                chunk(choice)
            } else if i == count {
                let choice = match flavour {
                    Flavour::Chat => json!({"finish_reason": finish, "index": 0, "delta": {}}),
                    Flavour::Text => json!({
                        "text": "", "index": 0, "logprobs": null, "finish_reason": finish,
                    }),
                };
                chunk(choice)
            } else if i == count + 1 {
                Bytes::from_static(b"data: [DONE]\n\n")
            } else {
                return None;
            };
            Some((Ok::<_, std::convert::Infallible>(event), i + 1))
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(events),
    )
        .into_response()
}

/// Exits when the parent process goes away, so a stand-in never outlives the
/// node (or test) that started it.
async fn exit_when_orphaned() {
    // SAFETY: getppid(2) has no preconditions.
    let parent = unsafe { libc::getppid() };
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("healthy".parse::<Mode>(), Ok(Mode::Healthy));
        assert_eq!(
            "exit-before-healthy".parse::<Mode>(),
            Ok(Mode::ExitBeforeHealthy(1))
        );
        assert_eq!(
            "exit-before-healthy:3".parse::<Mode>(),
            Ok(Mode::ExitBeforeHealthy(3))
        );
        assert_eq!(
            "crash-after:1500".parse::<Mode>(),
            Ok(Mode::CrashAfter(Duration::from_millis(1500)))
        );
        assert!("crash-after".parse::<Mode>().is_err());
        assert!(
            "sometimes"
                .parse::<Mode>()
                .unwrap_err()
                .contains("expected healthy")
        );
    }

    #[test]
    fn only_llama_server_flags_are_accepted() {
        let args = |list: &[&str]| parse_args(list.iter().map(|s| s.to_string()));
        let parsed = args(&[
            "-m",
            "/m.gguf",
            "-c",
            "8192",
            "--host",
            "127.0.0.1",
            "--port",
            "9",
            "--mmproj",
            "/p.gguf",
            "--main-gpu",
            "1",
        ])
        .unwrap();
        assert_eq!((parsed.ctx_size, parsed.port), (8192, 9));
        assert!(
            args(&["-m", "/m.gguf", "--bogus"])
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(args(&["-c", "1"]).unwrap_err().contains("--model"));
        assert!(args(&["-m", "/m.gguf", "--port", "x"]).is_err());
    }
}
