//! The clock launch durations and uptimes are measured with.
//!
//! Builds read the monotonic clock. The `simulated-clock` cargo feature,
//! which only the fleet simulator enables, adds a process-wide offset that
//! [`advance`] moves forward, so a simulated node can spend minutes
//! launching and days loaded in an instant, and its durations still land in
//! their real histogram buckets.

use std::time::Instant;

#[cfg(feature = "simulated-clock")]
static OFFSET_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Now, on survey's clock.
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(feature = "simulated-clock")]
    {
        let offset = OFFSET_NANOS.load(std::sync::atomic::Ordering::Relaxed);
        Instant::now() + std::time::Duration::from_nanos(offset)
    }
    #[cfg(not(feature = "simulated-clock"))]
    {
        Instant::now()
    }
}

/// Moves this process's survey clock forward by `by`. Only with the
/// `simulated-clock` feature, for the fleet simulator; not an API.
#[cfg(feature = "simulated-clock")]
pub fn advance(by: std::time::Duration) {
    let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
    OFFSET_NANOS.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(all(test, feature = "simulated-clock"))]
mod tests {
    #[test]
    fn advancing_moves_survey_time_only() {
        let (before, real) = (super::now(), Instant::now());
        super::advance(std::time::Duration::from_secs(3600));
        assert!(super::now().duration_since(before).as_secs() >= 3600);
        assert!(real.elapsed().as_secs() < 60);
    }

    use std::time::Instant;
}
