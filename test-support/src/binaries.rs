//! Where the workspace's binaries are: next to the running test, bench or
//! example, in `target/<profile>/`, built with cargo when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The stand-in `llama-server` (the `llama-server-standin` crate): the one
/// place the tests, benches and demo find their backend binary.
pub fn standin() -> PathBuf {
    binary("llama-server-standin", "llama-server-standin")
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

/// Binary `bin` of package `package`, in the running program's profile
/// directory. The first call for a binary in a process runs `cargo build`
/// for it with that target directory and profile (`$CARGO`, else `cargo`
/// on the `PATH`), so it exists and is as new as its sources whichever
/// packages were built before; a build that is already fresh returns at
/// once, and cargo serializes concurrent builds.
///
/// # Panics
///
/// When the build fails (cargo's output is in the message).
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let profile_dir = profile_dir();
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|b| b == bin) {
        return path;
    }
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(name) => name.to_string(),
        None => panic!("no profile directory above {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace())
        .args(["build", "--quiet", "-p", package, "--bin", bin, "--profile"])
        .arg(&profile)
        .stdin(std::process::Stdio::null());
    if let Some(target) = profile_dir.parent() {
        command.arg("--target-dir").arg(target);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        output.status.success() && path.is_file(),
        "cargo build -p {package} --bin {bin} --profile {profile} did not build {}: {}\n{}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    built.push(bin.to_string());
    path
}
