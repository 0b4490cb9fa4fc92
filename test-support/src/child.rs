//! This test binary run again as a child process, running one of its own
//! tests: a node of its own, with its own `service.instance.id`.
//!
//! The child test reads what it should do from the environment the parent
//! set and does nothing when it is not set, so the parent's own run of it
//! passes at once (mark it `#[ignore]` to keep it out of the normal run).

use std::process::Command;

/// A command running only `test` (ignored or not) of this test binary, on
/// one thread, its output shown; add the environment and run it.
pub fn this_test(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the running test binary"));
    command.args([
        "--include-ignored",
        "--exact",
        test,
        "--test-threads=1",
        "--nocapture",
    ]);
    command
}
