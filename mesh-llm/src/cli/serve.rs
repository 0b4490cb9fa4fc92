//! `mesh-llm serve`: the node, its control API and inference API, and the
//! shutdown that shares one time bound between the node and survey.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;

use super::ServeArgs;
use super::memory::memory_budget;
use crate::api;
use crate::backend::launch::{BackendSettings, PortPicker};
use crate::backend::local::Signaller;
use crate::config::{ConfigSource, NodeConfig};
use crate::inference::proxy::Proxy;
use crate::node::{Node, NodeSettings};
use crate::plugin::Plugins;

/// Runs a node until SIGINT or SIGTERM, then shuts it down within the bound.
pub(super) async fn serve(args: ServeArgs, api_addr: SocketAddr) -> Result<(), (ExitCode, String)> {
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
}
