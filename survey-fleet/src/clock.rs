//! The simulated clock each node process gives survey through
//! `Setup::clock`: the monotonic clock plus an offset the node moves
//! forward, so minutes of launching and days of uptime pass in an instant
//! and every duration still lands in its real histogram bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The offset of this process's simulated clock, in nanoseconds.
static OFFSET_NANOS: AtomicU64 = AtomicU64::new(0);

/// This process's simulated clock; give it to `survey::Setup::clock`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatedClock;

impl survey::Clock for SimulatedClock {
    fn now(&self) -> Instant {
        Instant::now() + Duration::from_nanos(OFFSET_NANOS.load(Ordering::Relaxed))
    }
}

/// Moves this process's simulated clock forward by `by`.
pub fn advance(by: Duration) {
    let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
    OFFSET_NANOS.fetch_add(nanos, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use survey::Clock;

    #[test]
    fn advancing_moves_simulated_time_only() {
        let (before, real) = (SimulatedClock.now(), Instant::now());
        advance(Duration::from_secs(3600));
        assert!(SimulatedClock.now().duration_since(before) >= Duration::from_secs(3600));
        assert!(real.elapsed() < Duration::from_secs(60));
    }
}
