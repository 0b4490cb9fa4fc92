//! Report: the key questions ([`QUESTIONS`]), answered from the store.
//!
//! The counting rule is `sql/sqlite/queries/counting.sql`; each question is
//! one SQL file named like its JSON key, and its rows are one struct
//! ([`MostLaunched`], [`FailureRate`], [`ReliableHardware`],
//! [`ViableContext`], [`Unstable`], [`SlowOrShort`], [`Fastest`]) whose
//! fields are the query's columns, in order. A query whose columns are not
//! its struct's fields, or a value of the wrong type, is an error, never a
//! default. The JSON form is one object with a key per question, each a
//! list of rows whose fields are those names.

use std::collections::BTreeMap;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Statement, ToSql};
use serde::Serialize;
use serde::ser::Serializer;
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
    read: fn(&mut rusqlite::Rows<'_>) -> rusqlite::Result<Rows>,
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
        read: |rows| Ok(Rows::MostLaunched(read(rows)?)),
    },
    Question {
        key: "failure_rate",
        title: "Which models have the highest launch failure rate?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/failure_rate.sql"),
        read: |rows| Ok(Rows::FailureRate(read(rows)?)),
    },
    Question {
        key: "reliable_hardware",
        title: "Which hardware/model combinations are most reliable?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/reliable_hardware.sql"),
        read: |rows| Ok(Rows::ReliableHardware(read(rows)?)),
    },
    Question {
        key: "viable_context",
        title: "Which context sizes are viable for each model/hardware combination?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/viable_context.sql"),
        read: |rows| Ok(Rows::ViableContext(read(rows)?)),
    },
    Question {
        key: "unstable",
        title: "Which models have poor stability after successful launch?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/unstable.sql"),
        read: |rows| Ok(Rows::Unstable(read(rows)?)),
    },
    Question {
        key: "slow_or_short",
        title: "Which model/hardware combinations produce long launch times or short uptimes?",
        no_data: None,
        sql: include_str!("../sql/sqlite/queries/slow_or_short.sql"),
        read: |rows| Ok(Rows::SlowOrShort(read(rows)?)),
    },
    Question {
        key: "fastest",
        title: "Which model/hardware combinations serve fastest, at which context sizes?",
        no_data: Some(NO_INFERENCE_DATA),
        sql: include_str!("../sql/sqlite/queries/fastest.sql"),
        read: |rows| Ok(Rows::Fastest(read(rows)?)),
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
    /// The rows, typed by question.
    pub rows: Rows,
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

    /// Its columns, in order: the JSON field names.
    pub fn columns(&self) -> &'static [&'static str] {
        self.rows.columns()
    }

    /// The rows as JSON objects.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(&self.rows).unwrap_or(Json::Null)
    }
}

impl PartialEq for Question {
    fn eq(&self, other: &Question) -> bool {
        self.key == other.key
    }
}

/// One question's rows, one variant per question.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// `most_launched`.
    MostLaunched(Vec<MostLaunched>),
    /// `failure_rate`.
    FailureRate(Vec<FailureRate>),
    /// `reliable_hardware`.
    ReliableHardware(Vec<ReliableHardware>),
    /// `viable_context`.
    ViableContext(Vec<ViableContext>),
    /// `unstable`.
    Unstable(Vec<Unstable>),
    /// `slow_or_short`.
    SlowOrShort(Vec<SlowOrShort>),
    /// `fastest`.
    Fastest(Vec<Fastest>),
}

/// Runs `$body` with `$rows` bound to the variant's vector, whatever the
/// variant.
macro_rules! each_rows {
    ($value:expr, $rows:ident => $body:expr) => {
        match $value {
            Rows::MostLaunched($rows) => $body,
            Rows::FailureRate($rows) => $body,
            Rows::ReliableHardware($rows) => $body,
            Rows::ViableContext($rows) => $body,
            Rows::Unstable($rows) => $body,
            Rows::SlowOrShort($rows) => $body,
            Rows::Fastest($rows) => $body,
        }
    };
}

impl Rows {
    /// How many rows.
    pub fn len(&self) -> usize {
        each_rows!(self, rows => rows.len())
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns of the question's rows, in order.
    pub fn columns(&self) -> &'static [&'static str] {
        fn of<T: Row>(_: &[T]) -> &'static [&'static str] {
            T::COLUMNS
        }
        each_rows!(self, rows => of(rows))
    }

    /// Every row's values, in column order, for the forms that show any
    /// question the same way.
    pub(crate) fn cells(&self) -> Vec<Vec<Cell<'_>>> {
        each_rows!(self, rows => rows.iter().map(Row::cells).collect())
    }

    /// Leaves out the rows backed by fewer than `min_nodes` node
    /// processes; returns how many.
    fn suppress(&mut self, min_nodes: u64) -> u64 {
        each_rows!(self, rows => {
            let before = rows.len();
            rows.retain(|row| row.nodes() >= min_nodes);
            (before - rows.len()) as u64
        })
    }
}

impl Serialize for Rows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        each_rows!(self, rows => rows.serialize(serializer))
    }
}

/// A value of a row, as the generic forms (table, CSV, the HTML rows
/// table) show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    /// A name; `None` where the attribute was absent.
    Text(Option<&'a str>),
    /// A count or another whole number.
    Integer(Option<i64>),
    /// A rate, percentile or speed; `None` without data.
    Real(Option<f64>),
    /// Failures by reason.
    Reasons(&'a Reasons),
}

/// Failures by reason (`failure_rate`'s `reasons`): the reasons present,
/// each with its count.
pub type Reasons = BTreeMap<String, u64>;

/// A question's row type: filled from its query's row by column name.
trait Row: Serialize + Sized {
    /// The query's columns, in order: the fields.
    const COLUMNS: &'static [&'static str];
    /// Reads the row, each column by name and strictly typed.
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
    /// The values, in column order.
    fn cells(&self) -> Vec<Cell<'_>>;
    /// The distinct node processes behind the row.
    fn nodes(&self) -> u64;
}

/// A field type of a row: read strictly from its column.
trait Field: Sized {
    fn read(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<Self>;
    fn cell(&self) -> Cell<'_>;
}

/// The index of `column`, or an error naming it.
fn index(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<usize> {
    row.as_ref().column_index(column)
}

fn wrong_type(i: usize, column: &str, value: ValueRef<'_>) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(i, column.to_string(), value.data_type())
}

impl Field for Option<String> {
    fn read(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<Self> {
        let i = index(row, column)?;
        match row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(text) => Ok(Some(String::from_utf8_lossy(text).into_owned())),
            other => Err(wrong_type(i, column, other)),
        }
    }

    fn cell(&self) -> Cell<'_> {
        Cell::Text(self.as_deref())
    }
}

impl Field for Option<i64> {
    fn read(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<Self> {
        let i = index(row, column)?;
        match row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(n) => Ok(Some(n)),
            other => Err(wrong_type(i, column, other)),
        }
    }

    fn cell(&self) -> Cell<'_> {
        Cell::Integer(*self)
    }
}

impl Field for u64 {
    fn read(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<Self> {
        let i = index(row, column)?;
        match row.get_ref(i)? {
            ValueRef::Integer(n) => {
                u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, n))
            }
            other => Err(wrong_type(i, column, other)),
        }
    }

    fn cell(&self) -> Cell<'_> {
        Cell::Integer(i64::try_from(*self).ok())
    }
}

impl Field for Option<u64> {
    fn read(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<Self> {
        let i = index(row, column)?;
        match row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            _ => u64::read(row, column).map(Some),
        }
    }

    fn cell(&self) -> Cell<'_> {
        Cell::Integer(self.and_then(|n| i64::try_from(n).ok()))
    }
}

impl Field for Option<f64> {
    /// A real, or null; a value that is not finite is null, as in JSON.
    fn read(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<Self> {
        let i = index(row, column)?;
        match row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Real(f) => Ok(Some(f).filter(|f| f.is_finite())),
            other => Err(wrong_type(i, column, other)),
        }
    }

    fn cell(&self) -> Cell<'_> {
        Cell::Real(*self)
    }
}

impl Field for Reasons {
    /// A JSON object of counts by reason.
    fn read(row: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<Self> {
        let i = index(row, column)?;
        match row.get_ref(i)? {
            ValueRef::Text(text) => serde_json::from_slice(text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            }),
            other => Err(wrong_type(i, column, other)),
        }
    }

    fn cell(&self) -> Cell<'_> {
        Cell::Reasons(self)
    }
}

/// Declares a question's row struct, its columns and how it is read.
macro_rules! row {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$field_doc:meta])* $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name {
            $( $(#[$field_doc])* pub $field: $ty, )*
        }

        impl Row for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<$name> {
                Ok($name { $( $field: Field::read(row, stringify!($field))?, )* })
            }

            fn cells(&self) -> Vec<Cell<'_>> {
                vec![$( Field::cell(&self.$field) ),*]
            }

            fn nodes(&self) -> u64 {
                self.nodes
            }
        }
    };
}

row! {
    /// A row of `most_launched`: launches of a model.
    MostLaunched {
        /// The model (`None`: not reported).
        model: Option<String>,
        /// Launches attempted.
        launches: u64,
        /// Distinct node processes behind the row.
        nodes: u64,
    }
}

row! {
    /// A row of `failure_rate`: a model's launch outcomes.
    FailureRate {
        /// The model.
        model: Option<String>,
        /// Launches attempted.
        launches: u64,
        /// Successful launches.
        successes: u64,
        /// Failed launches.
        failures: u64,
        /// Failures per completed launch (successes + failures); `None`
        /// without a completed launch.
        failure_rate: Option<f64>,
        /// Failures by reason.
        reasons: Reasons,
        /// Distinct node processes behind the row.
        nodes: u64,
    }
}

row! {
    /// A row of `reliable_hardware`: a model on one kind of hardware.
    ReliableHardware {
        /// The model.
        model: Option<String>,
        /// The GPU's name (`None`: no GPU).
        gpu_name: Option<String>,
        /// The backend device (`cuda`, `metal`, `cpu`, ...).
        backend_device: Option<String>,
        /// GPUs used.
        gpu_count: Option<i64>,
        /// Launches attempted.
        launches: u64,
        /// Successful launches.
        successes: u64,
        /// Failed launches.
        failures: u64,
        /// Unexpected exits after a successful launch.
        unexpected_exits: u64,
        /// Share of completed launches that neither failed nor later
        /// exited unexpectedly.
        reliability: Option<f64>,
        /// Low end of its 95% Wilson interval (the ranking).
        reliability_low: Option<f64>,
        /// High end of its 95% Wilson interval.
        reliability_high: Option<f64>,
        /// Distinct node processes behind the row.
        nodes: u64,
    }
}

row! {
    /// A row of `viable_context`: a model on a GPU at one context size.
    ViableContext {
        /// The model.
        model: Option<String>,
        /// The GPU's name (`None`: no GPU).
        gpu_name: Option<String>,
        /// The context bucket.
        context_bucket: Option<String>,
        /// Launches attempted.
        launches: u64,
        /// Successful launches.
        successes: u64,
        /// Failed launches.
        failures: u64,
        /// Successes per completed launch.
        success_rate: Option<f64>,
        /// The largest exact context seen loaded.
        max_context: Option<u64>,
        /// Distinct node processes behind the row.
        nodes: u64,
    }
}

row! {
    /// A row of `unstable`: a model's stability after launch.
    Unstable {
        /// The model.
        model: Option<String>,
        /// Launches attempted.
        launches: u64,
        /// Successful launches.
        successes: u64,
        /// Unexpected exits.
        unexpected_exits: u64,
        /// Unexpected exits per successful launch.
        exits_per_success: Option<f64>,
        /// Median uptime of the instances that ended, in s.
        uptime_p50_s: Option<f64>,
        /// Distinct node processes behind the row.
        nodes: u64,
    }
}

row! {
    /// A row of `slow_or_short`: a model on a GPU, its launch times and
    /// uptimes.
    SlowOrShort {
        /// The model.
        model: Option<String>,
        /// The GPU's name (`None`: no GPU).
        gpu_name: Option<String>,
        /// Launches attempted.
        launches: u64,
        /// Median time of a successful launch, in ms.
        launch_p50_ms: Option<f64>,
        /// 90th percentile time of a successful launch, in ms.
        launch_p90_ms: Option<f64>,
        /// Instances that ended (unloads and unexpected exits).
        ended: u64,
        /// Median uptime of the instances that ended, in s.
        uptime_p50_s: Option<f64>,
        /// Distinct node processes behind the row.
        nodes: u64,
    }
}

row! {
    /// A row of `fastest`: a model on one kind of hardware at one context
    /// size, its inference speed.
    Fastest {
        /// The model.
        model: Option<String>,
        /// The GPU's name (`None`: no GPU).
        gpu_name: Option<String>,
        /// The backend device.
        backend_device: Option<String>,
        /// The context bucket.
        context_bucket: Option<String>,
        /// Requests, of every outcome.
        requests: u64,
        /// Requests answered in full.
        ok: u64,
        /// Median decode speed, tokens/s.
        decode_tps_p50: Option<f64>,
        /// 10th percentile decode speed (the slow tail), tokens/s.
        decode_tps_p10: Option<f64>,
        /// Median prompt processing speed, tokens/s.
        prefill_tps_p50: Option<f64>,
        /// Median time to first token of streamed answers, ms.
        ttft_p50_ms: Option<f64>,
        /// 90th percentile time to first token, ms.
        ttft_p90_ms: Option<f64>,
        /// Distinct node processes behind the row.
        nodes: u64,
    }
}

/// Reads every row of a question's query, after checking that its columns
/// are the row type's fields.
fn read<T: Row>(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Vec<T>> {
    if let Some(stmt) = rows.as_ref() {
        let found = stmt.column_names();
        if found != T::COLUMNS {
            return Err(rusqlite::Error::InvalidColumnName(format!(
                "the query's columns {found:?} are not the row's fields {:?}",
                T::COLUMNS
            )));
        }
    }
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(T::read(row)?);
    }
    Ok(out)
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
            answer.suppressed = answer.rows.suppress(options.min_nodes);
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
    let bound = bind(&stmt, params);
    let mut query = stmt.query(&bound[..])?;
    let rows = (question.read)(&mut query)?;
    Ok(Answer {
        question,
        rows,
        suppressed: 0,
        no_source_data: false,
    })
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

    /// Reads the rows of `sql` as `T`.
    fn rows_of<T: Row>(sql: &str) -> rusqlite::Result<Vec<T>> {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        read(&mut rows)
    }

    #[test]
    fn rows_are_read_by_column_strictly() {
        let rows: Vec<MostLaunched> =
            rows_of("SELECT 'm' AS model, 2 AS launches, 1 AS nodes").unwrap();
        assert_eq!(
            rows,
            [MostLaunched {
                model: Some("m".into()),
                launches: 2,
                nodes: 1
            }]
        );
        assert_eq!(
            serde_json::to_string(&rows).unwrap(),
            r#"[{"model":"m","launches":2,"nodes":1}]"#
        );
        // A missing, extra, misspelled or reordered column is an error.
        for sql in [
            "SELECT 'm' AS model, 2 AS launches",
            "SELECT 'm' AS model, 2 AS launches, 1 AS nodes, 3 AS more",
            "SELECT 'm' AS model, 2 AS launchs, 1 AS nodes",
            "SELECT 2 AS launches, 'm' AS model, 1 AS nodes",
        ] {
            let error = rows_of::<MostLaunched>(sql).unwrap_err();
            assert!(
                matches!(error, rusqlite::Error::InvalidColumnName(_)),
                "{sql}: {error}"
            );
        }
        // So is a value of the wrong type, where a default would hide it.
        for sql in [
            "SELECT 'm' AS model, 2.5 AS launches, 1 AS nodes",
            "SELECT 'm' AS model, NULL AS launches, 1 AS nodes",
            "SELECT 'm' AS model, '2' AS launches, 1 AS nodes",
            "SELECT 7 AS model, 2 AS launches, 1 AS nodes",
        ] {
            let error = rows_of::<MostLaunched>(sql).unwrap_err();
            assert!(
                matches!(error, rusqlite::Error::InvalidColumnType(..)),
                "{sql}: {error}"
            );
        }
        assert!(
            rows_of::<MostLaunched>("SELECT 'm' AS model, -1 AS launches, 1 AS nodes").is_err()
        );
        // A whole number where a rate is expected names its column.
        let error = rows_of::<Unstable>(
            "SELECT NULL AS model, 1 AS launches, 0 AS successes, 0 AS unexpected_exits, \
             NULL AS exits_per_success, 1 AS uptime_p50_s, 1 AS nodes",
        )
        .unwrap_err();
        assert!(error.to_string().contains("uptime_p50_s"), "{error}");
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
