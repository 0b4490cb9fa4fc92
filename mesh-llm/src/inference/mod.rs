//! Launching inference backends.

pub mod launch;
pub mod proxy;
