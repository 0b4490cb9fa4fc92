//! A test-only stand-in for llama.cpp's `llama-server`: its command line
//! and its HTTP protocol, as mesh-llm uses them, with fault modes. The
//! tests, benches and the demo of the workspace run it in place of a real
//! `llama-server`; no product links it.
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
//! `standin.load_ms` and `standin.token_ms`, the pause before each
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
//! | `completions-fail:STATUS` | healthy, but every completion is answered STATUS (an error body) |
//! | `break-after:N` | healthy, but every completion breaks off after N words (the connection drops mid-answer) |
//! | `echo` | healthy, and the answer's words are the prompt's (chat: the messages' text, in order), for privacy tests |
//!
//! A backend that goes silent is a model with a long `standin.token_ms`.
//!
//! **Measurements**, as llama-server reports them: every answer carries
//! `usage` and `timings` where llama-server puts them: in a whole answer;
//! streamed, on the last chunk before `data: [DONE]` (the chunk with
//! `finish_reason`, or, when the request asked for
//! `stream_options.include_usage`, the chunk after it with empty `choices`,
//! the only one carrying `usage` in a streamed chat; a streamed completion
//! carries `usage` on its final chunk always). The numbers follow from
//! the prompt's size and `token_ms` alone, so that tests can predict them
//! ([`Timings::new`]):
//!
//! - `prompt_tokens` = `prompt_n` = the request body's bytes / 4 (at
//!   least 1); `cache_n` = 0 (the stand-in caches nothing);
//! - `completion_tokens` = `predicted_n` = the words answered;
//! - `predicted_ms` = (`predicted_n` - 1) x `token_ms`: llama-server
//!   starts its generation clock when the first token is sampled (the
//!   prompt's pass produced it), so its `predicted_ms` spans the steps
//!   after the first; `prompt_ms` = `prompt_n` x `token_ms` /
//!   [`PREFILL_SPEEDUP`]: decoding at 1,000 / `token_ms` tokens/s and
//!   prompt processing at 20,000 / `token_ms`, whatever the prompt's size.
//!   With `token_ms` = 0 the timings are computed with [`ZERO_TOKEN_MS`]
//!   (4,000 and 80,000 tokens/s): a phase of tokens never reports 0 ms,
//!   which gives no speed. The `*_per_second` fields are llama-server's
//!   own (`predicted_n` over `predicted_ms`, the first token included).
//!
//! The stand-in also takes that time: it waits `prompt_ms` (computed with
//! the real `token_ms`, so 0 at 0) before its first word, then `token_ms`
//! before each word, whole answers included.
//!
//! **Connections**, as llama-server (cpp-httplib) handles them: answers say
//! `Keep-Alive: timeout=5, max=100` and no `Connection: close`; after a
//! streamed answer (chunked SSE, through `data: [DONE]` and the last chunk)
//! the stand-in closes the connection anyway, while after a whole answer it
//! stays open. Error answers (status 400 and above) say `Connection:
//! close` and close. The close after a stream comes when the client's next
//! bytes arrive, or 200 ms after the last chunk: a client that pools the
//! connection and writes its next request to it loses that request every
//! time, where against llama-server it loses only the races with the close
//! (4 in 20 in a test with a real one).
//!
//! It exits on its own when its parent goes away.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use mesh_llm::gguf;

/// Largest request body it takes (prompts, images), as the node's
/// inference API.
const MAX_BODY: usize = 32 << 20;

/// How long a connection may take to send a request's headers, and stay
/// idle between requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Healthy, but every completion is answered with this error status.
    CompletionsFail(StatusCode),
    /// Healthy, but every completion breaks off after this many words.
    BreakAfter(usize),
    /// Healthy, answering with the prompt's words.
    Echo,
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
            "completions-fail" => Mode::CompletionsFail(
                u16::try_from(number("STATUS")?)
                    .ok()
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .filter(|status| status.as_u16() >= 400)
                    .ok_or_else(|| format!("mode {name}: STATUS must be an error status"))?,
            ),
            "break-after" => Mode::BreakAfter(
                usize::try_from(number("N")?).map_err(|_| "N too large".to_string())?,
            ),
            "echo" => Mode::Echo,
            _ => {
                return Err(format!(
                    "unknown mode {text:?}; expected healthy, never-healthy, exit-before-healthy[:CODE], kv-crash, crash-after:MS, ignore-sigterm, models-fail, completions-fail:STATUS, break-after:N, echo"
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
    let mode = meta
        .string(MODE_KEY)
        .map(str::to_string)
        .or_else(|| std::env::var("MESH_LLM_STANDIN_MODE").ok())
        .unwrap_or_else(|| "healthy".into())
        .parse::<Mode>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string());
    let (mode, runtime) = match (mode, runtime) {
        (Ok(mode), Ok(runtime)) => (mode, runtime),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("standin: {error}");
            return ExitCode::FAILURE;
        }
    };
    let load = millis(&meta, LOAD_MS_KEY, "MESH_LLM_STANDIN_LOAD_MS").unwrap_or(300);
    let token = millis(&meta, TOKEN_MS_KEY, "MESH_LLM_STANDIN_TOKEN_MS").unwrap_or(0);
    let (load, token) = (Duration::from_millis(load), Duration::from_millis(token));
    runtime.block_on(run(args, mode, load, token))
}

/// Milliseconds from the model's GGUF key `key`, else from `$var`.
fn millis(meta: &gguf::Metadata, key: &str, var: &str) -> Option<u64> {
    meta.int(key)
        .and_then(|n| u64::try_from(n).ok())
        .or_else(|| std::env::var(var).ok()?.parse().ok())
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
    let app = app.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    // Closable: a streamed answer closes its connection, as llama-server's do.
    tokio::spawn(serve_closable(listener, app));
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

/// An error answer as llama-server gives it: its JSON body, and
/// `Connection: close`.
fn error(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "type": kind}});
    let mut response = json(status, &body);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A JSON answer with `status`.
fn json(status: StatusCode, value: &impl Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
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
    json(StatusCode::OK, &body)
}

/// How much faster than generation the stand-in processes a prompt, per
/// token.
pub const PREFILL_SPEEDUP: f64 = 20.0;

/// The time a token takes in the stand-in's `timings` when `token_ms` is 0,
/// in milliseconds.
pub const ZERO_TOKEN_MS: f64 = 0.25;

/// The prompt tokens the stand-in counts for a request body of `bytes`
/// bytes: a quarter of its size, at least 1 (nothing of the prompt is kept).
pub fn prompt_tokens(bytes: usize) -> u64 {
    (bytes as u64 / 4).max(1)
}

/// llama-server's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Tokens of the prompt, cached ones included.
    pub prompt_tokens: u64,
    /// The two together.
    pub total_tokens: u64,
}

impl Usage {
    fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            completion_tokens,
            prompt_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// llama-server's `timings`, in its key order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timings {
    /// Prompt tokens found in the cache (always 0 here).
    pub cache_n: u64,
    /// Prompt tokens evaluated.
    pub prompt_n: u64,
    /// Time evaluating them.
    pub prompt_ms: f64,
    /// `prompt_ms / prompt_n`.
    pub prompt_per_token_ms: f64,
    /// `prompt_n` per second.
    pub prompt_per_second: f64,
    /// Tokens generated.
    pub predicted_n: u64,
    /// Time generating them.
    pub predicted_ms: f64,
    /// `predicted_ms / predicted_n`.
    pub predicted_per_token_ms: f64,
    /// `predicted_n` per second.
    pub predicted_per_second: f64,
}

impl Timings {
    /// The timings the stand-in reports for `predicted_n` tokens generated
    /// after a prompt of `prompt_n` tokens, with `token_ms` (see the
    /// module's doc).
    pub fn new(prompt_n: u64, predicted_n: u64, token_ms: u64) -> Timings {
        let per_token = if token_ms == 0 {
            ZERO_TOKEN_MS
        } else {
            token_ms as f64
        };
        let prompt_ms = prompt_n as f64 * per_token / PREFILL_SPEEDUP;
        let predicted_ms = predicted_n.saturating_sub(1) as f64 * per_token;
        let per = |ms: f64, n: u64| if n == 0 { 0.0 } else { ms / n as f64 };
        let speed = |ms: f64, n: u64| if ms > 0.0 { 1e3 / ms * n as f64 } else { 0.0 };
        Timings {
            cache_n: 0,
            prompt_n,
            prompt_ms,
            prompt_per_token_ms: per(prompt_ms, prompt_n),
            prompt_per_second: speed(prompt_ms, prompt_n),
            predicted_n,
            predicted_ms,
            predicted_per_token_ms: per(predicted_ms, predicted_n),
            predicted_per_second: speed(predicted_ms, predicted_n),
        }
    }
}

/// A whole answer, in llama-server's key order.
#[derive(Serialize)]
struct Whole<'a> {
    choices: [Value; 1],
    created: u64,
    model: &'a str,
    system_fingerprint: &'a str,
    object: &'static str,
    usage: Usage,
    id: &'a str,
    timings: Timings,
}

/// One streamed chunk, in llama-server's key order.
#[derive(Serialize)]
struct Chunk<'a> {
    choices: Vec<Value>,
    created: u64,
    id: &'a str,
    model: &'a str,
    system_fingerprint: &'a str,
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<Timings>,
}

/// What every chunk of one streamed answer repeats.
struct Stream {
    flavour: Flavour,
    created: u64,
    id: String,
    model: String,
    fingerprint: String,
}

impl Stream {
    /// `data: {chunk}\n\n`.
    fn event(&self, choices: Vec<Value>, usage: Option<Usage>, timings: Option<Timings>) -> Bytes {
        let chunk = Chunk {
            choices,
            created: self.created,
            id: &self.id,
            model: &self.model,
            system_fingerprint: &self.fingerprint,
            object: match self.flavour {
                Flavour::Chat => "chat.completion.chunk",
                Flavour::Text => "text_completion",
            },
            usage,
            timings,
        };
        let json = serde_json::to_string(&chunk).unwrap_or_default();
        Bytes::from(format!("data: {json}\n\n"))
    }
}

/// The words of the prompt (echo mode): a completion's `prompt`, or the
/// text of a chat's messages, in order.
fn prompt_words(flavour: Flavour, request: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    let mut text_of = |value: &Value| match value {
        Value::String(text) => texts.push(text.clone()),
        Value::Array(parts) => texts.extend(
            parts
                .iter()
                .filter_map(|p| p.as_str().or_else(|| p.get("text")?.as_str()))
                .map(str::to_string),
        ),
        _ => {}
    };
    match flavour {
        Flavour::Chat => {
            for message in request
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(content) = message.get("content") {
                    text_of(content);
                }
            }
        }
        Flavour::Text => {
            if let Some(prompt) = request.get("prompt") {
                text_of(prompt);
            }
        }
    }
    texts
        .iter()
        .flat_map(|t| t.split_whitespace())
        .map(str::to_string)
        .collect()
}

async fn chat_completions(
    State(api): State<Api>,
    Extension(close): Extension<CloseAfterAnswer>,
    body: Bytes,
) -> Response {
    complete(api, Flavour::Chat, body, close).await
}

async fn completions(
    State(api): State<Api>,
    Extension(close): Extension<CloseAfterAnswer>,
    body: Bytes,
) -> Response {
    complete(api, Flavour::Text, body, close).await
}

/// `Keep-Alive: timeout=5, max=100`, as cpp-httplib answers.
fn keep_alive(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::HeaderName::from_static("keep-alive"),
        HeaderValue::from_static("timeout=5, max=100"),
    );
    response
}

/// Answers a completion with `max_tokens` words of [`WORDS`] (or of the
/// prompt, in echo mode), whole or streamed as SSE, with llama-server's
/// `usage` and `timings`.
async fn complete(api: Api, flavour: Flavour, body: Bytes, close: CloseAfterAnswer) -> Response {
    if let Some(loading) = api.loading() {
        return loading;
    }
    if let Mode::CompletionsFail(status) = api.0.mode {
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        return error(status, "the stand-in fails every completion", kind);
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
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-3.5-turbo")
        .to_string();
    let words: Arc<Vec<String>> = Arc::new(match api.0.mode {
        Mode::Echo => prompt_words(flavour, &request),
        _ => Vec::new(),
    });
    let breaks_after = match api.0.mode {
        Mode::BreakAfter(n) => Some(n.min(count)),
        _ => None,
    };
    drop(request);
    // A rough token count, as a size: nothing of the prompt is kept.
    let prompt_n = prompt_tokens(body.len());
    drop(body);
    let token = api.0.token;
    let usage = Usage::new(prompt_n, count as u64);
    let timings = Timings::new(prompt_n, count as u64, token.as_millis() as u64);
    let prefill = token.mul_f64(prompt_n as f64 / PREFILL_SPEEDUP);
    let n = api.0.next_id.fetch_add(1, Ordering::Relaxed);
    let id = match flavour {
        Flavour::Chat => format!("chatcmpl-standin-{n}"),
        Flavour::Text => format!("cmpl-standin-{n}"),
    };
    let created = now_secs();
    let word = move |i: usize| {
        let word = if words.is_empty() {
            WORDS[i % WORDS.len()]
        } else {
            words[i % words.len()].as_str()
        };
        if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        }
    };
    if !stream {
        let took = prefill + token * count as u32;
        // Not even a timer tick at `token_ms` = 0, as streamed answers.
        if !took.is_zero() {
            tokio::time::sleep(took).await;
        }
        let text: String = (0..count).map(&word).collect();
        let choice = match flavour {
            Flavour::Chat => json!({
                "finish_reason": finish, "index": 0,
                "message": {"role": "assistant", "content": text},
            }),
            Flavour::Text => json!({
                "text": text, "index": 0, "logprobs": null, "finish_reason": finish,
            }),
        };
        let whole = Whole {
            choices: [choice],
            created,
            model: &model,
            system_fingerprint: &api.0.fingerprint,
            object: match flavour {
                Flavour::Chat => "chat.completion",
                Flavour::Text => "text_completion",
            },
            usage,
            id: &id,
            timings,
        };
        let body = serde_json::to_vec(&whole).unwrap_or_default();
        if let Some(after) = breaks_after {
            // The whole answer's first bytes, then (once they are out) the
            // connection drops.
            let cut = body.len() * after / count.max(1);
            let partial = Bytes::from(body[..cut].to_vec());
            let broken = futures::stream::iter([Some(partial), None]).then(|part| async move {
                match part {
                    Some(partial) => Ok(partial),
                    None => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Err(std::io::Error::other("the stand-in breaks off"))
                    }
                }
            });
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(broken),
            )
                .into_response();
        }
        return keep_alive(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
        );
    }
    let stream = Stream {
        flavour,
        created,
        id,
        model,
        fingerprint: api.0.fingerprint.clone(),
    };
    // The words (the first after the prompt's time, a chat's first with
    // the role chunk before it), the finishing chunk, the usage chunk
    // when asked for, then `[DONE]`; then the connection closes.
    enum Step {
        Word(usize),
        Finish,
        UsageChunk,
        Done,
        Closed,
    }
    let events = futures::stream::unfold(Step::Word(0), move |step| {
        let event = |bytes: Bytes| Some(Ok::<_, std::io::Error>(bytes));
        let (pause, item, next) = match step {
            // Once what came before is out, the connection drops.
            Step::Word(i) if breaks_after == Some(i) => (
                Duration::from_millis(20),
                Some(Err(std::io::Error::other("the stand-in breaks off"))),
                Step::Closed,
            ),
            Step::Word(i) => {
                let pause = if i == 0 { prefill + token } else { token };
                let mut bytes = Vec::new();
                if i == 0 && flavour == Flavour::Chat {
                    bytes.extend_from_slice(&stream.event(
                        vec![json!({
                            "finish_reason": null, "index": 0,
                            "delta": {"role": "assistant", "content": null},
                        })],
                        None,
                        None,
                    ));
                }
                let choice = match flavour {
                    Flavour::Chat => json!({
                        "finish_reason": null, "index": 0, "delta": {"content": word(i)},
                    }),
                    Flavour::Text => json!({
                        "text": word(i), "index": 0, "logprobs": null, "finish_reason": null,
                    }),
                };
                bytes.extend_from_slice(&stream.event(vec![choice], None, None));
                let next = if i + 1 < count || breaks_after == Some(i + 1) {
                    Step::Word(i + 1)
                } else {
                    Step::Finish
                };
                (pause, event(Bytes::from(bytes)), next)
            }
            Step::Finish => {
                let (bytes, next) = match flavour {
                    Flavour::Chat if include_usage => {
                        let choice = json!({"finish_reason": finish, "index": 0, "delta": {}});
                        (stream.event(vec![choice], None, None), Step::UsageChunk)
                    }
                    Flavour::Chat => {
                        let choice = json!({"finish_reason": finish, "index": 0, "delta": {}});
                        (stream.event(vec![choice], None, Some(timings)), Step::Done)
                    }
                    Flavour::Text => {
                        let choice = json!({
                            "text": "", "index": 0, "logprobs": null, "finish_reason": finish,
                        });
                        (
                            stream.event(vec![choice], Some(usage), Some(timings)),
                            Step::Done,
                        )
                    }
                };
                (Duration::ZERO, event(bytes), next)
            }
            Step::UsageChunk => (
                Duration::ZERO,
                event(stream.event(Vec::new(), Some(usage), Some(timings))),
                Step::Done,
            ),
            Step::Done => (
                Duration::ZERO,
                event(Bytes::from_static(b"data: [DONE]\n\n")),
                Step::Closed,
            ),
            Step::Closed => {
                // After the last chunk: llama-server closes the connection
                // (the headers, long sent, said nothing of it).
                close.close();
                (Duration::ZERO, None, Step::Closed)
            }
        };
        async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            item.map(|item| (item, next))
        }
    });
    keep_alive(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(events),
        )
            .into_response(),
    )
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

/// Lets a handler close the connection its request came on once the
/// answer is written, without saying so in the answer's headers, as
/// llama-server does after a streamed answer. Found in the request's
/// extensions of the stand-in's requests.
///
/// The close comes when the client's next bytes arrive, or [`LINGER`]
/// after the answer's end, whichever is first: a client that writes its
/// next request to the connection loses it every time, as it does when it
/// loses the race against llama-server's close (which, on a real machine,
/// it does only sometimes).
#[derive(Debug, Clone)]
pub struct CloseAfterAnswer(Arc<Closing>);

/// How long a connection closed by [`CloseAfterAnswer`] waits for a
/// client's next bytes before it closes anyway.
pub const LINGER: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
struct Closing {
    now: tokio::sync::Notify,
    /// Set by [`CloseAfterAnswer::close`]: the connection's shutdown
    /// lingers.
    linger: std::sync::atomic::AtomicBool,
}

impl CloseAfterAnswer {
    /// Closes the connection once the answer in progress is written (at
    /// once if it is written already). Call it once the answer's headers
    /// are out (from its body), or they say `Connection: close`.
    pub fn close(&self) {
        self.0
            .linger
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.now.notify_one();
    }
}

/// A connection whose shutdown lingers once [`CloseAfterAnswer::close`]
/// asked for it (see there).
struct Lingering {
    stream: tokio::net::TcpStream,
    closing: Arc<Closing>,
    linger: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for Lingering {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Lingering {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        if self
            .closing
            .linger
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            let linger = self
                .linger
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
            let lingered = linger.as_mut().poll(cx).is_ready();
            if !lingered && self.stream.poll_read_ready(cx).is_pending() {
                return std::task::Poll::Pending;
            }
        }
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `app` until the process exits, with a [`CloseAfterAnswer`] in
/// every request's extensions.
async fn serve_closable(listener: TcpListener, app: Router) {
    let options = survey_serve::Options {
        header_timeout: HEADER_TIMEOUT,
        max_connections: None,
        drain: Duration::ZERO,
    };
    let shutdown = std::future::pending();
    survey_serve::serve_with(listener, options, shutdown, move |stream, stop| {
        let closing = Arc::new(Closing::default());
        let app = app
            .clone()
            .layer(Extension(CloseAfterAnswer(closing.clone())));
        let stream = Lingering {
            stream,
            closing: closing.clone(),
            linger: None,
        };
        survey_serve::connection(
            stream,
            hyper_util::service::TowerToHyperService::new(app),
            options.header_timeout,
            stop,
            async move { closing.now.notified().await },
        )
    })
    .await
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
        assert_eq!(
            "completions-fail:503".parse::<Mode>(),
            Ok(Mode::CompletionsFail(StatusCode::SERVICE_UNAVAILABLE))
        );
        assert!("completions-fail:200".parse::<Mode>().is_err());
        assert_eq!("break-after:3".parse::<Mode>(), Ok(Mode::BreakAfter(3)));
        assert_eq!("echo".parse::<Mode>(), Ok(Mode::Echo));
        assert!(
            "sometimes"
                .parse::<Mode>()
                .unwrap_err()
                .contains("expected healthy")
        );
    }

    #[test]
    fn timings_follow_from_the_prompt_and_token_ms_and_never_take_0_ms() {
        // 17 tokens: the clock runs over the 16 steps after the first,
        // 100 tokens/s; llama-server's own figure counts the first too.
        let t = Timings::new(40, 17, 10);
        assert_eq!((t.prompt_ms, t.predicted_ms), (20.0, 160.0));
        assert_eq!(
            (t.prompt_per_second, t.predicted_per_second),
            (2000.0, 106.25)
        );
        assert_eq!((t.cache_n, t.prompt_n, t.predicted_n), (0, 40, 17));
        // At 0 ms a token: 4,000 tokens/s decoding, 80,000 prefill.
        let t = Timings::new(40, 17, 0);
        assert_eq!((t.prompt_ms, t.predicted_ms), (0.5, 4.0));
        assert_eq!(t.prompt_per_second, 80_000.0);
        // One token: no generation step timed.
        assert_eq!(Timings::new(40, 1, 10).predicted_ms, 0.0);
        assert_eq!(prompt_tokens(3), 1);
        assert_eq!(prompt_tokens(400), 100);
    }

    #[test]
    fn echo_answers_with_the_prompt_words() {
        let chat = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ]});
        assert_eq!(
            prompt_words(Flavour::Chat, &chat),
            ["be", "brief", "hello", "there"]
        );
        let text = json!({"prompt": "once upon"});
        assert_eq!(prompt_words(Flavour::Text, &text), ["once", "upon"]);
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
