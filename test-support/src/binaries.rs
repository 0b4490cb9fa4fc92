//! Where the workspace's binaries are: next to the running test, bench or
//! example, in `target/<profile>/`, built with cargo when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The stand-in `llama-server` (mesh-llm's `llama-server-standin`): the one
/// place the tests find their backend binary.
pub fn standin() -> PathBuf {
    binary("mesh-llm", "llama-server-standin")
}

/// The `mesh-llm` binary.
pub fn mesh_llm() -> PathBuf {
    binary("mesh-llm", "mesh-llm")
}

/// The `survey-collector` binary.
pub fn survey_collector() -> PathBuf {
    binary("survey-collector", "survey-collector")
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds test-support")
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace), else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
}

/// The profile directory the running program was built into
/// (`target/debug`, `target/release`, ...): its executable sits in
/// `deps/` or `examples/` below it.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable");
    let mut dir = exe
        .parent()
        .expect("the executable's directory")
        .to_path_buf();
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.pop();
    }
    dir
}

/// Binary `bin` of package `package`, built by cargo (once per process)
/// when the running program's profile directory lacks it.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let profile = profile_dir();
    let path = profile.join(bin);
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if path.is_file() {
        return path;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace())
        .args(["build", "-p", package, "--bin", bin]);
    if profile.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    if let Some(target) = profile.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cargo build -p {package} --bin {bin} does not run: {e}"));
    assert!(
        status.success() && path.is_file(),
        "cargo build -p {package} --bin {bin} did not build {}",
        path.display()
    );
    path
}
