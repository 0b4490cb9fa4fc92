//! `survey-collector`: the receiving side of survey for one machine.
//!
//! Survey nodes export their model lifecycle metrics over OTLP/HTTP. This
//! crate receives them (`POST /v1/metrics`, protobuf or JSON, gzip or not,
//! optional TLS and bearer tokens), keeps exactly the data points an honest
//! survey node sends, stores them in embedded SQLite, and answers the key
//! questions of the survey spec, and one more on inference speed from the
//! opt-in inference metrics ([`report::QUESTIONS`]).
//!
//! The public API is what a program embedding the collector needs:
//! [`Server`] (configured by [`ServeConfig`], with [`Tokens`], [`TlsFiles`]
//! and [`Limits`]), [`Store`], [`Report`] (built with [`ReportOptions`]
//! over [`Day`]s, its questions in [`report`]) and the forms in [`render`].
//! The pipeline behind the endpoint is private:
//!
//! | module | stage |
//! |---|---|
//! | `auth` | bearer tokens ([`Tokens`]) |
//! | [`otlp`] | the OTLP metrics messages, protobuf and OTLP/JSON |
//! | `decode` | body → `ExportMetricsServiceRequest`, within size limits |
//! | `validate` | the schema's metrics, allowlisted attributes ([`MetricKeys`]), sanitized values |
//! | `store` | SQLite: streams, raw points on change, daily rollups ([`Store`]) |
//! | `writer` | the one writer thread, group commit, bounded queue |
//! | `ingest` | the HTTP endpoint: statuses, partial success ([`Limits`]) |
//! | `server` | listener, TLS, stop ([`Server`]) |
//! | [`report`] | the counting rule and the questions |
//! | [`render`] | the report as tables, JSON, CSV or an HTML page with charts |
//! | `sql_functions` | SQL functions the queries need, registered on every connection |
//! | `cli` | `serve` and `report` ([`run`]) |
//!
//! The SQL is in `sql/sqlite/`: `migrations/` holds the schema, one file
//! per version (the store upgrades itself), and `queries/` the counting
//! rule and one query per question.
//!
//! # Example
//!
//! Serve on a free port, then answer the questions from the same database:
//!
//! ```no_run
//! use survey_collector::{Report, ReportOptions, ServeConfig, Server, Store};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::start(ServeConfig {
//!     listen: "127.0.0.1:0".parse()?,
//!     db: "survey.db".into(),
//!     tokens: Default::default(),
//!     tls: None,
//!     retention: std::time::Duration::from_secs(48 * 3600),
//!     limits: Default::default(),
//! })
//! .await?;
//! // Point nodes at it: [telemetry] endpoint = "http://ADDR"
//! println!("endpoint: {}", server.endpoint());
//! // ... nodes export ...
//! server.shutdown().await;
//!
//! let store = Store::open_read_only("survey.db".as_ref())?;
//! let report = Report::build(&store, ReportOptions::default())?;
//! println!("{}", survey_collector::render::table::render(&report));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod auth;
mod cli;
mod decode;
mod ingest;
mod keyed_hash;
pub mod otlp;
pub mod render;
pub mod report;
mod server;
mod sql_functions;
mod store;
mod validate;
mod writer;

pub use auth::{TokenError, Tokens};
pub use ingest::{Limits, Totals};
pub use report::{Day, Report, ReportOptions};
pub use server::{ServeConfig, ServeError, Server, TlsFiles};
pub use store::{Store, StoreError};
pub use validate::MetricKeys;

/// Runs the `survey-collector` command line (`serve` and `report`, see
/// `survey-collector --help`) on the process's arguments: the binary's
/// `main`.
pub fn run() -> std::process::ExitCode {
    cli::main()
}

/// The pipeline's stages, reachable for this crate's own integration tests
/// and benchmarks, which drive them one at a time. Not part of the API: it
/// may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::decode::{Compression, Encoding, decode};
    pub use crate::validate::{Clock, Dimension, Rejection, Validated, Value, validate};
}

/// The collector's clock, in ns since the epoch.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
