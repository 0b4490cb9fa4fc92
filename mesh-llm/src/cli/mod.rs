//! The `mesh-llm` command line: `serve` runs a node; `load`, `unload`,
//! `status` and `survey show` talk to a running node's control API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::{self, Client};
use crate::inference::proxy;
use crate::node::LoadRequest;

mod memory;
mod render;
mod serve;

pub use render::{render_export, render_status};

/// A mesh-llm node, reduced to what the survey plugin observes.
#[derive(Debug, Parser)]
#[command(name = "mesh-llm", version, about)]
pub struct Cli {
    /// Address of the node's control API (loopback only).
    #[arg(long, global = true, env = "MESH_LLM_API", default_value = api::DEFAULT_ADDR)]
    pub api: SocketAddr,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: launch the configured models and serve the control API.
    Serve(ServeArgs),
    /// Load a model on the running node.
    Load {
        /// Path of the GGUF file.
        model: PathBuf,
        /// Context size passed to the backend.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        ctx_size: Option<u32>,
        /// Multimodal projector file.
        #[arg(long)]
        mmproj: Option<PathBuf>,
        /// GPU index for the backend.
        #[arg(long)]
        gpu_id: Option<u32>,
        /// Seconds to wait for the launch.
        #[arg(long, default_value_t = 660.0, value_parser = positive_secs)]
        timeout_secs: f64,
    },
    /// Unload a model from the running node, by name or path.
    Unload {
        /// Model name (file stem) or path.
        model: String,
    },
    /// Show the running node's models, unexpected exits and survey status.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The survey plugin.
    #[command(subcommand)]
    Survey(SurveyCommand),
}

/// `mesh-llm survey ...`.
#[derive(Debug, Subcommand)]
pub enum SurveyCommand {
    /// Show exactly what the last export held (with `[telemetry] mode =
    /// "local"`: what would be sent; nothing is).
    Show {
        /// Print it as JSON: `prompt_shape_metrics` (whether the opt-in
        /// inference metrics are on), `collected_at_unix_secs`, `outcome`
        /// (`sent`, `failed`, `sending`, `unchanged` or `local`),
        /// `unchanged` (for an export left out because nothing changed:
        /// `since_unix_secs`, `heartbeat_in_secs`), `resource`, and
        /// `rows`, each with metric, kind, unit, attributes, and value, or
        /// count, sum, bounds and bucket_counts.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `mesh-llm serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file [default: $MESH_LLM_CONFIG, else ~/.mesh-llm/config.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The llama-server binary [default: llama-server on PATH].
    #[arg(long, env = "MESH_LLM_LLAMA_SERVER")]
    pub llama_server: Option<PathBuf>,
    /// Directory for backend logs [default: ~/.mesh-llm/logs].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Largest model file the node accepts, in MiB [default: physical memory].
    #[arg(long, env = "MESH_LLM_MEMORY_BUDGET_MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_budget_mb: Option<u64>,
    /// Seconds a backend may take to become healthy.
    #[arg(long, default_value_t = 600.0, value_parser = positive_secs)]
    pub health_timeout_secs: f64,
    /// Seconds a backend gets to exit after SIGTERM before SIGKILL.
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    pub unload_grace_secs: f64,
    /// Address of the OpenAI-compatible inference API
    /// (`/v1/chat/completions`, `/v1/completions`, `/v1/models`).
    #[arg(long, env = "MESH_LLM_HTTP", default_value = proxy::DEFAULT_ADDR)]
    pub http: SocketAddr,
    /// Seconds a backend may stay silent while answering an inference
    /// request (before its answer begins, and between two chunks of it).
    #[arg(long, default_value_t = 600.0, value_parser = positive_secs)]
    pub inference_timeout_secs: f64,
    /// Seconds the whole shutdown may take, survey's final export included.
    #[arg(long, env = "MESH_LLM_SHUTDOWN_TIMEOUT_SECS", default_value_t = 15.0, value_parser = positive_secs)]
    pub shutdown_timeout_secs: f64,
}

/// A `--*-secs` flag, checked by the rule every survey `*_secs` setting
/// follows (clap names the flag).
fn positive_secs(text: &str) -> Result<f64, String> {
    let secs = text.trim().parse::<f64>().unwrap_or(f64::NAN);
    survey::config::positive_secs("", secs)
        .map(|_| secs)
        .map_err(|e| e.problem)
}

/// Runs the command line with the process arguments.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// Runs the command line with `args` (the first is the program name).
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    match Cli::try_parse_from(args) {
        Ok(cli) => run(cli),
        Err(error) => {
            let _ = error.print();
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mesh-llm: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(args, cli.api).await,
            Command::Load {
                model,
                ctx_size,
                mmproj,
                gpu_id,
                timeout_secs,
            } => {
                let request = LoadRequest {
                    model: absolute(model).to_string_lossy().into_owned(),
                    ctx_size,
                    mmproj: mmproj.map(absolute),
                    gpu_id,
                };
                let status = Client::new(cli.api)
                    .load(&request, Duration::from_secs_f64(timeout_secs))
                    .await
                    .map_err(|e| (ExitCode::FAILURE, e.to_string()))?;
                println!(
                    "loaded {} on port {} (pid {}, context {})",
                    status.name, status.port, status.pid, status.ctx_size
                );
                Ok(())
            }
            Command::Unload { model } => {
                Client::new(cli.api)
                    .unload(&model, Duration::from_secs(120))
                    .await
                    .map_err(|e| (ExitCode::FAILURE, e.to_string()))?;
                println!("unloaded {model}");
                Ok(())
            }
            Command::Status { json } => {
                let status = Client::new(cli.api)
                    .status()
                    .await
                    .map_err(|e| (ExitCode::FAILURE, e.to_string()))?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&status).unwrap_or_default()
                    );
                } else {
                    print!("{}", render_status(&status));
                }
                Ok(())
            }
            Command::Survey(SurveyCommand::Show { json }) => {
                let export = Client::new(cli.api)
                    .survey_export()
                    .await
                    .map_err(|e| (ExitCode::FAILURE, e.to_string()))?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&export).unwrap_or_default()
                    );
                } else {
                    print!("{}", render_export(&export));
                }
                Ok(())
            }
        }
    });
    // The shutdown has kept its own bound: a blocking task still running
    // (a model header read on a hung file system, survey's final export
    // past the bound) does not hold the process.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("mesh-llm: {message}");
            code
        }
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}
