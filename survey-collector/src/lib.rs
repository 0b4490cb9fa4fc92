//! `survey-collector`: the receiving side of survey for one machine.
//!
//! Survey nodes export their model lifecycle metrics over OTLP/HTTP. This
//! crate receives them (`POST /v1/metrics`, protobuf or JSON, gzip or not,
//! optional TLS and bearer tokens), keeps exactly the data points an honest
//! survey node sends, stores them in embedded SQLite, and answers the key
//! questions of the survey spec, and one more on inference speed from the
//! opt-in inference metrics ([`report::QUESTIONS`]).
//!
//! | module | stage |
//! |---|---|
//! | [`auth`] | bearer tokens |
//! | [`otlp`] | the OTLP metrics messages, protobuf and OTLP/JSON |
//! | [`decode`] | body → `ExportMetricsServiceRequest`, within size limits |
//! | [`validate`] | the schema's metrics, allowlisted attributes, sanitized values |
//! | [`store`] | SQLite: streams, raw points on change, daily rollups |
//! | [`writer`] | the one writer thread, group commit, bounded queue |
//! | [`ingest`] | the HTTP endpoint: statuses, partial success |
//! | [`server`] | listener, TLS, stop |
//! | [`report`] | the counting rule and the questions |
//! | [`render`] | the report as tables, JSON, CSV or an HTML page with charts |
//! | [`functions`] | SQL functions the queries need |
//! | [`cli`] | `serve` and `report` |
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

pub mod auth;
pub mod cli;
pub mod decode;
pub mod functions;
pub mod ingest;
mod keyed_hash;
pub mod otlp;
pub mod render;
pub mod report;
pub mod server;
pub mod store;
pub mod validate;
pub mod writer;

pub use report::{Day, Report, ReportOptions};
pub use server::{ServeConfig, ServeError, Server, TlsFiles};
pub use store::{Store, StoreError};

/// The collector's clock, in ns since the epoch.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
