//! One inference backend process: launching `llama-server` (spawn, wait
//! for `/health`, check the route, classify failures) and, once it is up,
//! watching and stopping it.

pub mod launch;
pub mod local;
