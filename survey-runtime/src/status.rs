//! [`Status`]: what survey is doing, for the host's own status output; and
//! the export health the host's log reports: one warning when exports start
//! failing, a reminder at most every [`REMINDER_EVERY`], one line when they
//! recover. Never one line per export.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use crate::config::DisabledReason;

/// A snapshot of survey's state. Local only: never exported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Whether survey is running (exporting, or recording locally).
    pub enabled: bool,
    /// Why not, when disabled.
    pub disabled_reason: Option<DisabledReason>,
    /// Where metrics go, without credentials or query string; in local
    /// mode, says that nothing is sent.
    pub endpoint: Option<String>,
    /// Exports sent that the collector accepted whole (in local mode:
    /// collections kept).
    pub exports_ok: u64,
    /// Exports not sent because their points equal those of the last
    /// export the collector accepted (`telemetry.heartbeat_secs`); neither
    /// a success nor a failure. In local mode: collections that would not
    /// be sent.
    pub exports_unchanged: u64,
    /// Exports that failed after their retries, or that the collector
    /// accepted only in part.
    pub exports_failed: u64,
    /// Failed exports since the last success (0 while exports succeed).
    pub failing_in_a_row: u64,
    /// How long ago the last successful export finished.
    pub last_success_age: Option<Duration>,
    /// The last failed export: why, and how long ago (local diagnostics only).
    pub last_failure: Option<LastFailure>,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Events recorded into the instruments.
    pub events_recorded: u64,
    /// Times the cumulative series were started anew
    /// (`telemetry.series_reset_secs`).
    pub series_resets: u64,
    /// Whether the opt-in inference metrics are recorded
    /// (`telemetry.prompt_shape_metrics`).
    pub prompt_shape_metrics: bool,
    /// Inference records dropped because their model was no longer loaded
    /// when the request ended.
    pub inference_unloaded: u64,
    /// Inference values dropped for being out of bounds (not finite,
    /// negative, or above the stated maxima).
    pub inference_values_rejected: u64,
}

/// The last failed export.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastFailure {
    /// Why it failed.
    pub problem: ExportProblem,
    /// How long ago.
    pub age: Duration,
}

/// Why an export failed, as precisely as the transport tells. Survey puts
/// no response body, URL or header value in it; `Other` carries the
/// exporter's own message, which in the pinned `opentelemetry-otlp` is
/// fixed text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportProblem {
    /// The collector's host name did not resolve.
    #[error("cannot resolve the collector's host name")]
    NameResolution,
    /// Nothing accepts connections at the endpoint's address and port.
    #[error("connection refused: nothing is listening at the collector's address")]
    ConnectionRefused,
    /// The collector's certificate does not chain to a trusted root, or is
    /// otherwise refused (bad signature, revoked, unusable).
    #[error("TLS: the collector's certificate is not trusted")]
    CertificateNotTrusted,
    /// The collector's certificate has expired or is not valid yet (check
    /// the clocks of both machines too).
    #[error("TLS: the collector's certificate has expired or is not valid yet")]
    CertificateExpired,
    /// The certificate is valid, but not for the endpoint's host name.
    #[error("TLS: the collector's certificate is not valid for the endpoint's host name")]
    CertificateNameMismatch,
    /// An `https://` endpoint answered in plain HTTP.
    #[error("TLS: the endpoint speaks plain HTTP; use an http:// endpoint or enable TLS on it")]
    PlainHttp,
    /// Another TLS failure.
    #[error("TLS handshake with the collector failed")]
    Tls,
    /// No answer within `telemetry.timeout_secs`.
    #[error("timed out: the collector did not answer in time")]
    TimedOut,
    /// The collector answered with an error status (its body is not kept).
    #[error("the collector answered HTTP {0}")]
    HttpStatus(u16),
    /// The collector accepted the export but rejected some of its points
    /// (its `partial_success`).
    #[error("the collector rejected {0} data point(s) of the export (partial_success)")]
    Rejected(u64),
    /// The connection failed another way (reset, closed early).
    #[error("the connection to the collector failed")]
    Connection,
    /// The exporter failed before or after the request.
    #[error("export failed: {0}")]
    Other(String),
}

impl Status {
    pub(crate) fn disabled(reason: Option<DisabledReason>) -> Status {
        Status {
            enabled: false,
            disabled_reason: reason,
            endpoint: None,
            exports_ok: 0,
            exports_unchanged: 0,
            exports_failed: 0,
            failing_in_a_row: 0,
            last_success_age: None,
            last_failure: None,
            events_dropped: 0,
            events_recorded: 0,
            series_resets: 0,
            prompt_shape_metrics: false,
            inference_unloaded: 0,
            inference_values_rejected: 0,
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
            "survey: enabled, endpoint {}, exports ok {} failed {} unchanged (not sent) {}, \
             events recorded {} dropped {}",
            self.endpoint.as_deref().unwrap_or("-"),
            self.exports_ok,
            self.exports_failed,
            self.exports_unchanged,
            self.events_recorded,
            self.events_dropped,
        )?;
        if self.prompt_shape_metrics {
            write!(f, ", inference metrics on")?;
            if self.inference_unloaded + self.inference_values_rejected > 0 {
                write!(
                    f,
                    " ({} records of unloaded models and {} values out of bounds dropped)",
                    self.inference_unloaded, self.inference_values_rejected
                )?;
            }
        }
        if let Some(age) = self.last_success_age {
            write!(f, ", last success {} ago", Age(age))?;
        }
        if let Some(failure) = &self.last_failure {
            if self.failing_in_a_row > 0 {
                write!(
                    f,
                    ", failing ({} in a row), last failure {} ago: {}",
                    self.failing_in_a_row,
                    Age(failure.age),
                    failure.problem
                )?;
            } else {
                write!(
                    f,
                    ", last failure {} ago (since recovered): {}",
                    Age(failure.age),
                    failure.problem
                )?;
            }
        }
        Ok(())
    }
}

/// A duration as a person reads it: `42 s`, `7 min`, `3 h`, `2 d`.
pub(crate) struct Age(pub Duration);

impl std::fmt::Display for Age {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            0..120 => write!(f, "{secs} s"),
            120..7_200 => write!(f, "{} min", secs / 60),
            7_200..172_800 => write!(f, "{} h", secs / 3_600),
            _ => write!(f, "{} d", secs / 86_400),
        }
    }
}

/// How often, at most, the log reminds that exports are still failing.
pub(crate) const REMINDER_EVERY: Duration = Duration::from_secs(600);

/// A line for the host's log about export health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HealthLine {
    /// Exports started failing (WARN).
    Failing(ExportProblem),
    /// They still fail (WARN), `count` in a row, for `for_how_long`.
    StillFailing {
        problem: ExportProblem,
        count: u64,
        for_how_long: Duration,
    },
    /// They succeed again (INFO) after `count` failures.
    Recovered { count: u64, for_how_long: Duration },
}

impl HealthLine {
    /// Writes the line to the host's log, under the `survey` target.
    pub(crate) fn log(&self, endpoint: &str) {
        match self {
            HealthLine::Failing(problem) => tracing::warn!(
                target: "survey",
                "exports to {endpoint} are failing: {problem}; \
                 launches and unloads are not affected, counts are kept and sent once an export succeeds"
            ),
            HealthLine::StillFailing {
                problem,
                count,
                for_how_long,
            } => tracing::warn!(
                target: "survey",
                "exports to {endpoint} still failing: {count} in a row over {}; last: {problem}",
                Age(*for_how_long)
            ),
            HealthLine::Recovered {
                count,
                for_how_long,
            } => tracing::info!(
                target: "survey",
                "exports to {endpoint} succeed again after {count} failure(s) over {}",
                Age(*for_how_long)
            ),
        }
    }
}

/// Export outcomes over time: what [`Status`] shows and what the log says.
/// One lock holds it all, so a status never shows a success counted but
/// the failures in a row not yet cleared.
#[derive(Debug, Default)]
struct Health {
    exports_ok: u64,
    exports_failed: u64,
    last_success: Option<Instant>,
    last_failure: Option<(ExportProblem, Instant)>,
    /// Since when exports fail, and how many in a row.
    failing_since: Option<Instant>,
    failing_in_a_row: u64,
    /// The last reminder of this run of failures, if any.
    last_reminder: Option<Instant>,
}

impl Health {
    /// Takes one export's outcome at `now`; returns the log line it calls
    /// for, if any.
    fn record(&mut self, now: Instant, outcome: Result<(), ExportProblem>) -> Option<HealthLine> {
        match outcome {
            Ok(()) => {
                self.exports_ok += 1;
                self.last_success = Some(now);
                let since = self.failing_since.take()?;
                let count = std::mem::take(&mut self.failing_in_a_row);
                self.last_reminder = None;
                Some(HealthLine::Recovered {
                    count,
                    for_how_long: now.saturating_duration_since(since),
                })
            }
            Err(problem) => {
                self.exports_failed += 1;
                self.last_failure = Some((problem.clone(), now));
                self.failing_in_a_row += 1;
                let Some(since) = self.failing_since else {
                    self.failing_since = Some(now);
                    return Some(HealthLine::Failing(problem));
                };
                let last = self.last_reminder.unwrap_or(since);
                if now.saturating_duration_since(last) < REMINDER_EVERY {
                    return None;
                }
                self.last_reminder = Some(now);
                Some(HealthLine::StillFailing {
                    problem,
                    count: self.failing_in_a_row,
                    for_how_long: now.saturating_duration_since(since),
                })
            }
        }
    }
}

/// Counters updated by the exporter and the worker.
#[derive(Debug, Default)]
pub(crate) struct ExportCounters {
    pub events_recorded: AtomicU64,
    /// Exports left out because nothing changed.
    pub exports_unchanged: AtomicU64,
    /// Exports finished, whatever became of them (sent, failed, left out,
    /// kept locally): tells a flush whether its export happened.
    pub exports_finished: AtomicU64,
    pub series_resets: AtomicU64,
    health: Mutex<Health>,
    /// What the HTTP client saw during the export in flight, if anything.
    transport_problem: Mutex<Option<ExportProblem>>,
}

impl ExportCounters {
    /// Counts one export's outcome at `now`. A failure's problem is what the
    /// HTTP client saw, if anything, else the exporter's message. Returns
    /// whether the collector accepted the whole export, and the log line
    /// the outcome calls for.
    pub(crate) fn export_finished(
        &self,
        now: Instant,
        outcome: Result<(), String>,
    ) -> (bool, Option<HealthLine>) {
        let seen = self.take_transport_problem();
        let outcome = match (outcome, seen) {
            (Ok(()), Some(rejected @ ExportProblem::Rejected(_))) => Err(rejected),
            (Ok(()), _) => Ok(()),
            (Err(_), Some(problem)) => Err(problem),
            (Err(message), None) => Err(ExportProblem::Other(message)),
        };
        let whole = outcome.is_ok();
        let line = self
            .health
            .lock()
            .ok()
            .and_then(|mut health| health.record(now, outcome));
        (whole, line)
    }

    /// Notes what went wrong with one HTTP attempt of the export in flight.
    pub(crate) fn note_transport_problem(&self, problem: ExportProblem) {
        if let Ok(mut seen) = self.transport_problem.lock() {
            *seen = Some(problem);
        }
    }

    fn take_transport_problem(&self) -> Option<ExportProblem> {
        self.transport_problem
            .lock()
            .ok()
            .and_then(|mut p| p.take())
    }

    /// Export health for [`Status`], ages as of `now`.
    pub(crate) fn health(&self, now: Instant) -> ExportHealth {
        let health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ExportHealth {
            exports_ok: health.exports_ok,
            exports_failed: health.exports_failed,
            failing_in_a_row: health.failing_in_a_row,
            last_success_age: health
                .last_success
                .map(|at| now.saturating_duration_since(at)),
            last_failure: health
                .last_failure
                .as_ref()
                .map(|(problem, at)| LastFailure {
                    problem: problem.clone(),
                    age: now.saturating_duration_since(*at),
                }),
        }
    }
}

/// The export part of [`Status`], read under one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportHealth {
    pub exports_ok: u64,
    pub exports_failed: u64,
    pub failing_in_a_row: u64,
    pub last_success_age: Option<Duration>,
    pub last_failure: Option<LastFailure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: ExportProblem = ExportProblem::ConnectionRefused;

    /// The log lines of a run of outcomes, one per second unless `at` says.
    fn run(outcomes: &[(u64, Result<(), ExportProblem>)]) -> Vec<(u64, HealthLine)> {
        let start = Instant::now();
        let mut health = Health::default();
        outcomes
            .iter()
            .filter_map(|(at, outcome)| {
                let now = start + Duration::from_secs(*at);
                health.record(now, outcome.clone()).map(|line| (*at, line))
            })
            .collect()
    }

    #[test]
    fn one_warning_when_exports_start_failing_and_one_line_on_recovery() {
        // 33 failed exports 15 s apart (480 s: no reminder yet), then two
        // successes.
        let mut outcomes = vec![(0, Ok(()))];
        outcomes.extend((1..=33).map(|i| (i * 15, Err(REFUSED))));
        outcomes.push((34 * 15, Ok(())));
        outcomes.push((35 * 15, Ok(())));
        assert_eq!(
            run(&outcomes),
            [
                (15, HealthLine::Failing(REFUSED)),
                (
                    510,
                    HealthLine::Recovered {
                        count: 33,
                        for_how_long: Duration::from_secs(495),
                    },
                ),
            ]
        );
    }

    #[test]
    fn reminders_come_at_most_every_ten_minutes_with_the_count() {
        // An export every 15 s failing for an hour, with the cause changing.
        let mut outcomes: Vec<(u64, Result<(), ExportProblem>)> = (0..240)
            .map(|i| {
                let problem = if i < 100 {
                    REFUSED
                } else {
                    ExportProblem::HttpStatus(503)
                };
                (i * 15, Err(problem))
            })
            .collect();
        outcomes.push((3600, Ok(())));
        let lines = run(&outcomes);
        let at: Vec<u64> = lines.iter().map(|(at, _)| *at).collect();
        assert_eq!(at, [0, 600, 1200, 1800, 2400, 3000, 3600]);
        assert_eq!(lines[0].1, HealthLine::Failing(REFUSED));
        assert_eq!(
            lines[1].1,
            HealthLine::StillFailing {
                problem: REFUSED,
                count: 41,
                for_how_long: Duration::from_secs(600),
            }
        );
        assert_eq!(
            lines[5].1,
            HealthLine::StillFailing {
                problem: ExportProblem::HttpStatus(503),
                count: 201,
                for_how_long: Duration::from_secs(3000),
            }
        );
        assert_eq!(
            lines[6].1,
            HealthLine::Recovered {
                count: 240,
                for_how_long: Duration::from_secs(3600),
            }
        );
    }

    #[test]
    fn a_new_run_of_failures_warns_again() {
        let lines = run(&[
            (0, Err(REFUSED)),
            (15, Ok(())),
            (30, Err(ExportProblem::TimedOut)),
            (45, Err(ExportProblem::TimedOut)),
        ]);
        let kinds: Vec<&HealthLine> = lines.iter().map(|(_, l)| l).collect();
        assert_eq!(
            kinds,
            [
                &HealthLine::Failing(REFUSED),
                &HealthLine::Recovered {
                    count: 1,
                    for_how_long: Duration::from_secs(15)
                },
                &HealthLine::Failing(ExportProblem::TimedOut),
            ]
        );
    }

    #[test]
    fn status_shows_the_last_failure_as_past_after_recovery() {
        let counters = ExportCounters::default();
        let start = Instant::now();
        counters.note_transport_problem(REFUSED);
        counters.export_finished(start, Err("x".into()));
        let health = counters.health(start + Duration::from_secs(5));
        assert_eq!(
            (health.failing_in_a_row, health.last_success_age),
            (1, None)
        );
        assert_eq!(
            health.last_failure,
            Some(LastFailure {
                problem: REFUSED,
                age: Duration::from_secs(5)
            })
        );
        counters.export_finished(start + Duration::from_secs(15), Ok(()));
        let health = counters.health(start + Duration::from_secs(20));
        assert_eq!(health.failing_in_a_row, 0);
        assert_eq!(health.last_success_age, Some(Duration::from_secs(5)));
        assert_eq!(health.last_failure.unwrap().age, Duration::from_secs(20));
        let mut status = Status::disabled(None);
        status.enabled = true;
        status.last_success_age = health.last_success_age;
        status.last_failure = counters
            .health(start + Duration::from_secs(20))
            .last_failure;
        let text = status.to_string();
        assert!(text.contains("last success 5 s ago"), "{text}");
        assert!(
            text.contains("last failure 20 s ago (since recovered): connection refused"),
            "{text}"
        );
    }

    #[test]
    fn a_partial_success_is_a_failure_and_other_errors_keep_the_transport_cause() {
        let counters = ExportCounters::default();
        let now = Instant::now();
        counters.note_transport_problem(ExportProblem::Rejected(3));
        assert_eq!(
            counters.export_finished(now, Ok(())),
            (false, Some(HealthLine::Failing(ExportProblem::Rejected(3))))
        );
        // A transport problem of a retried attempt that then succeeded is
        // not a failure.
        counters.note_transport_problem(ExportProblem::HttpStatus(503));
        assert!(matches!(
            counters.export_finished(now, Ok(())),
            (true, Some(HealthLine::Recovered { .. }))
        ));
        let health = counters.health(now);
        assert_eq!((health.exports_ok, health.exports_failed), (1, 1));
        counters.export_finished(now, Err("serialization failed".into()));
        assert_eq!(
            counters.health(now).last_failure.unwrap().problem,
            ExportProblem::Other("serialization failed".into())
        );
    }
}
