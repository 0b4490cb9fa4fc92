//! The `survey-collector` command line: `serve` and `report`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::Tokens;
use crate::ingest::Limits;
use crate::render;
use crate::report::{Day, Report, ReportOptions};
use crate::server::{ServeConfig, Server, TlsFiles};
use crate::store::Store;

/// Environment variable with comma-separated bearer tokens.
pub const TOKENS_ENV: &str = "SURVEY_COLLECTOR_TOKENS";

/// Receives survey's OTLP/HTTP metric exports, stores them, and answers the
/// key questions.
#[derive(Debug, Parser)]
#[command(name = "survey-collector", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive exports on POST /v1/metrics and store them.
    Serve(ServeArgs),
    /// Answer the key questions from the database.
    Report(ReportArgs),
}

/// Options of `survey-collector serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub listen: SocketAddr,
    /// SQLite database file (created if absent).
    #[arg(long, default_value = "survey.db")]
    pub db: PathBuf,
    /// Accept exports carrying `Authorization: Bearer TOKEN` (repeatable;
    /// prefer $SURVEY_COLLECTOR_TOKENS or --token-file, which `ps` does not show).
    #[arg(long = "token", value_name = "TOKEN")]
    pub tokens: Vec<String>,
    /// File with one accepted token per line (# comments allowed).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Certificate chain (PEM) for HTTPS; needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for HTTPS; needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Hours raw points are kept (the daily rollups the report reads stay).
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub retention_hours: u64,
}

/// Output format of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables, one per question.
    Table,
    /// One JSON object with a key per question.
    Json,
    /// One CSV file per question (`--out DIR`, or `--question NAME`).
    Csv,
    /// One self-contained HTML page with a chart per question.
    Html,
}

/// Options of `survey-collector report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// SQLite database file written by `serve`.
    #[arg(long, default_value = "survey.db")]
    pub db: PathBuf,
    /// First day, inclusive (YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_day)]
    pub since: Option<Day>,
    /// Last day, exclusive (YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_day)]
    pub until: Option<Day>,
    /// Leave out rows backed by fewer launches (every question but
    /// `fastest`).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_launches: u64,
    /// Leave out `fastest` rows backed by fewer inference requests (of any
    /// outcome).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_requests: u64,
    /// Suppress rows backed by fewer distinct node processes (counted in a
    /// footnote); use at least 5 for anything published.
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub min_nodes: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only this question: a key of [`QUESTIONS`](crate::report::QUESTIONS)
    /// (its help lists them).
    #[arg(long, value_name = "NAME", value_parser = parse_question, help = question_help())]
    pub question: Option<&'static str>,
    /// Write to this file (for csv without --question: this directory)
    /// instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// The help of `--question`: every question's key.
fn question_help() -> String {
    let keys: Vec<&str> = crate::report::QUESTIONS.iter().map(|q| q.key).collect();
    format!("Only this question ({})", keys.join(", "))
}

fn parse_question(name: &str) -> Result<&'static str, String> {
    crate::report::QUESTIONS
        .iter()
        .find(|q| q.key == name)
        .map(|q| q.key)
        .ok_or_else(|| {
            let keys: Vec<&str> = crate::report::QUESTIONS.iter().map(|q| q.key).collect();
            format!(
                "unknown question {name:?}; expected one of {}",
                keys.join(", ")
            )
        })
}

fn parse_day(text: &str) -> Result<Day, String> {
    Day::parse(text)
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Report(args) => report(args),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SURVEY_COLLECTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Usage errors exit with 2, like clap's own.
fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// The accepted tokens from `--token`, `--token-file` and the environment.
pub fn tokens(
    flags: &[String],
    file: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<Tokens, crate::auth::TokenError> {
    let mut tokens = Tokens::default();
    for token in flags {
        tokens.add(token, "--token")?;
    }
    if let Some(file) = file {
        tokens.add_file(file)?;
    }
    if let Some(list) = env {
        tokens.add_list(list, TOKENS_ENV)?;
    }
    Ok(tokens)
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging();
    let env = std::env::var(TOKENS_ENV).ok();
    let tokens = match tokens(&args.tokens, args.token_file.as_deref(), env.as_deref()) {
        Ok(tokens) => tokens,
        Err(error) => return usage_error(error),
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            "listening on {} without TLS: exports and tokens cross the network in clear text",
            args.listen
        );
    }
    let config = ServeConfig {
        listen: args.listen,
        db: args.db,
        tokens,
        tls,
        retention: Duration::from_secs(args.retention_hours * 3600),
        limits: Limits::default(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match Server::start(config).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_stop().await;
        tracing::info!("stopping: finishing requests in flight and committing");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn report(args: ReportArgs) -> ExitCode {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        return usage_error(format!(
            "--since {} must be before --until {} (until is exclusive)",
            since.to_date(),
            until.to_date()
        ));
    }
    let store = match Store::open_read_only(&args.db) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.format == Format::Csv && args.question.is_none() && args.out.is_none() {
        return usage_error(
            "--format csv writes one file per question: give --out DIR, \
             or --question NAME for one question on standard output",
        );
    }
    let options = ReportOptions {
        since: args.since,
        until: args.until,
        min_launches: args.min_launches,
        min_requests: args.min_requests,
        min_nodes: args.min_nodes,
    };
    let mut report = match Report::build(&store, options) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(key) = args.question {
        report = report.only(key);
    }
    let written = match (args.format, &args.out) {
        (Format::Csv, Some(dir)) if args.question.is_none() => write_csv_files(&report, dir),
        (format, out) => {
            let text = match format {
                Format::Table => render::table::render(&report),
                Format::Json => format!("{}\n", render::json::render(&report)),
                Format::Html => render::html::render(&report),
                Format::Csv => report
                    .answers
                    .first()
                    .map(render::csv::render)
                    .unwrap_or_default(),
            };
            match out {
                Some(path) => std::fs::write(path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
    };
    if let Err(error) = written {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    // Forms without room for a footnote say here what was suppressed, and
    // why a question may have no row.
    if matches!(args.format, Format::Json | Format::Csv) {
        if report.suppressed() > 0 {
            eprintln!(
                "note: {} rows backed by fewer than {} node processes are not shown",
                report.suppressed(),
                args.min_nodes
            );
        }
        for answer in report.answers.iter().filter(|a| a.rows.is_empty()) {
            if answer.no_source_data {
                eprintln!("note: {}: {}", answer.question.key, answer.empty_text());
            }
        }
    }
    ExitCode::SUCCESS
}

/// `DIR/<question>.csv` for every question.
fn write_csv_files(report: &Report, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for answer in &report.answers {
        let path = dir.join(format!("{}.csv", answer.question.key));
        std::fs::write(&path, render::csv::render(answer))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_flags_and_the_environment() {
        let accepted = tokens(&["first-token".into()], None, Some("second, third,")).unwrap();
        assert_eq!(accepted.len(), 3);
        for token in ["first-token", "second", "third"] {
            let header = format!("Bearer {token}");
            assert!(accepted.allows(Some(header.as_bytes())), "{token}");
        }
        assert!(!accepted.allows(Some(b"Bearer fourth")));
        assert!(tokens(&[], None, None).unwrap().is_empty());
        let error = tokens(&["ok".into()], None, Some("bad token")).unwrap_err();
        assert_eq!(error.source_name, TOKENS_ENV);
    }
}
