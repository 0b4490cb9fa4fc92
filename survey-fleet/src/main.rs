//! `survey-fleet`: runs a simulated fleet through a real collector and
//! prints the report. See the crate documentation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use survey_collector::{Report, ReportOptions, ServeConfig, Server, Store, render};
use survey_fleet::fleet::{self, Fleet};
use survey_fleet::node;

/// A simulated fleet of survey nodes, exporting through a real collector.
#[derive(Debug, Parser)]
#[command(name = "survey-fleet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One node of the fleet (started by the fleet itself).
    #[command(hide = true)]
    Node {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        launches: usize,
    },
    /// One node idle for days (started by the heartbeat test).
    #[command(hide = true)]
    Idle {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        heartbeat_secs: u64,
        #[arg(long)]
        days: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Html,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Node processes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    nodes: u64,
    /// Launches per node.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    launches: u64,
    /// Seed of the ground truth draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Node processes running at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    parallel: u64,
    /// Keep the collector's database here (default: a temporary one, deleted).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write every launch as it really happened (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Node {
            endpoint,
            seed,
            index,
            launches,
        }) => runtime.block_on(async {
            let record = node::run(&endpoint, seed, index, launches).await?;
            println!(
                "{}",
                serde_json::to_string(&record).map_err(|e| e.to_string())?
            );
            Ok(())
        }),
        Some(Command::Idle {
            endpoint,
            heartbeat_secs,
            days,
        }) => runtime.block_on(async {
            let sent = survey_fleet::idle::run(&endpoint, heartbeat_secs, days).await?;
            println!(
                "{}",
                serde_json::to_string(&sent).map_err(|e| e.to_string())?
            );
            Ok(())
        }),
        None => runtime.block_on(run(cli.run)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("survey-fleet-{}", std::process::id()));
    let db = match &args.db {
        Some(db) => db.clone(),
        None => {
            std::fs::create_dir_all(&scratch)
                .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
            scratch.join("survey.db")
        }
    };
    let server = Server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        db: db.clone(),
        tokens: Default::default(),
        tls: None,
        retention: Duration::from_secs(48 * 3600),
        limits: Default::default(),
    })
    .await
    .map_err(|e| e.to_string())?;
    let endpoint = server.endpoint();
    let program = std::env::current_exe().map_err(|e| e.to_string())?;
    let fleet = Fleet {
        nodes: args.nodes as usize,
        launches: args.launches as usize,
        seed: args.seed,
        parallel: args.parallel as usize,
    };
    let launches = tokio::task::spawn_blocking(move || fleet::run(&program, &endpoint, fleet))
        .await
        .map_err(|e| e.to_string())?;
    let totals = server.totals();
    server.shutdown().await;
    let launches = launches?;
    if let Some(path) = &args.truth {
        let text = serde_json::to_string(&launches).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let store = Store::open_read_only(&db).map_err(|e| e.to_string())?;
    let report = Report::build(&store, ReportOptions::default()).map_err(|e| e.to_string())?;
    match args.format {
        Format::Table => print!("{}", render::table::render(&report)),
        Format::Json => println!("{}", render::json::render(&report)),
        Format::Html => print!("{}", render::html::render(&report)),
    }
    drop(store);
    eprintln!(
        "fleet: {} nodes x {} launches (seed {}): {} launches, {} export requests, {} points stored{}",
        args.nodes,
        args.launches,
        args.seed,
        launches.len(),
        totals.requests,
        totals.accepted,
        if args.db.is_some() {
            format!("; database {}", db.display())
        } else {
            String::new()
        }
    );
    if args.db.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}
