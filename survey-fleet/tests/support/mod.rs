//! Shared pieces of survey-fleet's tests.

// Each test binary uses its part of this module.
#![allow(dead_code)]

pub mod pipeline;

use std::process::Command;

/// What `command` writes to its standard output. It must succeed; if it
/// does not, its standard error is the failure's message.
pub fn stdout_of(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not run: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
