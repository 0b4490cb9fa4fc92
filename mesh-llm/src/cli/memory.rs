//! How much memory the node lets model files take.

/// Physical memory in bytes, from `/proc/meminfo`.
fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The largest model file the node accepts: `--memory-budget-mb`, else the
/// machine's memory where it can be read (Linux), else no limit, said in
/// the log.
pub(super) fn memory_budget(configured_mb: Option<u64>) -> u64 {
    if let Some(mb) = configured_mb {
        return mb.saturating_mul(1024 * 1024);
    }
    physical_memory().unwrap_or_else(|| {
        tracing::warn!(
            "cannot read this machine's memory size (only Linux is read); model files of any \
             size will be launched: set --memory-budget-mb to check them"
        );
        u64::MAX
    })
}
