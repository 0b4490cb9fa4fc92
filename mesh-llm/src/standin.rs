//! A stand-in for llama.cpp's `llama-server`, for tests and demos.
//!
//! It takes the flags mesh-llm passes (`-m`, `-c`, `--host`, `--port`,
//! `--mmproj`, `--main-gpu`), rejects any other, reads the model's GGUF
//! header like the real server, and serves `GET /health` the same way: 503
//! while loading, 200 when ready.
//!
//! Its behaviour comes from the model file (GGUF key `standin.mode`, and
//! `standin.load_ms`), else from `MESH_LLM_STANDIN_MODE` /
//! `MESH_LLM_STANDIN_LOAD_MS`:
//!
//! | mode | behaviour |
//! |---|---|
//! | `healthy` (default) | healthy after the load delay; exits 0 on SIGTERM |
//! | `never-healthy` | answers 503 forever |
//! | `exit-before-healthy[:CODE]` | exits with CODE (default 1) while loading |
//! | `kv-crash` | prints a llama.cpp KV-cache crash signature and aborts while loading |
//! | `crash-after:MS` | becomes healthy, then aborts MS milliseconds later |
//! | `ignore-sigterm` | healthy, but ignores SIGTERM (needs SIGKILL) |
//!
//! It exits on its own when its parent goes away.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::gguf;
use crate::http;

/// GGUF key holding the mode.
pub const MODE_KEY: &str = "standin.mode";
/// GGUF key holding the load delay in milliseconds.
pub const LOAD_MS_KEY: &str = "standin.load_ms";

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
            _ => {
                return Err(format!(
                    "unknown mode {text:?}; expected healthy, never-healthy, exit-before-healthy[:CODE], kv-crash, crash-after:MS, ignore-sigterm"
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
    runtime.block_on(run(args, mode, load))
}

async fn run(args: Args, mode: Mode, load: Duration) -> ExitCode {
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
    let app = Router::new()
        .route("/health", get(health))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                r#"{"error":{"code":404,"message":"File Not Found"}}"#,
            )
        });
    // Serves until the process exits.
    let (_serving, serving) = tokio::sync::watch::channel(false);
    tokio::spawn(http::serve(listener, app, serving));
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
