//! What the survey macros expand to. Not a public API: the names and
//! signatures here change without notice. Hosts use the macros instead.
//!
//! A thin shim: the recording rules live in `recording`; this module names
//! them for generated code, with the few helpers only generated code needs.

pub use crate::failure::FailureReason;
pub use crate::model::SurveyModel;
pub use crate::recording::{LaunchGuard, LaunchOutcome, UnloadGuard, UnloadOutcome, record_exit};
pub use crate::schema::{FailureKind, LaunchKind};

/// Checks that a run-time `kind = <expr>` is a [`LaunchKind`].
#[inline]
pub const fn launch_kind(kind: LaunchKind) -> LaunchKind {
    kind
}

/// The value of the fake return edge that gives a wrapped body its declared
/// return type `T`, so that type errors point at the user's lines. The edge
/// sits under `if false`: this is never called.
#[cold]
pub fn fake_return<T>() -> T {
    unreachable!("the fake return edge of a survey macro is never taken")
}

/// Runs the body of a synchronous `#[survey::unload]` function, passed as a
/// closure so that a `return` in it ends the body, not the function.
#[inline(always)]
pub fn run<R>(body: impl FnOnce() -> R) -> R {
    body()
}
