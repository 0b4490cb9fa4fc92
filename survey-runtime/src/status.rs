//! [`Status`]: what survey is doing, for the host's own status output.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::DisabledReason;

/// A snapshot of survey's state. Local only: never exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Whether metrics are being exported.
    pub enabled: bool,
    /// Why not, when disabled.
    pub disabled_reason: Option<DisabledReason>,
    /// Where metrics go, without credentials or query string.
    pub endpoint: Option<String>,
    /// Exports the collector accepted.
    pub exports_ok: u64,
    /// Exports that failed after their retries.
    pub exports_failed: u64,
    /// The most recent export error (local diagnostics only).
    pub last_error: Option<String>,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Events recorded into the instruments.
    pub events_recorded: u64,
}

impl Status {
    pub(crate) fn disabled(reason: Option<DisabledReason>) -> Status {
        Status {
            enabled: false,
            disabled_reason: reason,
            endpoint: None,
            exports_ok: 0,
            exports_failed: 0,
            last_error: None,
            events_dropped: 0,
            events_recorded: 0,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.enabled {
            return match &self.disabled_reason {
                Some(reason) => write!(f, "survey: disabled ({reason})"),
                None => write!(f, "survey: disabled"),
            };
        }
        write!(
            f,
            "survey: enabled, endpoint {}, exports ok {} failed {}, events recorded {} dropped {}",
            self.endpoint.as_deref().unwrap_or("-"),
            self.exports_ok,
            self.exports_failed,
            self.events_recorded,
            self.events_dropped,
        )?;
        if let Some(error) = &self.last_error {
            write!(f, ", last error: {error}")?;
        }
        Ok(())
    }
}

/// Counters updated by the exporter and the worker.
#[derive(Debug, Default)]
pub(crate) struct ExportCounters {
    pub exports_ok: AtomicU64,
    pub exports_failed: AtomicU64,
    pub events_recorded: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// What the HTTP client saw during the export in flight, if anything.
    transport_detail: Mutex<Option<String>>,
}

impl ExportCounters {
    pub(crate) fn export_succeeded(&self) {
        self.exports_ok.fetch_add(1, Ordering::Relaxed);
        self.take_transport_detail();
    }

    /// Counts a failed export; its error is what the HTTP client saw, if
    /// anything, else the exporter's own message.
    pub(crate) fn export_failed(&self, error: String) {
        self.exports_failed.fetch_add(1, Ordering::Relaxed);
        let error = self.take_transport_detail().unwrap_or(error);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    /// Notes what went wrong with one HTTP attempt of the export in flight.
    pub(crate) fn note_transport_problem(&self, problem: String) {
        if let Ok(mut detail) = self.transport_detail.lock() {
            *detail = Some(problem);
        }
    }

    fn take_transport_detail(&self) -> Option<String> {
        self.transport_detail.lock().ok().and_then(|mut d| d.take())
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}
