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
//! | [`backend::launch`] | spawn `llama-server`, wait for `/health`, check the route, classify failures |
//! | [`backend::local`] | one backend process after launch: watch, stop |
//! | [`node`] | the node's state: loaded models, runtime load/unload, unexpected exits |
//! | [`inference::proxy`] | the OpenAI-compatible inference API, routed by model |
//! | [`inference::meter`] | what the proxy measures of each request, for survey's opt-in inference metrics |
//! | [`api`] | the local control API and its client |
//! | `http` | the servers (axum on the workspace's serve loop, `survey-serve`) and the client (reqwest) |
//! | [`cli`] | the `mesh-llm` command line: parsing, `serve`, the renderers of `survey show` and `status` |
//! | [`gguf`] | model facts from GGUF headers |
//!
//! The survey annotations sit on [`backend::launch::launch`],
//! [`backend::local::LocalBackend::stop`] and the node's unexpected-exit
//! handler. The one other telemetry call is the proxy's
//! `survey::record_inference`, once per forwarded request, made only when
//! `[telemetry] prompt_shape_metrics = true` (off by default): its outcome,
//! and for an answer in full the token counts and speeds llama-server
//! reports and the time to the first token. Nothing derived from a
//! prompt's or an answer's text is computed, kept or logged; the reader
//! keeps numbers only ([`inference::meter`]).

#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod cli;
pub mod config;
pub mod gguf;
mod http;
pub mod inference;
pub mod node;
pub mod plugin;
mod tracker;
