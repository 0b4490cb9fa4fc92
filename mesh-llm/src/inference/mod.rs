//! Launching inference backends.

pub mod launch;
