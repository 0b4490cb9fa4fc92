//! Work under way (loads, proxied requests), counted so that a shutdown
//! can wait for it to end, within a bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Counts work under way: each [`Tracker::enter`] counts one piece for as
/// long as its guard lives.
#[derive(Clone, Default)]
pub(crate) struct Tracker(Arc<watch::Sender<usize>>);

/// One piece of work under way; dropping it ends it.
pub(crate) struct UnderWay(Arc<watch::Sender<usize>>);

impl Tracker {
    /// Counts one more piece of work until the guard is dropped.
    pub(crate) fn enter(&self) -> UnderWay {
        self.0.send_modify(|n| *n += 1);
        UnderWay(self.0.clone())
    }

    /// How many are under way now.
    pub(crate) fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits up to `within` for nothing to be under way; whether that came.
    pub(crate) async fn idle_within(&self, within: Duration) -> bool {
        let mut count = self.0.subscribe();
        tokio::time::timeout(within, count.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_once_every_guard_is_gone() {
        let tracker = Tracker::default();
        assert!(tracker.idle_within(Duration::ZERO).await);
        let (a, b) = (tracker.enter(), tracker.enter());
        assert_eq!(tracker.count(), 2);
        drop(a);
        assert!(!tracker.idle_within(Duration::from_millis(20)).await);
        let waiting = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.idle_within(Duration::from_secs(10)).await }
        });
        drop(b);
        assert!(waiting.await.unwrap());
        assert_eq!(tracker.count(), 0);
    }
}
