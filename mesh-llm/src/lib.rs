//! A reference mesh-llm node, reduced to what the survey plugin observes but
//! real: it spawns and health-checks `llama-server` processes, loads and
//! unloads models at run time, notices backends that die, and reports all of
//! it through the built-in `survey` plugin. It serves inference through its
//! backends on an OpenAI-compatible API.
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | the config file: `[[models]]`, `[[plugin]]`, `[telemetry]` |
//! | [`plugin`] | built-in plugin registration (`survey`) |
//! | [`inference::launch`] | spawn `llama-server`, wait for `/health`, check the route, classify failures |
//! | [`inference::proxy`] | the OpenAI-compatible inference API, routed by model |
//! | [`runtime`] | loaded models, runtime load/unload, unexpected exits |
//! | [`runtime::local`] | one backend process: watch, stop |
//! | [`api`] | the local control API and its client |
//! | `http` | the servers (axum over hyper) and the client (reqwest) |
//! | [`cli`] | the `mesh-llm` command line |
//! | [`gguf`] | model facts from GGUF headers |
//! | [`standin`] | a stand-in `llama-server` with fault modes, for tests and demos |
//!
//! The survey annotations sit on [`inference::launch::launch`],
//! [`runtime::local::LocalBackend::stop`] and the runtime's unexpected-exit
//! handler; no other telemetry code is in the node.

#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod gguf;
mod http;
pub mod inference;
pub mod plugin;
pub mod runtime;
pub mod standin;
mod tracker;
