//! The clock launch durations, uptimes and heartbeats are measured with.
//!
//! By default it is the monotonic clock. A host may give survey another
//! one through [`Setup::clock`](crate::Setup::clock): the fleet simulator
//! gives a clock it moves forward, so a simulated node can spend minutes
//! launching and days loaded in an instant, and its durations still land
//! in their real histogram buckets. Nothing in survey moves a clock.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// A source of "now" for survey's durations, uptimes and heartbeats.
///
/// It must never go backwards; survey reads it on instrumented calls, so it
/// must not block.
pub trait Clock: Send + Sync + 'static {
    /// Now, on this clock.
    fn now(&self) -> Instant;
}

/// The clock one `survey::init` measures with: the system's monotonic clock
/// unless the host gave another.
#[derive(Clone, Default)]
pub(crate) struct SurveyClock(Option<Arc<dyn Clock>>);

impl SurveyClock {
    /// `clock` instead of the system's.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> SurveyClock {
        SurveyClock(Some(clock))
    }

    /// Now, on survey's clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match &self.0 {
            Some(clock) => clock.now(),
            None => Instant::now(),
        }
    }
}

impl fmt::Debug for SurveyClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "SurveyClock(given)"
        } else {
            "SurveyClock(system)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A clock moved by hand.
    pub(crate) struct Moved {
        pub start: Instant,
        pub nanos: AtomicU64,
    }

    impl Clock for Moved {
        fn now(&self) -> Instant {
            self.start + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
        }
    }

    #[test]
    fn a_given_clock_replaces_the_system_one() {
        let moved = Arc::new(Moved {
            start: Instant::now(),
            nanos: AtomicU64::new(0),
        });
        let clock = SurveyClock::new(moved.clone());
        let before = clock.now();
        moved.nanos.store(3_600_000_000_000, Ordering::Relaxed);
        assert_eq!(
            clock.now().duration_since(before),
            Duration::from_secs(3600)
        );
        let system = SurveyClock::default();
        assert!(system.now() <= Instant::now());
    }
}
