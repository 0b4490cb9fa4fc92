//! Launching inference backends, serving inference through them, and
//! measuring what they serve (opt-in).

pub mod launch;
pub mod meter;
pub mod proxy;
