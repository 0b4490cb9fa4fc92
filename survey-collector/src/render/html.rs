//! One self-contained HTML page: inline CSS and SVG, no script, font or
//! image from anywhere. A chart per question, each with labelled axes, the
//! rows behind it in a table, and a footnote for suppressed rows.
//!
//! Marks are whole pixels in fixed colours (a colour per chart, a colour per
//! failure reason), so the page reads the same on any screen and a
//! screenshot can be checked against the data. The colours are part of the
//! API (the constants and functions below); sizes are not, and a reader
//! measures them on the page.

use std::fmt::Write as _;

use survey_schema::{ContextBucket, FailureKind};

use super::{cell, footnote, title};
use crate::report::{
    Answer, FailureRate, Fastest, MostLaunched, ReliableHardware, Report, Rows, SlowOrShort,
    Unstable, ViableContext,
};

/// Width of every chart, in CSS pixels.
const CHART_WIDTH: u32 = 960;
/// Left edge of the plot area of bar charts (labels are left of it).
const PLOT_LEFT: u32 = 280;
/// The longest row label drawn left of the plot (longer ones are cut):
/// what fits in [`PLOT_LEFT`] at the page's font.
const LABEL_CHARS: usize = 40;
/// Width of the plot area of bar charts (value labels go right of it).
const PLOT_WIDTH: u32 = 480;
/// Height of one bar; rows are [`ROW_HEIGHT`] apart.
const BAR_HEIGHT: u32 = 16;
/// Distance between bars.
const ROW_HEIGHT: u32 = 24;
/// Side of a legend swatch.
const SWATCH: u32 = 12;
/// Most rows a chart draws (the table below it has them all).
const MAX_ROWS: usize = 25;
/// Most hardware columns the reliability heatmap draws.
const MAX_COLUMNS: usize = 6;

/// Bars of `most_launched`.
pub const LAUNCHES_COLOR: &str = "#4c78a8";
/// Bars of the launch-time p50.
pub const LAUNCH_TIME_COLOR: &str = "#f58518";
/// Bars of the uptime p50.
pub const UPTIME_COLOR: &str = "#b279a2";
/// Bars of exits per success.
pub const EXITS_COLOR: &str = "#e45756";
/// Bars of the decode speed, from its p10 to its p50.
pub const DECODE_COLOR: &str = "#72b7b2";
/// The decode speed's bars up to its p10: the speed 9 in 10 requests
/// answered in full reached.
pub const DECODE_TAIL_COLOR: &str = "#2a7f78";

/// The colour of a failure reason in the stacked bars.
pub fn reason_color(reason: FailureKind) -> &'static str {
    match reason {
        FailureKind::SpawnFailed => "#1f77b4",
        FailureKind::HealthTimeout => "#ff7f0e",
        FailureKind::ExitedBeforeHealthy => "#2ca02c",
        FailureKind::BackendProxyFailed => "#9467bd",
        FailureKind::CapacityRejected => "#8c564b",
        FailureKind::KnownKvCacheCrash => "#e377c2",
        FailureKind::MmprojMissing => "#bcbd22",
        FailureKind::Other => "#7f7f7f",
    }
}

/// Reliability as a colour: red (0) through yellow (0.5) to green (1).
pub fn reliability_color(value: f64) -> String {
    let stops = [
        (0.0, [0xd7, 0x30, 0x27]),
        (0.5, [0xfe, 0xe0, 0x8b]),
        (1.0, [0x1a, 0x98, 0x50]),
    ];
    scale(value, &stops)
}

/// A success rate as a colour: light (0) to dark blue (1).
pub fn success_color(value: f64) -> String {
    let stops = [(0.0, [0xde, 0xeb, 0xf7]), (1.0, [0x08, 0x51, 0x9c])];
    scale(value, &stops)
}

fn scale(value: f64, stops: &[(f64, [u8; 3])]) -> String {
    let v = if value.is_finite() {
        value.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let i = stops
        .windows(2)
        .position(|w| v <= w[1].0)
        .unwrap_or(stops.len() - 2);
    let ((a, ca), (b, cb)) = (stops[i], stops[i + 1]);
    let t = if b > a { (v - a) / (b - a) } else { 0.0 };
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(ca[0], cb[0]),
        mix(ca[1], cb[1]),
        mix(ca[2], cb[2])
    )
}

const CSS: &str = "
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #222;
       margin: 0; background: #fff; }
main { width: 980px; margin: 0 auto; padding: 16px 10px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 2px; }
p.sub { color: #555; margin: 0 0 8px; font-size: 13px; }
p.note { color: #555; font-size: 12px; margin: 4px 0; }
svg { display: block; }
svg text { font-family: inherit; font-size: 12px; fill: #222; }
svg .axis { stroke: #888; stroke-width: 1; }
svg .grid { stroke: #e6e6e6; stroke-width: 1; }
details { margin: 4px 0 0; font-size: 12px; }
table { border-collapse: collapse; margin-top: 4px; }
th, td { padding: 2px 8px; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
";

/// The whole report as one HTML page.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
         <h1>survey report</h1>\n<p class=\"sub\">{}, UTC &middot; {} node process{}{}</p>\n",
        escape(&title(report)),
        escape(&report.options.window()),
        report.nodes,
        if report.nodes == 1 { "" } else { "es" },
        if report.options.min_nodes > 1 {
            format!(
                " &middot; rows backed by fewer than {} node processes are not shown",
                report.options.min_nodes
            )
        } else {
            String::new()
        },
    );
    for answer in &report.answers {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            answer.question.key,
            escape(answer.question.title)
        );
        let chart = match &answer.rows {
            Rows::MostLaunched(rows) => most_launched(rows),
            Rows::FailureRate(rows) => failure_rate(rows),
            Rows::ReliableHardware(rows) => reliable_hardware(rows),
            Rows::ViableContext(rows) => viable_context(rows),
            Rows::Unstable(rows) => unstable(rows),
            Rows::SlowOrShort(rows) => slow_or_short(rows),
            Rows::Fastest(rows) => fastest(rows),
        };
        if answer.rows.is_empty() {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(answer.empty_text()));
        } else {
            out.push_str(&chart);
        }
        if answer.rows.len() > MAX_ROWS {
            let _ = writeln!(
                out,
                "<p class=\"note\">The chart shows the first {MAX_ROWS} of {} rows; the table has them all.</p>",
                answer.rows.len()
            );
        }
        if let Some(note) = footnote(report, answer) {
            let _ = writeln!(out, "<p class=\"note\">{}.</p>", escape(&note));
        }
        out.push_str(&rows_table(answer));
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The rows behind a chart, folded.
fn rows_table(answer: &Answer) -> String {
    if answer.rows.is_empty() {
        return String::new();
    }
    let columns = answer.columns();
    let mut out = String::from("<details><summary>rows</summary>\n<table>\n<tr>");
    for column in columns {
        let _ = write!(out, "<th>{}</th>", escape(column));
    }
    out.push_str("</tr>\n");
    for row in answer.rows.cells() {
        out.push_str("<tr>");
        for (column, value) in columns.iter().zip(row) {
            let _ = write!(out, "<td>{}</td>", escape(&cell(column, value)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n</details>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A name as the tables show it: `-` when absent.
fn name(value: &Option<String>) -> String {
    value.as_deref().unwrap_or("-").to_string()
}

/// A GPU's name as the tables show it: `cpu` when absent.
fn gpu(value: &Option<String>) -> String {
    value.as_deref().unwrap_or("cpu").to_string()
}

/// A row's label: its model, and its GPU where the question has one.
fn label(model: &Option<String>, gpu_name: Option<&Option<String>>) -> String {
    match gpu_name {
        Some(gpu_name) => format!("{} \u{b7} {}", name(model), gpu(gpu_name)),
        None => name(model),
    }
}

/// Breaks `text` at spaces (and always at `\n`) into at most `lines` lines
/// of about `width` characters, the last one cut to fit.
fn wrap(text: &str, width: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for paragraph in text.split('\n') {
        let mut fresh = true;
        for word in paragraph.split(' ') {
            let full = out.len() == lines;
            match out.last_mut() {
                Some(line)
                    if full
                        || (!fresh && line.chars().count() + 1 + word.chars().count() <= width) =>
                {
                    line.push(' ');
                    line.push_str(word);
                }
                _ => out.push(word.to_string()),
            }
            fresh = false;
        }
    }
    for line in &mut out {
        *line = fit(line, width.max(2));
    }
    out
}

/// Cuts a label to fit the label column.
fn fit(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(chars - 1).collect();
        cut.push('\u{2026}');
        cut
    }
}

/// An axis along the bottom of a bar chart's plot area.
struct Axis {
    /// Ticks: position in 0..=1 along the plot, and its text.
    ticks: Vec<(f64, String)>,
    /// What the axis measures.
    title: String,
}

impl Axis {
    /// A linear axis from 0 to `max` with round ticks.
    fn linear(max: f64, title: &str, format: impl Fn(f64) -> String) -> (Axis, f64) {
        let max = if max > 0.0 { max } else { 1.0 };
        let raw = max / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(raw);
        let top = (max / step).ceil() * step;
        let n = (top / step).round() as usize;
        let ticks = (0..=n)
            .map(|i| {
                let v = i as f64 * step;
                (v / top, format(v))
            })
            .collect();
        (
            Axis {
                ticks,
                title: title.to_string(),
            },
            top,
        )
    }

    /// A log axis over `ticks` (value, text), first to last.
    fn log(ticks: &[(f64, &str)], title: &str) -> (Axis, f64, f64) {
        let (lo, hi) = (ticks[0].0.log10(), ticks[ticks.len() - 1].0.log10());
        let axis = Axis {
            ticks: ticks
                .iter()
                .map(|(v, t)| ((v.log10() - lo) / (hi - lo), t.to_string()))
                .collect(),
            title: title.to_string(),
        };
        (axis, lo, hi)
    }
}

/// A horizontal bar chart frame: labels, grid, axis; `marks` draws the
/// bars of row `i` at vertical offset `y`.
fn bar_chart(labels: &[String], axis: &Axis, legend: &str, marks: &str) -> String {
    let rows = labels.len() as u32;
    let legend_height = if legend.is_empty() { 0 } else { 24 };
    let top = 8 + legend_height;
    let plot_height = rows * ROW_HEIGHT;
    let height = top + plot_height + 44;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {CHART_WIDTH} {height}\" role=\"img\">\n"
    );
    if !legend.is_empty() {
        let _ = writeln!(
            svg,
            "<g transform=\"translate({PLOT_LEFT},4)\">{legend}</g>"
        );
    }
    for (position, text) in &axis.ticks {
        let x = PLOT_LEFT + (position * f64::from(PLOT_WIDTH)).round() as u32;
        let _ = writeln!(
            svg,
            "<line class=\"grid\" x1=\"{x}.5\" y1=\"{top}\" x2=\"{x}.5\" y2=\"{}\"/>\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            top + plot_height,
            top + plot_height + 16,
            escape(text)
        );
    }
    let _ = writeln!(
        svg,
        "<line class=\"axis\" x1=\"{PLOT_LEFT}.5\" y1=\"{top}\" x2=\"{PLOT_LEFT}.5\" y2=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        top + plot_height,
        PLOT_LEFT + PLOT_WIDTH / 2,
        top + plot_height + 36,
        escape(&axis.title)
    );
    for (i, text) in labels.iter().enumerate() {
        let y = top + i as u32 * ROW_HEIGHT + ROW_HEIGHT / 2 + 4;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{}</text>",
            PLOT_LEFT - 8,
            escape(&fit(text, LABEL_CHARS))
        );
    }
    let _ = writeln!(svg, "<g transform=\"translate(0,{top})\">\n{marks}</g>");
    svg.push_str("</svg>\n");
    svg
}

/// A bar of `width` pixels in row `i`, with an optional value label.
fn bar(i: usize, left: u32, width: u32, color: &str, value: Option<&str>) -> String {
    let y = i as u32 * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2;
    let mut out = String::new();
    if width > 0 {
        let _ = write!(
            out,
            "<rect x=\"{left}\" y=\"{y}\" width=\"{width}\" height=\"{BAR_HEIGHT}\" fill=\"{color}\"/>"
        );
    }
    if let Some(value) = value {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            left + width + 6,
            y + 12,
            escape(value)
        );
    }
    out.push('\n');
    out
}

/// Pixels along the plot for `fraction` of it.
fn pixels(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * f64::from(PLOT_WIDTH)).round() as u32
}

fn legend(entries: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut x = 0;
    for (color, text) in entries {
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"2\" width=\"{SWATCH}\" height=\"{SWATCH}\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"12\">{}</text>",
            x + SWATCH + 4,
            escape(text)
        );
        x += SWATCH + 12 + 7 * text.chars().count() as u32;
    }
    out
}

fn most_launched(rows: &[MostLaunched]) -> String {
    let rows = &rows[..rows.len().min(MAX_ROWS)];
    let max = rows.iter().map(|r| r.launches as f64).fold(0.0, f64::max);
    let (axis, top) = Axis::linear(max, "launches", |v| format!("{v}"));
    let mut marks = String::new();
    for (i, row) in rows.iter().enumerate() {
        let n = row.launches as f64;
        let nodes = row.nodes;
        marks.push_str(&bar(
            i,
            PLOT_LEFT + 1,
            pixels(n / top),
            LAUNCHES_COLOR,
            Some(&format!("{n} ({nodes} nodes)")),
        ));
    }
    let labels: Vec<String> = rows.iter().map(|r| label(&r.model, None)).collect();
    bar_chart(&labels, &axis, "", &marks)
}

fn failure_rate(rows: &[FailureRate]) -> String {
    let rows = &rows[..rows.len().min(MAX_ROWS)];
    let (axis, _) = Axis::linear(
        1.0,
        "failure rate: failures / completed launches, by reason",
        |v| format!("{:.0}%", v * 100.0),
    );
    let mut present = Vec::new();
    let mut marks = String::new();
    for (i, row) in rows.iter().enumerate() {
        let completed = row.successes as f64 + row.failures as f64;
        let mut left = PLOT_LEFT + 1;
        let mut share = 0.0;
        for reason in FailureKind::ALL {
            let n = row.reasons.get(reason.as_str()).map_or(0.0, |&n| n as f64);
            if n <= 0.0 || completed <= 0.0 {
                continue;
            }
            if !present.contains(reason) {
                present.push(*reason);
            }
            // Segments end at the rounded cumulative share, so they tile.
            let end = pixels(share + n / completed);
            let start = pixels(share);
            share += n / completed;
            marks.push_str(&bar(i, left, end - start, reason_color(*reason), None));
            left += end - start;
        }
        let text = match row.failure_rate {
            Some(rate) => format!("{:.0}% of {completed}", rate * 100.0),
            None => "no completed launch".to_string(),
        };
        marks.push_str(&bar(i, left, 0, "none", Some(&text)));
    }
    present.sort();
    let entries: Vec<(&str, String)> = present
        .iter()
        .map(|r| (reason_color(*r), r.as_str().to_string()))
        .collect();
    let labels: Vec<String> = rows.iter().map(|r| label(&r.model, None)).collect();
    bar_chart(&labels, &axis, &legend(&entries), &marks)
}

/// A heatmap: rows × columns of cells, each drawn by `draw`.
fn heatmap(
    row_labels: &[String],
    column_labels: &[String],
    cell_width: u32,
    cell_height: u32,
    note: &str,
    draw: impl Fn(usize, usize) -> Option<String>,
) -> String {
    let left = PLOT_LEFT;
    let label_lines = column_labels
        .iter()
        .map(|text| wrap(text, (cell_width / 7) as usize, 3).len() as u32)
        .max()
        .unwrap_or(1);
    let top = 12 + 14 * label_lines;
    let width = CHART_WIDTH;
    let height = top + row_labels.len() as u32 * cell_height + 28;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\">\n"
    );
    for (j, text) in column_labels.iter().enumerate() {
        let x = left + j as u32 * cell_width + cell_width / 2;
        let lines = wrap(text, (cell_width / 7) as usize, 3);
        let first = top - 8 - 14 * (lines.len() as u32 - 1);
        for (k, line) in lines.iter().enumerate() {
            let _ = writeln!(
                svg,
                "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                first + 14 * k as u32,
                escape(line)
            );
        }
    }
    for (i, text) in row_labels.iter().enumerate() {
        let y = top + i as u32 * cell_height;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 8,
            y + cell_height / 2 + 4,
            escape(&fit(text, 44))
        );
        for j in 0..column_labels.len() {
            let x = left + j as u32 * cell_width;
            let _ = writeln!(
                svg,
                "<g transform=\"translate({x},{y})\">{}</g>",
                draw(i, j).unwrap_or_else(|| format!(
                    "<rect x=\"1\" y=\"1\" width=\"{}\" height=\"{}\" fill=\"#f2f2f2\"/>",
                    cell_width - 2,
                    cell_height - 2
                ))
            );
        }
    }
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"{}\">{}</text>",
        height - 8,
        escape(note)
    );
    svg.push_str("</svg>\n");
    svg
}

fn reliable_hardware(rows: &[ReliableHardware]) -> String {
    // Hardware columns: the most launched first.
    let mut hardware: Vec<(String, f64)> = Vec::new();
    for row in rows {
        let key = hardware_label(row);
        let n = row.launches as f64;
        match hardware.iter_mut().find(|(k, _)| *k == key) {
            Some((_, total)) => *total += n,
            None => hardware.push((key, n)),
        }
    }
    hardware.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    hardware.truncate(MAX_COLUMNS);
    let columns: Vec<String> = hardware.into_iter().map(|(k, _)| k).collect();
    let mut models: Vec<String> = Vec::new();
    for row in rows {
        let model = name(&row.model);
        if !models.contains(&model) && models.len() < MAX_ROWS {
            models.push(model);
        }
    }
    let (cell_width, cell_height) = (112, 44);
    heatmap(
        &models,
        &columns,
        cell_width,
        cell_height,
        "cell: share of completed launches that neither failed nor later exited unexpectedly; \
         bar: its 95% Wilson interval",
        |i, j| {
            let row = rows
                .iter()
                .find(|row| name(&row.model) == models[i] && hardware_label(row) == columns[j])?;
            let p = row.reliability?;
            let low = row.reliability_low.unwrap_or(p);
            let high = row.reliability_high.unwrap_or(p);
            let span = f64::from(cell_width - 20);
            let x = |v: f64| 10.0 + (v.clamp(0.0, 1.0) * span).round();
            let text_color = if (0.25..0.8).contains(&p) {
                "#222"
            } else {
                "#fff"
            };
            Some(format!(
                "<rect x=\"1\" y=\"1\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"17\" text-anchor=\"middle\" style=\"fill:{text_color}\">{:.2} \
                 [{:.2}, {:.2}]</text>\
                 <line x1=\"{}\" y1=\"31.5\" x2=\"{}\" y2=\"31.5\" stroke=\"{text_color}\" stroke-width=\"3\"/>\
                 <circle cx=\"{}\" cy=\"31.5\" r=\"3.5\" fill=\"{text_color}\"/>",
                cell_width - 2,
                cell_height - 2,
                reliability_color(p),
                cell_width / 2,
                p,
                low,
                high,
                x(low),
                x(high),
                x(p),
            ))
        },
    )
}

fn hardware_label(row: &ReliableHardware) -> String {
    format!(
        "{}\n\u{d7}{} {}",
        gpu(&row.gpu_name),
        row.gpu_count.map_or("-".to_string(), |n| n.to_string()),
        name(&row.backend_device),
    )
}

fn viable_context(rows: &[ViableContext]) -> String {
    let mut groups: Vec<String> = Vec::new();
    for row in rows {
        let key = label(&row.model, Some(&row.gpu_name));
        if !groups.contains(&key) && groups.len() < MAX_ROWS {
            groups.push(key);
        }
    }
    let buckets: Vec<String> = ContextBucket::ALL
        .iter()
        .map(|b| b.as_str().to_string())
        .collect();
    let (cell_width, cell_height) = (100, 36);
    heatmap(
        &groups,
        &buckets,
        cell_width,
        cell_height,
        "cell: successful / completed launches at that context size (tokens); \
         max: the largest context seen loaded",
        |i, j| {
            let row = rows.iter().find(|row| {
                label(&row.model, Some(&row.gpu_name)) == groups[i]
                    && row.context_bucket.as_deref() == Some(buckets[j].as_str())
            })?;
            let successes = row.successes as f64;
            let completed = successes + row.failures as f64;
            let rate = row.success_rate;
            let fill = rate.map_or("#f2f2f2".to_string(), success_color);
            let text_color = if rate.is_some_and(|r| r > 0.55) {
                "#fff"
            } else {
                "#222"
            };
            let max = match row.max_context {
                Some(max) => format!("max {max}"),
                None => String::new(),
            };
            Some(format!(
                "<rect x=\"1\" y=\"1\" width=\"{}\" height=\"{}\" fill=\"{fill}\"/>\
                 <text x=\"{}\" y=\"15\" text-anchor=\"middle\" style=\"fill:{text_color}\">{successes}/{completed}</text>\
                 <text x=\"{}\" y=\"29\" text-anchor=\"middle\" style=\"fill:{text_color};font-size:10px\">{max}</text>",
                cell_width - 2,
                cell_height - 2,
                cell_width / 2,
                cell_width / 2,
            ))
        },
    )
}

fn unstable(rows: &[Unstable]) -> String {
    let rows = &rows[..rows.len().min(MAX_ROWS)];
    let max = rows
        .iter()
        .filter_map(|r| r.exits_per_success)
        .fold(0.0, f64::max);
    let (axis, top) = Axis::linear(max, "unexpected exits per successful launch", |v| {
        format!("{v:.2}")
    });
    let mut marks = String::new();
    for (i, row) in rows.iter().enumerate() {
        let rate = row.exits_per_success;
        let uptime = row
            .uptime_p50_s
            .map_or("-".to_string(), |s| duration(s * 1000.0));
        let text = match rate {
            Some(rate) => format!("{rate:.2}; median uptime {uptime}"),
            None => format!("no successful launch; median uptime {uptime}"),
        };
        marks.push_str(&bar(
            i,
            PLOT_LEFT + 1,
            pixels(rate.unwrap_or(0.0) / top),
            EXITS_COLOR,
            Some(&text),
        ));
    }
    let labels: Vec<String> = rows.iter().map(|r| label(&r.model, None)).collect();
    bar_chart(&labels, &axis, "", &marks)
}

/// Milliseconds as `850 ms`, `12.5 s`, `3.2 min`, `4.0 h`, `2.5 d`.
fn duration(ms: f64) -> String {
    match ms {
        ms if ms < 1_000.0 => format!("{ms:.0} ms"),
        ms if ms < 60_000.0 => format!("{:.1} s", ms / 1_000.0),
        ms if ms < 3_600_000.0 => format!("{:.1} min", ms / 60_000.0),
        ms if ms < 86_400_000.0 => format!("{:.1} h", ms / 3_600_000.0),
        ms => format!("{:.1} d", ms / 86_400_000.0),
    }
}

fn slow_or_short(rows: &[SlowOrShort]) -> String {
    let rows = &rows[..rows.len().min(MAX_ROWS)];
    let labels: Vec<String> = rows
        .iter()
        .map(|r| label(&r.model, Some(&r.gpu_name)))
        .collect();
    // Launch time: p50 as a bar, p90 as a mark, on a log scale.
    let (axis, lo, hi) = Axis::log(
        &[
            (10.0, "10 ms"),
            (100.0, "100 ms"),
            (1_000.0, "1 s"),
            (10_000.0, "10 s"),
            (60_000.0, "1 min"),
            (600_000.0, "10 min"),
            (3_600_000.0, "1 h"),
        ],
        "successful launch time: p50 (bar), p90 (mark); log scale",
    );
    let at = |ms: f64| pixels((ms.max(10.0).log10() - lo) / (hi - lo));
    let mut marks = String::new();
    for (i, row) in rows.iter().enumerate() {
        let (p50, p90) = (row.launch_p50_ms, row.launch_p90_ms);
        let text = match (p50, p90) {
            (Some(a), Some(b)) => format!("p50 {}, p90 {}", duration(a), duration(b)),
            _ => "no successful launch".to_string(),
        };
        let width = p50.map_or(0, at);
        marks.push_str(&bar(i, PLOT_LEFT + 1, width, LAUNCH_TIME_COLOR, None));
        if let Some(p90) = p90 {
            let x = PLOT_LEFT + 1 + at(p90);
            let y = i as u32 * ROW_HEIGHT + 2;
            let _ = write!(
                marks,
                "<rect x=\"{}\" y=\"{y}\" width=\"2\" height=\"{}\" fill=\"#222\"/>",
                x.saturating_sub(1),
                ROW_HEIGHT - 4
            );
        }
        marks.push_str(&bar(
            i,
            PLOT_LEFT + 1 + width.max(p90.map_or(0, at)) + 2,
            0,
            "none",
            Some(&text),
        ));
    }
    let mut out = bar_chart(&labels, &axis, "", &marks);
    // Uptime: p50 of the instances that ended, on a log scale.
    let (axis, lo, hi) = Axis::log(
        &[
            (1.0, "1 s"),
            (10.0, "10 s"),
            (60.0, "1 min"),
            (600.0, "10 min"),
            (3_600.0, "1 h"),
            (21_600.0, "6 h"),
            (86_400.0, "1 d"),
            (604_800.0, "7 d"),
        ],
        "median uptime of ended instances; log scale",
    );
    let at = |s: f64| pixels((s.max(1.0).log10() - lo) / (hi - lo));
    let mut marks = String::new();
    for (i, row) in rows.iter().enumerate() {
        let p50 = row.uptime_p50_s;
        let ended = row.ended;
        let text = match p50 {
            Some(s) => format!("{} ({ended} ended)", duration(s * 1000.0)),
            None => "none ended".to_string(),
        };
        marks.push_str(&bar(
            i,
            PLOT_LEFT + 1,
            p50.map_or(0, at),
            UPTIME_COLOR,
            Some(&text),
        ));
    }
    out.push_str(&bar_chart(&labels, &axis, "", &marks));
    out
}

/// Tokens per second as `42.5 tok/s` (whole from 100 up).
fn speed(tps: f64) -> String {
    format!("{} tok/s", tokens(tps))
}

/// A number of tokens (per second) as `42.5`, whole from 100 up.
fn tokens(n: f64) -> String {
    if n < 100.0 {
        format!("{n:.1}")
    } else {
        format!("{n:.0}")
    }
}

fn fastest(rows: &[Fastest]) -> String {
    let rows = &rows[..rows.len().min(MAX_ROWS)];
    // A row's label: model and GPU (or the device of a node without one);
    // the context bucket goes beside the bar, where no cut hides it.
    let labels: Vec<String> = rows
        .iter()
        .map(|row| {
            let hardware = match &row.gpu_name {
                None => name(&row.backend_device),
                gpu_name => gpu(gpu_name),
            };
            format!("{} \u{b7} {hardware}", name(&row.model))
        })
        .collect();
    // Decode speed on a log scale (a CPU's few tokens a second beside a
    // datacenter GPU's thousands): the bar runs to the p50, its dark part
    // to the p10.
    let (axis, lo, hi) = Axis::log(
        &[
            (1.0, "1"),
            (10.0, "10"),
            (100.0, "100"),
            (1_000.0, "1k"),
            (10_000.0, "10k"),
        ],
        "decode speed of requests answered in full, tokens/s: p10 (dark), p50 (bar's end); log scale",
    );
    let at = |tps: f64| pixels((tps.max(1.0).log10() - lo) / (hi - lo));
    let mut marks = String::new();
    for (i, row) in rows.iter().enumerate() {
        let (p50, p10) = (row.decode_tps_p50, row.decode_tps_p10);
        let whole = p50.map_or(0, at);
        let tail = p10.map_or(0, at).min(whole);
        marks.push_str(&bar(i, PLOT_LEFT + 1, tail, DECODE_TAIL_COLOR, None));
        marks.push_str(&bar(
            i,
            PLOT_LEFT + 1 + tail,
            whole - tail,
            DECODE_COLOR,
            None,
        ));
        let context = name(&row.context_bucket);
        let text = match (p50, p10) {
            (Some(p50), Some(p10)) => format!("{}, p10 {}", speed(p50), tokens(p10)),
            // Answered in full by a backend that reports no timings.
            _ if row.ok > 0 => "no decode timings reported".to_string(),
            _ => "no request answered in full".to_string(),
        };
        let text = format!("{text} \u{b7} context {context}");
        marks.push_str(&bar(i, PLOT_LEFT + 1 + whole, 0, "none", Some(&text)));
    }
    let entries = [
        (
            DECODE_TAIL_COLOR,
            "p10: 9 in 10 requests at least this fast".to_string(),
        ),
        (DECODE_COLOR, "p50".to_string()),
    ];
    bar_chart(&labels, &axis, &legend(&entries), &marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_scales_run_from_end_to_end() {
        assert_eq!(reliability_color(0.0), "#d73027");
        assert_eq!(reliability_color(0.5), "#fee08b");
        assert_eq!(reliability_color(1.0), "#1a9850");
        assert_eq!(reliability_color(f64::NAN), "#d73027");
        assert_eq!(success_color(0.0), "#deebf7");
        assert_eq!(success_color(1.0), "#08519c");
        assert_eq!(success_color(2.0), "#08519c");
    }

    #[test]
    fn axes_have_round_ticks() {
        let (axis, top) = Axis::linear(7.0, "n", |v| format!("{v}"));
        assert_eq!(top, 8.0);
        let texts: Vec<&str> = axis.ticks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["0", "2", "4", "6", "8"]);
        let (axis, _, _) = Axis::log(&[(10.0, "a"), (100.0, "b"), (1000.0, "c")], "t");
        assert_eq!(axis.ticks[1].0, 0.5);
        assert_eq!(duration(850.0), "850 ms");
        assert_eq!(speed(42.26), "42.3 tok/s");
        assert_eq!(speed(1234.4), "1234 tok/s");
        assert_eq!(duration(90_000.0), "1.5 min");
        assert_eq!(fit("abcdef", 4), "abc\u{2026}");
        assert_eq!(
            wrap("NVIDIA GeForce RTX 4090\n\u{d7}1 cuda", 16, 3),
            ["NVIDIA GeForce", "RTX 4090", "\u{d7}1 cuda"]
        );
        assert_eq!(wrap("a b c d", 3, 2), ["a b", "c d"]);
        assert_eq!(escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
