//! [`FailureReason`]: how a launch error maps to `mesh_llm.failure_reason`.

use crate::schema::FailureKind;

/// Classifies a launch error into one of the spec's eight failure reasons.
///
/// Derive it with `#[derive(survey::FailureReason)]` (one
/// `#[survey(reason = "...")]` or `#[survey(transparent)]` per variant), or
/// implement it by hand. The reason is decided by the error's type and
/// variant, never by its message text.
///
/// ```
/// use survey_runtime::{FailureKind, FailureReason};
///
/// #[derive(Debug)]
/// struct CapacityError { needed: u64, free: u64 }
///
/// impl FailureReason for CapacityError {
///     fn failure_reason(&self) -> FailureKind {
///         FailureKind::CapacityRejected
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `survey::FailureReason`",
    label = "the error type of a `#[survey::launch]` function, and the field of a `#[survey(transparent)]` variant, must implement `survey::FailureReason`",
    note = "add `#[derive(survey::FailureReason)]` with `#[survey(reason = \"...\")]` on each variant, or implement the trait by hand"
)]
pub trait FailureReason {
    /// The failure reason exported for this error.
    fn failure_reason(&self) -> FailureKind;
}

impl FailureReason for FailureKind {
    fn failure_reason(&self) -> FailureKind {
        *self
    }
}

impl FailureReason for std::convert::Infallible {
    fn failure_reason(&self) -> FailureKind {
        match *self {}
    }
}

impl<T: FailureReason + ?Sized> FailureReason for &T {
    fn failure_reason(&self) -> FailureKind {
        (**self).failure_reason()
    }
}

impl<T: FailureReason + ?Sized> FailureReason for Box<T> {
    fn failure_reason(&self) -> FailureKind {
        (**self).failure_reason()
    }
}

impl<T: FailureReason + ?Sized> FailureReason for std::sync::Arc<T> {
    fn failure_reason(&self) -> FailureKind {
        (**self).failure_reason()
    }
}
