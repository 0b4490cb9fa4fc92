//! What the survey macros expand to. Not a public API: the names and
//! signatures here change without notice. Hosts use the macros instead.
//!
//! Every function here is the hot path of an instrumented call: one atomic
//! load when survey is disabled; otherwise the host's `survey_facts()`, one
//! allocation, a registry update on success, and a non-blocking queue push.

use std::sync::Arc;
use std::time::Instant;

pub use crate::failure::FailureReason;
pub use crate::model::SurveyModel;
pub use crate::schema::{FailureKind, LaunchKind};

use crate::lifecycle::active;
use crate::model::ModelFacts;
use crate::queue::Event;

/// Checks that a run-time `kind = <expr>` is a [`LaunchKind`].
#[inline]
pub const fn launch_kind(kind: LaunchKind) -> LaunchKind {
    kind
}

/// The return type of a `#[survey::launch]` function.
#[diagnostic::on_unimplemented(
    message = "`#[survey::launch]` functions must return `Result<T, E>` where `E: survey::FailureReason`; found `{Self}`",
    label = "this return type is not a `Result` whose error implements `survey::FailureReason`"
)]
pub trait LaunchOutcome {
    /// `None` on success, the failure reason on error.
    fn failure(&self) -> Option<FailureKind>;
}

impl<T, E: FailureReason> LaunchOutcome for Result<T, E> {
    #[inline]
    fn failure(&self) -> Option<FailureKind> {
        self.as_ref().err().map(FailureReason::failure_reason)
    }
}

/// The return type of a `#[survey::unload]` function.
#[diagnostic::on_unimplemented(
    message = "`#[survey::unload]` functions must return `()` or `Result<T, E>`; found `{Self}`",
    label = "`()` and `Ok(_)` count as a successful unload"
)]
pub trait UnloadOutcome {
    /// Whether the model was unloaded.
    fn succeeded(&self) -> bool;
}

impl UnloadOutcome for () {
    #[inline]
    fn succeeded(&self) -> bool {
        true
    }
}

impl<T, E> UnloadOutcome for Result<T, E> {
    #[inline]
    fn succeeded(&self) -> bool {
        self.is_ok()
    }
}

/// Times one launch. Records the attempt when created, the outcome in
/// [`finish`](LaunchGuard::finish), or `other` if dropped unfinished (a
/// cancelled launch future), so counts and gauges never drift.
#[must_use]
pub struct LaunchGuard {
    started: Option<(Arc<ModelFacts>, LaunchKind, Instant)>,
}

impl LaunchGuard {
    /// Starts timing a launch of `model`.
    #[inline]
    pub fn start<M: SurveyModel + ?Sized>(kind: LaunchKind, model: &M) -> LaunchGuard {
        let Some(active) = active() else {
            return LaunchGuard { started: None };
        };
        let facts = Arc::new(model.survey_facts());
        active.push(Event::LaunchStarted {
            facts: facts.clone(),
            kind,
        });
        LaunchGuard {
            started: Some((facts, kind, Instant::now())),
        }
    }

    /// Records the outcome of the launch.
    #[inline]
    pub fn finish<R: LaunchOutcome + ?Sized>(mut self, result: &R) {
        if let Some(started) = self.started.take() {
            launch_finished(started, result.failure());
        }
    }
}

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        if let Some(started) = self.started.take() {
            launch_finished(started, Some(FailureKind::Other));
        }
    }
}

fn launch_finished(
    (facts, kind, start): (Arc<ModelFacts>, LaunchKind, Instant),
    failure: Option<FailureKind>,
) {
    let duration = start.elapsed();
    let Some(active) = active() else { return };
    if failure.is_none() {
        active.registry.insert(facts.clone(), kind);
    }
    active.push(Event::LaunchFinished {
        facts,
        kind,
        duration,
        failure,
    });
}

/// Captures the model before an unload body runs (the body may consume it).
#[must_use]
pub struct UnloadGuard {
    facts: Option<ModelFacts>,
}

impl UnloadGuard {
    /// Captures `model`.
    #[inline]
    pub fn start<M: SurveyModel + ?Sized>(model: &M) -> UnloadGuard {
        UnloadGuard {
            facts: active().map(|_| model.survey_facts()),
        }
    }

    /// Records the unload if it succeeded.
    #[inline]
    pub fn finish<R: UnloadOutcome + ?Sized>(self, result: &R) {
        if let Some(facts) = self.facts
            && result.succeeded()
        {
            unloaded(facts);
        }
    }
}

fn unloaded(facts: ModelFacts) {
    let Some(active) = active() else { return };
    let event = match active.registry.remove(facts.instance()) {
        Some(entry) => Event::Unloaded {
            facts: entry.facts.clone(),
            kind: Some(entry.kind),
            uptime: Some(entry.uptime()),
        },
        None => Event::Unloaded {
            facts: Arc::new(facts),
            kind: None,
            uptime: None,
        },
    };
    active.push(event);
}

/// Records an unexpected exit of `model`: counted, uptime recorded when
/// known, and the model leaves the loaded set.
#[inline]
pub fn record_exit<M: SurveyModel + ?Sized>(model: &M) {
    let Some(active) = active() else { return };
    let facts = model.survey_facts();
    let event = match active.registry.remove(facts.instance()) {
        Some(entry) => Event::ExitedUnexpectedly {
            facts: entry.facts.clone(),
            kind: Some(entry.kind),
            uptime: Some(entry.uptime()),
        },
        None => Event::ExitedUnexpectedly {
            facts: Arc::new(facts),
            kind: None,
            uptime: None,
        },
    };
    active.push(event);
}
