//! Aligned terminal tables, one per question, each titled with it.

use std::fmt::Write as _;

use super::{cell, footnote, title};
use crate::report::{Answer, Cell, Report};

/// The whole report as tables.
pub fn render(report: &Report) -> String {
    let mut out = title(report);
    if report.options.min_launches > 0 {
        let _ = write!(
            out,
            "; launch rows with at least {} launches",
            report.options.min_launches
        );
    }
    if report.options.min_requests > 0 {
        let _ = write!(
            out,
            "; inference rows with at least {} requests",
            report.options.min_requests
        );
    }
    if report.options.min_nodes > 1 {
        let _ = write!(
            out,
            "; rows backed by at least {} node processes",
            report.options.min_nodes
        );
    }
    out.push('\n');
    for answer in &report.answers {
        out.push('\n');
        out.push_str(&table(answer));
        if let Some(note) = footnote(report, answer) {
            let _ = writeln!(out, "({note})");
        }
    }
    out
}

/// One aligned table: the question as title, then a header and the rows.
fn table(answer: &Answer) -> String {
    let columns = answer.columns();
    let values = answer.rows.cells();
    let cells: Vec<Vec<String>> = values
        .iter()
        .map(|row| {
            columns
                .iter()
                .zip(row)
                .map(|(column, value)| cell(column, *value))
                .collect()
        })
        .collect();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| {
            values
                .iter()
                .all(|row| !matches!(row[i], Cell::Text(Some(_))))
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([column.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i].saturating_sub(value.chars().count());
            if numeric[i] && i > 0 {
                out.push_str(&" ".repeat(pad));
                out.push_str(value);
            } else {
                out.push_str(value);
                if i + 1 < widths.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.trim_end().to_string()
    };
    let mut out = format!("{}\n", answer.question.title);
    out.push_str(&line(&mut columns.iter().copied()));
    out.push('\n');
    if cells.is_empty() {
        let _ = writeln!(out, "({})", answer.empty_text());
    }
    for row in &cells {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}
