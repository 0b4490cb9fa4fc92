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

/// The cargo target directory the running program was built in (the
/// parent of [`profile_dir`]), wherever cargo's configuration put it.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map_or(profile.clone(), Path::to_path_buf)
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

/// The workspace members whose sources go into its binaries: every
/// member of the workspace manifest but this crate.
fn product_members() -> Vec<PathBuf> {
    let root = workspace();
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).expect("the workspace manifest");
    let manifest: toml::Table = toml::from_str(&manifest).expect("the workspace manifest parses");
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .expect("[workspace] members");
    members
        .iter()
        .filter_map(|m| m.as_str())
        .map(|m| root.join(m))
        .filter(|dir| *dir != Path::new(env!("CARGO_MANIFEST_DIR")))
        .collect()
}

/// The newest modification time among the workspace's product sources,
/// manifests and lock file.
fn newest_source() -> std::time::SystemTime {
    fn walk(path: &Path, newest: &mut std::time::SystemTime) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if let Ok(modified) = meta.modified() {
            *newest = (*newest).max(modified);
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(path)
        {
            for entry in entries.flatten() {
                walk(&entry.path(), newest);
            }
        }
    }
    let root = workspace();
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    // A member's sources: its manifest, `src/` and data read at build
    // time (the collector's `sql/`), not its tests, benches or examples.
    for member in product_members() {
        for part in ["Cargo.toml", "src", "sql"] {
            walk(&member.join(part), &mut newest);
        }
    }
    walk(&root.join("Cargo.lock"), &mut newest);
    newest
}

/// Binary `bin` of package `package`, in the running program's profile
/// directory.
///
/// A binary newer than every product source is taken as it is: under
/// `cargo test --workspace`, cargo built it, with the whole workspace's
/// features, before any test ran. Otherwise (missing, or older than a
/// source, as after `cargo test -p` of another package) the first call for
/// it in a process runs `cargo build --locked -p <package> --bin <bin>`
/// with that target directory and profile (`$CARGO`, else `cargo` on the
/// `PATH`); cargo serializes concurrent builds.
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
    let fresh = std::fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| modified >= newest_source());
    if fresh {
        built.push(bin.to_string());
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
        .args(["build", "--quiet", "--locked", "-p", package, "--bin", bin])
        .arg("--profile")
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
