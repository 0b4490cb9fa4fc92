//! The `mesh-llm` command line: `serve` runs a node; `load`, `unload`,
//! `status` and `survey show` talk to a running node's control API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::api::{self, Client};
use crate::config::{ConfigSource, NodeConfig};
use crate::inference::launch::{BackendSettings, PortPicker};
use crate::inference::proxy::{self, Proxy};
use crate::plugin::Plugins;
use crate::runtime::local::Signaller;
use crate::runtime::{LoadRequest, Node, NodeSettings};

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
            Command::Serve(args) => serve(args, cli.api).await,
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

/// Survey's last export as a table: when and what became of it (sent,
/// failed, or unchanged and not sent, with the time of the export the
/// collector holds and when the heartbeat is due), whether
/// the opt-in inference metrics are on, the resource, then one line per
/// data point: its model (when it has one), its value and its other
/// attributes exactly as sent.
pub fn render_export(shown: &crate::api::SurveyExport) -> String {
    const MODEL: &str = "mesh_llm.model";
    let export = &shown.export;
    let age = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs())
        .saturating_sub(export.collected_at_unix_secs);
    // A left-out export says so: since when, and when the heartbeat is due.
    let outcome = match &export.unchanged {
        Some(unchanged) => unchanged.to_string(),
        None => export.outcome.to_string(),
    };
    let mut out = format!(
        "last export: collected {age} s ago, {outcome}, {} data points\n\
         inference metrics (telemetry.prompt_shape_metrics): {}\nresource: {}\n",
        export.rows.len(),
        if shown.prompt_shape_metrics {
            "on"
        } else {
            "off"
        },
        pairs(&export.resource)
    );
    let line = |metric: &str, kind: &str, unit: &str, value: &str, model: &str, rest: &str| {
        format!("{metric:<37} {kind:<9} {unit:<10} {value:>7}  {model:<24} {rest}\n")
    };
    out.push_str(&line(
        "metric",
        "kind",
        "unit",
        "value",
        MODEL,
        "other attributes",
    ));
    for row in &export.rows {
        let value = match (&row.value, row.count) {
            (Some(value), _) => value.to_string(),
            (None, Some(count)) => format!("n={count}"),
            (None, None) => "-".to_string(),
        };
        let model = row
            .attributes
            .get(MODEL)
            .map_or("-".to_string(), |m| m.to_string());
        let mut rest = row.attributes.clone();
        rest.remove(MODEL);
        out.push_str(&line(
            &row.metric,
            row.kind.as_str(),
            &row.unit,
            &value,
            &model,
            &pairs(&rest),
        ));
        if let (Some(sum), Some(bounds), Some(counts)) = (row.sum, &row.bounds, &row.bucket_counts)
        {
            let buckets: Vec<String> = counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| match bounds.get(i) {
                    Some(bound) => format!("<={bound}: {n}"),
                    None => format!(">{}: {n}", bounds.last().copied().unwrap_or(0.0)),
                })
                .collect();
            out.push_str(&format!(
                "{:38}sum {sum}, buckets {}\n",
                "",
                buckets.join(", ")
            ));
        }
    }
    out
}

/// `k=v, k2=v2`.
fn pairs(attributes: &std::collections::BTreeMap<String, survey::sent::AttributeValue>) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status as a table.
pub fn render_status(status: &crate::runtime::NodeStatus) -> String {
    let mut out = String::new();
    if status.models.is_empty() {
        out.push_str("no models loaded\n");
    } else {
        out.push_str(&format!(
            "{:<32} {:>6} {:>8} {:>8} {:>10}  {:<12} {}\n",
            "model", "port", "pid", "context", "uptime_s", "launch", "state"
        ));
        for m in &status.models {
            out.push_str(&format!(
                "{:<32} {:>6} {:>8} {:>8} {:>10}  {:<12} {}\n",
                m.name, m.port, m.pid, m.ctx_size, m.uptime_secs, m.launch_kind, m.state
            ));
        }
    }
    for exit in &status.unexpected_exits {
        out.push_str(&format!(
            "unexpected exit: {} after {} s ({})\n",
            exit.name, exit.uptime_secs, exit.status
        ));
    }
    out.push_str(&status.survey);
    out.push('\n');
    out
}

/// Physical memory in bytes, from `/proc/meminfo`.
fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The largest model file the node accepts: `--memory-budget-mb`, else the
/// machine's memory where it can be read (Linux), else no limit, said in
/// the log.
fn memory_budget(configured_mb: Option<u64>) -> u64 {
    if let Some(mb) = configured_mb {
        return mb.saturating_mul(1024 * 1024);
    }
    physical_memory().unwrap_or_else(|| {
        tracing::warn!(
            "cannot read this machine's memory size (only Linux is read); model files of any \
             size will be launched: set --memory-budget-mb to check them"
        );
        u64::MAX
    })
}

async fn serve(args: ServeArgs, api_addr: SocketAddr) -> Result<(), (ExitCode, String)> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let source = ConfigSource::locate(
        args.config,
        std::env::var("MESH_LLM_CONFIG").ok(),
        home.clone(),
    );
    let config = NodeConfig::load(&source).map_err(|e| (ExitCode::from(2), e.to_string()))?;
    if !api_addr.ip().is_loopback() {
        return Err((
            ExitCode::from(2),
            format!("--api {api_addr}: the control API only listens on a loopback address"),
        ));
    }
    let log_dir = args.log_dir.unwrap_or_else(|| match &home {
        Some(home) => home.join(".mesh-llm").join("logs"),
        None => std::env::temp_dir().join("mesh-llm-logs"),
    });
    std::fs::create_dir_all(&log_dir).map_err(|e| {
        (
            ExitCode::FAILURE,
            format!("cannot create log directory {}: {e}", log_dir.display()),
        )
    })?;
    let unload_grace = Duration::from_secs_f64(args.unload_grace_secs);
    let shutdown_timeout = Duration::from_secs_f64(args.shutdown_timeout_secs);
    let proxy = Proxy::new(Duration::from_secs_f64(args.inference_timeout_secs));
    let settings = NodeSettings {
        backend: BackendSettings {
            binary: args
                .llama_server
                .unwrap_or_else(|| PathBuf::from("llama-server")),
            log_dir,
            health_timeout: Duration::from_secs_f64(args.health_timeout_secs),
            memory_budget: memory_budget(args.memory_budget_mb),
            ports: PortPicker::os(),
            proxy: proxy.clone(),
        },
        unload_grace,
        signaller: Signaller::os(),
    };

    // The survey plugin: a telemetry problem disables it, never the node.
    let plugins = Plugins::from_entries(&config.plugin);
    let survey = plugins.start_survey(&config.telemetry);
    // The opt-in inference metrics: the proxy reads answers only when on.
    proxy.measure_inference(survey.status().prompt_shape_metrics);

    let listener = TcpListener::bind(api_addr).await.map_err(|e| {
        (
            ExitCode::FAILURE,
            format!("cannot listen on {api_addr}: {e}"),
        )
    })?;
    let bound = listener.local_addr().unwrap_or(api_addr);
    let http_listener = TcpListener::bind(args.http).await.map_err(|e| {
        (
            ExitCode::FAILURE,
            format!("--http {}: cannot listen: {e}", args.http),
        )
    })?;
    let http_bound = http_listener.local_addr().unwrap_or(args.http);
    let node = Node::new(settings, || survey::status().to_string());
    // Both servers stop taking connections at the shutdown signal; what is
    // in flight then is bounded by the shutdown budget.
    let budget = ShutdownBudget::split(shutdown_timeout, unload_grace);
    let (stop_servers, servers_stopped) = tokio::sync::watch::channel(false);
    let api_task = tokio::spawn(api::serve(
        listener,
        node.clone(),
        budget.node_part,
        servers_stopped.clone(),
    ));
    let http_task = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            proxy
                .serve(
                    http_listener,
                    budget.wait + Duration::from_secs(1),
                    servers_stopped,
                )
                .await
        })
    };
    println!("mesh-llm: control API listening on {bound}");
    println!("mesh-llm: inference API listening on {http_bound}");
    tracing::info!(config = ?source.path(), "{}", survey::status());

    let startup = {
        let node = node.clone();
        let models = config.models.clone();
        tokio::spawn(async move {
            node.start_configured(&models).await;
            println!("mesh-llm: startup complete");
        })
    };

    wait_for_shutdown_signal().await;
    tracing::info!("shutting down: unloading every model");
    let deadline = tokio::time::Instant::now() + budget.total;
    let (wait, stop_grace) = (budget.wait, budget.stop_grace);
    let (node_part, export_reserve) = (budget.node_part, budget.export_reserve);
    let _ = stop_servers.send(true);
    let stopping = async {
        node.shutdown(wait, stop_grace).await;
        let _ = startup.await;
        let _ = api_task.await;
        let _ = http_task.await;
    };
    if tokio::time::timeout_at(deadline - export_reserve, stopping)
        .await
        .is_err()
    {
        tracing::warn!(
            "the node's part of the shutdown did not finish within {node_part:?} (backends \
             stopping, or connections still open); what is left ends with the process"
        );
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let export = tokio::task::spawn_blocking(move || survey.shutdown());
    match tokio::time::timeout(left, export).await {
        Ok(report) => tracing::info!(report = ?report.ok(), "survey stopped"),
        Err(_) => tracing::warn!("survey's final export did not finish within the shutdown bound"),
    }
    println!("mesh-llm: stopped");
    Ok(())
}

/// How the shutdown bound is shared: the node's part first (loads under
/// way and inference requests in flight get `wait`, up to the unload grace;
/// then every backend is stopped at once with `stop_grace`, and a fifth of
/// the node's part is left for SIGKILL and reaping), then survey's final
/// export with what is left, at least `export_reserve`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ShutdownBudget {
    total: Duration,
    export_reserve: Duration,
    node_part: Duration,
    wait: Duration,
    stop_grace: Duration,
}

impl ShutdownBudget {
    fn split(total: Duration, unload_grace: Duration) -> ShutdownBudget {
        let export_reserve = (total / 3).min(Duration::from_secs(5));
        let node_part = total - export_reserve;
        let wait = unload_grace.min(node_part * 3 / 5);
        let stop_grace = unload_grace.min(node_part - wait - node_part / 5);
        ShutdownBudget {
            total,
            export_reserve,
            node_part,
            wait,
            stop_grace,
        }
    }
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_bound_is_shared_and_never_exceeded() {
        let secs = Duration::from_secs;
        // The defaults: 15 s, grace 10 s.
        let budget = ShutdownBudget::split(secs(15), secs(10));
        assert_eq!(
            (budget.export_reserve, budget.wait, budget.stop_grace),
            (secs(5), secs(6), secs(2))
        );
        // A short grace is given whole.
        let budget = ShutdownBudget::split(secs(15), secs(1));
        assert_eq!((budget.wait, budget.stop_grace), (secs(1), secs(1)));
        for total in [1, 2, 6, 8, 15, 60, 600] {
            for grace in [1, 5, 10, 30, 120] {
                let b = ShutdownBudget::split(secs(total), secs(grace));
                assert!(b.wait + b.stop_grace + b.node_part / 5 <= b.node_part);
                assert_eq!(b.node_part + b.export_reserve, b.total);
                assert!(b.wait <= secs(grace) && b.stop_grace <= secs(grace));
            }
        }
    }

    #[test]
    fn survey_show_says_an_unchanged_export_was_not_sent_and_when_the_heartbeat_is() {
        let shown: crate::api::SurveyExport = serde_json::from_str(
            r#"{"prompt_shape_metrics":false,"collected_at_unix_secs":0,
                "outcome":"unchanged",
                "unchanged":{"since_unix_secs":1764857042,"heartbeat_in_secs":2525},
                "resource":{},"rows":[]}"#,
        )
        .expect("an export");
        let text = render_export(&shown);
        assert!(
            text.contains(
                ", unchanged since 14:04:02 UTC, not sent; heartbeat in 42 min, 0 data points"
            ),
            "{text}"
        );
        let sent: crate::api::SurveyExport = serde_json::from_str(
            r#"{"prompt_shape_metrics":false,"collected_at_unix_secs":0,
                "outcome":"sent","resource":{},"rows":[]}"#,
        )
        .expect("an export");
        assert!(render_export(&sent).contains(", sent, 0 data points"));
    }
}
