//! What the workspace's tests, benches and the mesh-llm demo share, kept out
//! of the product crates: a dev-dependency only, never published.
//!
//! - [`receiver`]: an OTLP/HTTP metrics receiver that decodes what arrives;
//! - [`host`]: a host's model types, error enum and instrumented functions,
//!   and survey started against a receiver with fixed hardware;
//! - `otlp` (feature `collector`): export requests built by hand, as
//!   survey's nodes send them, in the collector's own OTLP types;
//! - [`child`]: this test binary run again as a child process (a node of
//!   its own, with its own `service.instance.id`);
//! - `mesh` (feature `mesh-llm`): `mesh-llm serve` child processes, model
//!   files for the stand-in backend, and the inference API client;
//! - `collector` (feature `collector`): an in-process survey-collector,
//!   an HTTP client for it and its reports;
//! - [`tls`]: a CA and a server certificate for HTTPS tests;
//! - [`binaries`]: where the workspace's binaries are;
//! - [`dir`], [`wait`], [`net`], [`bench`](mod@bench): temporary directories, waiting
//!   for a condition, free loopback ports, and criterion's estimates.

pub mod bench;
pub mod binaries;
pub mod child;
#[cfg(feature = "collector")]
pub mod collector;
pub mod dir;
pub mod host;
#[cfg(feature = "mesh-llm")]
pub mod mesh;
pub mod net;
#[cfg(feature = "collector")]
pub mod otlp;
pub mod receiver;
pub mod tls;
pub mod wait;

pub use dir::TestDir;
pub use net::free_port;
pub use receiver::{
    Mode, Point, PointKind, Receiver, Request, of, one, render_table, sorted_lines, total,
};
pub use wait::{poll, wait_until, wait_until_async};
