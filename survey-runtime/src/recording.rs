//! The recording rules: what an instrumented launch, unload and exit
//! record, and how a function's result becomes an outcome. The macros reach
//! them through `__private`; hosts use the macros instead.
//!
//! Everything here is on the hot path of an instrumented call. While
//! survey is disabled each costs one atomic load. While it is enabled:
//!
//! - a launch calls the host's `survey_facts()` once, allocates one `Arc` for
//!   the facts, and pushes two events (the attempt, then the outcome) onto
//!   the bounded queue, which never blocks; a successful launch also
//!   allocates the registry entry (an `Arc`) and publishes a new registry
//!   snapshot: a copy of the loaded-set map per compare-and-swap attempt;
//! - an unload looks its model up in the registry when it starts; a
//!   successful one publishes a registry snapshot without the model (a copy
//!   of the map) and, unless an exit already ended the model, pushes one
//!   event;
//! - an exit publishes a registry snapshot without the model (a copy of the
//!   map) and pushes one event;
//! - for a model survey never saw launch, an unload or an exit also calls
//!   `survey_facts()` and allocates the facts (a `Box` and then an `Arc` for
//!   an unload, an `Arc` for an exit).

use std::sync::Arc;
use std::time::Instant;

use crate::failure::FailureReason;
use crate::model::SurveyModel;
use crate::model::{InstanceKey, ModelFacts};
use crate::queue::{Ending, Event};
use crate::schema::{FailureKind, LaunchKind};
use crate::setup::{Active, active};

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
/// cancelled launch future), so counts and gauges never drift. Attempt and
/// outcome go to the survey instance that was running when the launch began.
#[must_use]
pub struct LaunchGuard {
    started: Option<Started>,
}

struct Started {
    active: Arc<Active>,
    facts: Arc<ModelFacts>,
    kind: LaunchKind,
    at: Instant,
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
        let at = active.now();
        LaunchGuard {
            started: Some(Started {
                active,
                facts,
                kind,
                at,
            }),
        }
    }

    /// Records the outcome of the launch.
    #[inline]
    pub fn finish<R: LaunchOutcome + ?Sized>(mut self, result: &R) {
        if let Some(started) = self.started.take() {
            started.finish(result.failure());
        }
    }
}

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        if let Some(started) = self.started.take() {
            started.finish(Some(FailureKind::Other));
        }
    }
}

impl Started {
    fn finish(self, failure: Option<FailureKind>) {
        let now = self.active.now();
        let duration = now.saturating_duration_since(self.at);
        if failure.is_none() {
            self.active
                .registry
                .insert(self.facts.clone(), self.kind, now);
        }
        self.active.push(Event::LaunchFinished {
            facts: self.facts,
            kind: self.kind,
            duration,
            failure,
        });
    }
}

/// Captures what an unload needs before its body runs (the body may consume
/// the model): the instance key when survey saw the model launch, the full
/// facts otherwise.
#[must_use]
pub struct UnloadGuard {
    captured: Option<(Arc<Active>, Captured)>,
}

enum Captured {
    Loaded(InstanceKey),
    Unknown(Box<ModelFacts>),
}

impl UnloadGuard {
    /// Captures `model`.
    #[inline]
    pub fn start<M: SurveyModel + ?Sized>(model: &M) -> UnloadGuard {
        let captured = active().map(|active| {
            let key = model.instance_key();
            let captured = if active.registry.contains(key) {
                Captured::Loaded(key)
            } else {
                Captured::Unknown(Box::new(model.survey_facts()))
            };
            (active, captured)
        });
        UnloadGuard { captured }
    }

    /// Records the unload if it succeeded.
    #[inline]
    pub fn finish<R: UnloadOutcome + ?Sized>(self, result: &R) {
        let Some((active, captured)) = self.captured else {
            return;
        };
        if !result.succeeded() {
            return;
        }
        match captured {
            Captured::Loaded(key) => {
                // Gone already: an exit was recorded for it instead.
                ended(&active, key, Ending::Unloaded, || None);
            }
            Captured::Unknown(facts) => {
                ended(&active, facts.instance(), Ending::Unloaded, || Some(*facts));
            }
        }
    }
}

/// Records an unexpected exit of `model`: counted, uptime recorded when
/// known, and the model leaves the loaded set.
#[inline]
pub fn record_exit<M: SurveyModel + ?Sized>(model: &M) {
    let Some(active) = active() else { return };
    ended(
        &active,
        model.instance_key(),
        Ending::ExitedUnexpectedly,
        || Some(model.survey_facts()),
    );
}

/// Removes `key` from the loaded set and queues how it ended: with the facts,
/// kind and uptime of its launch when survey saw it, else with
/// `unknown()`'s facts (if any) and no uptime.
fn ended(
    active: &Active,
    key: InstanceKey,
    ending: Ending,
    unknown: impl FnOnce() -> Option<ModelFacts>,
) {
    let event = match active.registry.remove(key) {
        Some(entry) => Event::Ended {
            ending,
            facts: entry.facts.clone(),
            kind: Some(entry.kind),
            uptime: Some(active.now().saturating_duration_since(entry.loaded_at)),
        },
        None => match unknown() {
            Some(facts) => Event::Ended {
                ending,
                facts: Arc::new(facts),
                kind: None,
                uptime: None,
            },
            None => return,
        },
    };
    active.push(event);
}
