//! The report's forms: aligned tables, JSON, CSV and a self-contained HTML
//! page with a chart per question. Every form shows the same rows, with
//! rows backed by too few nodes left out and counted in a footnote.

pub mod csv;
pub mod html;
pub mod json;
pub mod table;

use crate::report::{Answer, Cell, Report};

/// The report's heading: window and node processes.
pub(crate) fn title(report: &Report) -> String {
    format!(
        "survey report: {}, UTC; {} node process{}",
        report.options.window(),
        report.nodes,
        if report.nodes == 1 { "" } else { "es" }
    )
}

/// The footnote of an answer with suppressed rows, if any.
pub(crate) fn footnote(report: &Report, answer: &Answer) -> Option<String> {
    (answer.suppressed > 0).then(|| {
        format!(
            "{} row{} backed by fewer than {} node processes not shown",
            answer.suppressed,
            if answer.suppressed == 1 { "" } else { "s" },
            report.options.min_nodes
        )
    })
}

/// A value as text: `cpu` for a missing GPU name, `-` for other missing
/// values, rates with 3 decimals, speeds (`_tps_`) with 1, times whole,
/// reasons as `reason=n`.
pub(crate) fn cell(column: &str, value: Cell<'_>) -> String {
    match value {
        Cell::Text(None) | Cell::Integer(None) | Cell::Real(None) if column == "gpu_name" => {
            "cpu".to_string()
        }
        Cell::Text(None) | Cell::Integer(None) | Cell::Real(None) => "-".to_string(),
        Cell::Text(Some(s)) => s.to_string(),
        Cell::Integer(Some(n)) => n.to_string(),
        Cell::Real(Some(f)) => {
            if column.ends_with("_ms") || column.ends_with("_s") {
                format!("{f:.0}")
            } else if column.contains("_tps_") {
                format!("{f:.1}")
            } else {
                format!("{f:.3}")
            }
        }
        Cell::Reasons(reasons) => reasons
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}
