//! Waiting for a condition, polling, with a bound.

use std::time::{Duration, Instant};

/// How often [`poll`], [`wait_until`] and [`wait_until_async`] try again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `f` every [`POLL_INTERVAL`] until it returns `Some`, for at most
/// `timeout`; `None` if it never did.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`poll`], but panics naming `what` if `f` has not returned `Some`
/// within `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("{what}: not within {timeout:?}"))
}

/// [`wait_until`] for async tests: sleeps on tokio's timer between calls,
/// so the test's runtime goes on running its other tasks.
pub async fn wait_until_async<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
