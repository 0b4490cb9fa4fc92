//! An error enum with no variants derives `FailureReason`.
#![deny(warnings)]

use survey::FailureReason;

#[derive(Debug, FailureReason)]
pub enum Never {}

fn reason(never: &Never) -> survey::FailureKind {
    never.failure_reason()
}

fn main() {
    let _ = reason;
}
