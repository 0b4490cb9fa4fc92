//! Runs the fleet: node processes, a few at a time, each exporting to the
//! collector; gathers what each says really happened.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::node::Launch;

/// The shape of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fleet {
    /// Node processes.
    pub nodes: usize,
    /// Launches per node.
    pub launches: usize,
    /// Seed of the ground truth draws.
    pub seed: u64,
    /// Node processes running at once.
    pub parallel: usize,
}

/// Runs every node of `fleet` as a process of `program` (this binary's
/// `node` subcommand) exporting to `endpoint`. Returns every launch, by
/// node.
pub fn run(program: &Path, endpoint: &str, fleet: Fleet) -> Result<Vec<Launch>, String> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..fleet.parallel.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= fleet.nodes {
                        break;
                    }
                    let result = run_node(program, endpoint, fleet, index);
                    results.lock().expect("results").push((index, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(index, _)| *index);
    let mut launches = Vec::new();
    for (_, result) in results {
        launches.extend(result?);
    }
    Ok(launches)
}

fn run_node(
    program: &Path,
    endpoint: &str,
    fleet: Fleet,
    index: usize,
) -> Result<Vec<Launch>, String> {
    let output = Command::new(program)
        .args(["node", "--endpoint", endpoint])
        .args(["--seed", &fleet.seed.to_string()])
        .args(["--index", &index.to_string()])
        .args(["--launches", &fleet.launches.to_string()])
        .output()
        .map_err(|e| format!("cannot start node {index}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "node {index} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("node {index} said something unreadable: {e}"))
}
