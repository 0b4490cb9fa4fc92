//! What the benches share: a model and an error for instrumented functions,
//! and criterion's estimates of the current run read back for the ratios
//! the benches print.

use std::path::PathBuf;

use crate::binaries;

/// A model a bench launches: a Qwen3 Q4_K_M at 8192 tokens.
#[derive(Debug, Clone)]
pub struct BenchModel {
    /// The instance key.
    pub slot: u64,
    /// The model file.
    pub path: String,
}

impl BenchModel {
    /// The model in `slot`, from the file at `path`.
    pub fn new(slot: u64, path: impl Into<String>) -> BenchModel {
        BenchModel {
            slot,
            path: path.into(),
        }
    }
}

impl survey::SurveyModel for BenchModel {
    fn survey_facts(&self) -> survey::ModelFacts {
        survey::ModelFacts::new(self.slot, self.path.as_str())
            .architecture("qwen3")
            .quantization("Q4_K_M")
            .context_length(8192)
            .backend("llama.cpp")
    }
}

/// The one way a bench launch fails.
#[derive(Debug, survey::FailureReason)]
pub enum BenchError {
    /// `other`.
    #[survey(reason = "other")]
    Other,
}

/// Criterion's output directory, found as criterion finds it:
/// `CRITERION_HOME`, else `criterion/` in the cargo target directory.
pub fn criterion_home() -> PathBuf {
    match std::env::var_os("CRITERION_HOME") {
        Some(home) => PathBuf::from(home),
        None => binaries::target_dir().join("criterion"),
    }
}

/// Criterion's estimates of benchmark `group`/`id` in this run.
fn estimates(group: &str, id: &str) -> Option<serde_json::Value> {
    let path = criterion_home()
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Mean time of one iteration of `group`/`id` in this run, in ns.
pub fn mean_ns(group: &str, id: &str) -> Option<f64> {
    estimates(group, id)?["mean"]["point_estimate"].as_f64()
}

/// Time of one iteration of `group`/`id` in this run, in ns: the slope
/// criterion prints as `time`, else the mean.
pub fn time_ns(group: &str, id: &str) -> Option<f64> {
    let json = estimates(group, id)?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}
