//! Report: the key questions ([`QUESTIONS`]), answered from the store.
//!
//! The counting rule is `sql/sqlite/queries/counting.sql`; each question is
//! one SQL file named like its JSON key. The JSON form is one object with a key per
//! question, each a list of rows whose fields are the queries' column
//! names.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Statement, ToSql};
use serde_json::Value as Json;

use crate::store::{Store, StoreError, sqlite};

/// One of the key questions.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    /// Its key in the JSON report.
    pub key: &'static str,
    /// The question, as the spec asks it.
    pub title: &'static str,
    /// Why no row may answer it when the window holds none of the data it
    /// reads (opt-in data), said in place of [`NO_DATA`] (and, in the JSON
    /// and CSV forms, on standard error) in that case only.
    pub no_data: Option<&'static str>,
    sql: &'static str,
}

/// What the text forms say of a question no row answers, unless the
/// window holds none of its opt-in data ([`Question::no_data`]).
pub const NO_DATA: &str = "No data in this window.";

/// Why no row may answer `fastest`: its data is opt-in.
pub const NO_INFERENCE_DATA: &str = "No inference data in this window: nodes record it only with \
                                     [telemetry] prompt_shape_metrics = true.";

/// The questions: the spec's six, in its order, then `fastest`, from the
/// opt-in inference metrics.
pub const QUESTIONS: &[Question] = &[
    Question {
        key: "most_launched",
        title: "Which models are most frequently launched?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/most_launched.sql"),
    },
    Question {
        key: "failure_rate",
        title: "Which models have the highest launch failure rate?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/failure_rate.sql"),
    },
    Question {
        key: "reliable_hardware",
        title: "Which hardware/model combinations are most reliable?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/reliable_hardware.sql"),
    },
    Question {
        key: "viable_context",
        title: "Which context sizes are viable for each model/hardware combination?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/viable_context.sql"),
    },
    Question {
        key: "unstable",
        title: "Which models have poor stability after successful launch?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/unstable.sql"),
    },
    Question {
        key: "slow_or_short",
        title: "Which model/hardware combinations produce long launch times or short uptimes?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/slow_or_short.sql"),
    },
    Question {
        key: "fastest",
        title: "Which model/hardware combinations serve fastest, at which context sizes?",
        no_data: Some(NO_INFERENCE_DATA),
        sql: include_str!("../sql/sqlite/queries/fastest.sql"),
    },
];

const COUNTING: &str = include_str!("../sql/sqlite/queries/counting.sql");

/// A UTC calendar day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(pub i64);

impl Day {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Day, String> {
        let bad = || format!("expected a date as YYYY-MM-DD (UTC), got {text:?}");
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad());
        }
        let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if !(1..=days_in_month).contains(&day) {
            return Err(bad());
        }
        Ok(Day(days_from_civil(year, month, day)))
    }

    /// `YYYY-MM-DD`.
    pub fn to_date(self) -> String {
        let (y, m, d) = civil_from_days(self.0);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What to report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// First day, inclusive (default: the beginning).
    pub since: Option<Day>,
    /// Last day, exclusive (default: no end).
    pub until: Option<Day>,
    /// Rows backed by fewer launches are left out (default 0: none); not
    /// in `fastest`, which counts requests.
    pub min_launches: u64,
    /// `fastest` rows backed by fewer inference requests are left out
    /// (default 0: none).
    pub min_requests: u64,
    /// Rows backed by fewer distinct node processes are suppressed and only
    /// counted (default 1: none), so a published report cannot single out
    /// one person's rare setup.
    pub min_nodes: u64,
}

impl Default for ReportOptions {
    fn default() -> ReportOptions {
        ReportOptions {
            since: None,
            until: None,
            min_launches: 0,
            min_requests: 0,
            min_nodes: 1,
        }
    }
}

impl ReportOptions {
    /// The window in words: `2026-11-01 to 2026-11-28 (exclusive)`.
    pub fn window(&self) -> String {
        format!(
            "{} to {}",
            self.since.map_or("the beginning".to_string(), Day::to_date),
            self.until
                .map(|d| format!("{} (exclusive)", d.to_date()))
                .unwrap_or_else(|| "now".to_string()),
        )
    }
}

/// The rows answering one question.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The question.
    pub question: Question,
    /// Column names: the JSON field names.
    pub columns: Vec<String>,
    /// Rows, one value per column.
    pub rows: Vec<Vec<Json>>,
    /// Rows left out for being backed by fewer than `min_nodes` nodes.
    pub suppressed: u64,
    /// The window holds none of the opt-in data the question reads: its
    /// [`Question::no_data`] says why there is no row.
    pub no_source_data: bool,
}

impl Answer {
    /// What the text forms say when no row answers it: why, when the
    /// window holds none of its opt-in data, else [`NO_DATA`].
    pub fn empty_text(&self) -> &'static str {
        self.question
            .no_data
            .filter(|_| self.no_source_data)
            .unwrap_or(NO_DATA)
    }
}

impl PartialEq for Question {
    fn eq(&self, other: &Question) -> bool {
        self.key == other.key
    }
}

impl Answer {
    /// The value of `column` in `row`.
    pub fn get<'a>(&self, row: &'a [Json], column: &str) -> &'a Json {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| row.get(i))
            .unwrap_or(&Json::Null)
    }

    /// Leaves out the rows backed by fewer than `min_nodes` node processes,
    /// counting them.
    fn suppress(&mut self, min_nodes: u64) {
        let Some(nodes) = self.columns.iter().position(|c| c == "nodes") else {
            return;
        };
        let before = self.rows.len();
        self.rows
            .retain(|row| row[nodes].as_u64().unwrap_or(0) >= min_nodes);
        self.suppressed = (before - self.rows.len()) as u64;
    }

    /// The rows as JSON objects.
    pub fn to_json(&self) -> Json {
        Json::Array(
            self.rows
                .iter()
                .map(|row| {
                    Json::Object(
                        self.columns
                            .iter()
                            .cloned()
                            .zip(row.iter().cloned())
                            .collect(),
                    )
                })
                .collect(),
        )
    }
}

/// The answers to the questions.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The options it was made with.
    pub options: ReportOptions,
    /// Distinct node processes with any count in the window (launches,
    /// ends or inference requests).
    pub nodes: u64,
    /// One answer per question, in [`QUESTIONS`] order.
    pub answers: Vec<Answer>,
}

impl Report {
    /// Runs the counting rule and the questions on `store`.
    pub fn build(store: &Store, options: ReportOptions) -> Result<Report, StoreError> {
        let conn = store.connection();
        let since = options.since.map_or(i64::MIN, |d| d.0);
        let until = options.until.map_or(i64::MAX, |d| d.0);
        let min_launches = i64::try_from(options.min_launches).unwrap_or(i64::MAX);
        let min_requests = i64::try_from(options.min_requests).unwrap_or(i64::MAX);
        let params: [(&str, &dyn ToSql); 4] = [
            (":since", &since),
            (":until", &until),
            (":min_launches", &min_launches),
            (":min_requests", &min_requests),
        ];
        let failed = |what: &str| sqlite(format!("report: {what}"));
        // One snapshot for the whole report, while serve may be writing.
        conn.execute_batch("BEGIN").map_err(failed("snapshot"))?;
        let report = Report::answers(conn, options, &params);
        let _ = conn.execute_batch("COMMIT");
        report
    }

    fn answers(
        conn: &Connection,
        options: ReportOptions,
        params: &[(&str, &dyn ToSql)],
    ) -> Result<Report, StoreError> {
        let failed = |what: &str| sqlite(format!("report: {what}"));
        for statement in statements(COUNTING) {
            let mut stmt = conn.prepare(statement).map_err(failed("counting rule"))?;
            let bound = bind(&stmt, params);
            stmt.execute(&bound[..]).map_err(failed("counting rule"))?;
        }
        let nodes: i64 = conn
            .query_row("SELECT count(DISTINCT Node) FROM lifecycle", [], |row| {
                row.get(0)
            })
            .map_err(failed("nodes"))?;
        // The opt-in inference data: any request counted in the window.
        let inference: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM lifecycle WHERE requests > 0)",
                [],
                |row| row.get(0),
            )
            .map_err(failed("inference data"))?;
        let mut answers = Vec::with_capacity(QUESTIONS.len());
        for question in QUESTIONS {
            let mut answer = answer(conn, *question, params).map_err(failed(question.key))?;
            answer.no_source_data = question.no_data.is_some() && !inference;
            answer.suppress(options.min_nodes);
            answers.push(answer);
        }
        Ok(Report {
            options,
            nodes: nodes.max(0) as u64,
            answers,
        })
    }

    /// The answer to the question with JSON key `key`.
    pub fn answer(&self, key: &str) -> Option<&Answer> {
        self.answers.iter().find(|a| a.question.key == key)
    }

    /// Keeps only the answer to the question with JSON key `key`.
    pub fn only(mut self, key: &str) -> Report {
        self.answers.retain(|a| a.question.key == key);
        self
    }

    /// Rows suppressed by `min_nodes`, over all answers.
    pub fn suppressed(&self) -> u64 {
        self.answers.iter().map(|a| a.suppressed).sum()
    }

    /// The JSON form as a value: one object with a key per question, each
    /// a list of rows.
    pub fn to_json(&self) -> Json {
        Json::Object(
            self.answers
                .iter()
                .map(|a| (a.question.key.to_string(), a.to_json()))
                .collect(),
        )
    }
}

/// The statements of a SQL file, split on `;` at line ends.
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(";\n").map(str::trim).filter(|s| {
        s.lines()
            .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--"))
    })
}

/// The parameters among `all` that `stmt` uses.
fn bind<'a>(
    stmt: &Statement<'_>,
    all: &[(&'a str, &'a dyn ToSql)],
) -> Vec<(&'a str, &'a dyn ToSql)> {
    all.iter()
        .filter(|(name, _)| matches!(stmt.parameter_index(name), Ok(Some(_))))
        .copied()
        .collect()
}

fn answer(
    conn: &Connection,
    question: Question,
    params: &[(&str, &dyn ToSql)],
) -> rusqlite::Result<Answer> {
    let mut stmt = conn.prepare(question.sql)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let bound = bind(&stmt, params);
    let mut rows = Vec::new();
    let mut query = stmt.query(&bound[..])?;
    while let Some(row) = query.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            values.push(json_value(column, row.get_ref(i)?));
        }
        rows.push(values);
    }
    Ok(Answer {
        question,
        columns,
        rows,
        suppressed: 0,
        no_source_data: false,
    })
}

fn json_value(column: &str, value: ValueRef<'_>) -> Json {
    match value {
        ValueRef::Null => Json::Null,
        ValueRef::Integer(i) => Json::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        ValueRef::Text(t) => {
            let text = String::from_utf8_lossy(t);
            if column == "reasons" {
                serde_json::from_str(&text).unwrap_or(Json::Null)
            } else {
                Json::String(text.into_owned())
            }
        }
        ValueRef::Blob(_) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_strictly_and_round_trip() {
        assert_eq!(Day::parse("1970-01-01"), Ok(Day(0)));
        assert_eq!(Day::parse("1970-01-02"), Ok(Day(1)));
        assert_eq!(Day::parse("2000-03-01").unwrap().0, 11_017);
        assert_eq!(Day::parse("2024-02-29").unwrap().to_date(), "2024-02-29");
        for day in [-1000, 0, 19_000, 20_454, 100_000] {
            assert_eq!(Day::parse(&Day(day).to_date()), Ok(Day(day)));
        }
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-1",
            "26-11-28",
            "2026/11/28",
            "2026-11-28T00:00",
            "",
            "２０２６-11-28",
        ] {
            let err = Day::parse(bad).unwrap_err();
            assert!(err.contains("YYYY-MM-DD"), "{bad}: {err}");
        }
    }

    #[test]
    fn sql_files_split_into_statements() {
        let counting: Vec<_> = statements(COUNTING).collect();
        assert_eq!(counting.len(), 7, "{counting:#?}");
        for question in QUESTIONS {
            assert_eq!(statements(question.sql).count(), 1, "{}", question.key);
        }
    }
}
