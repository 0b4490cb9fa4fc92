//! Serving inference through the loaded backends, and measuring what they
//! serve (opt-in).

pub mod meter;
pub mod proxy;
