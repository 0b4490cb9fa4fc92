//! SQL functions the report's queries use that SQLite's bundled build
//! lacks:
//!
//! - `sqrt(x)`, for the Wilson interval;
//! - `bucket_delta_sum(end, start)`, an aggregate: the bucket counts of a
//!   window, added up over streams, where `end` and `start` are a stream's
//!   bucket counts (JSON arrays) at the window's end and start (`start`
//!   `NULL` for none);
//! - `bucket_delta_sums(group, end, start)`, an aggregate: the same,
//!   added up per `group` (a text), as one JSON object from each group to
//!   its bucket counts: a GROUP BY that sorts nothing, for many rows and
//!   few groups;
//! - `histogram_quantile(q, metric, buckets)`, an aggregate: the
//!   `q`-quantile of the observations in `buckets` (JSON arrays, added up),
//!   with `metric`'s bucket bounds from survey's schema, interpolated within
//!   the bucket that holds it.

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::{Connection, Result};
use survey_schema as schema;

use crate::keyed_hash::KeyedMap;

/// Registers the functions on `conn`.
pub fn register(conn: &Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("sqrt", 1, flags, |ctx| {
        let x: Option<f64> = ctx.get(0)?;
        Ok(x.filter(|x| *x >= 0.0).map(f64::sqrt))
    })?;
    conn.create_aggregate_function("bucket_delta_sum", 2, flags, BucketDeltaSum)?;
    conn.create_aggregate_function("bucket_delta_sums", 3, flags, BucketDeltaSums)?;
    conn.create_aggregate_function("histogram_quantile", 3, flags, HistogramQuantile)
}

/// Bucket counts written as a JSON array of integers, read fast; `None`
/// for anything else.
pub fn parse_counts(text: &str) -> Option<Vec<u64>> {
    let mut counts = Vec::new();
    read_counts(text.as_bytes(), &mut counts).then_some(counts)
}

/// Reads bucket counts written as a JSON array of integers into `out`
/// (cleared first), without allocating beyond `out`; `false` for anything
/// else.
fn read_counts(text: &[u8], out: &mut Vec<u64>) -> bool {
    out.clear();
    let text = text.trim_ascii();
    let Some(inner) = text.strip_prefix(b"[").and_then(|t| t.strip_suffix(b"]")) else {
        return false;
    };
    if inner.trim_ascii().is_empty() {
        return true;
    }
    for part in inner.split(|b| *b == b',') {
        let digits = part.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return false;
        }
        out.push(
            digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
        );
    }
    true
}

/// The text of argument `i`, borrowed; `None` for NULL or a non-text.
fn text_arg<'a>(ctx: &'a Context<'_>, i: usize) -> Option<&'a [u8]> {
    match ctx.get_raw(i) {
        rusqlite::types::ValueRef::Text(t) => Some(t),
        _ => None,
    }
}

fn write_counts(counts: &[u64]) -> String {
    let mut out = String::with_capacity(counts.len() * 3 + 2);
    out.push('[');
    for (i, n) in counts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&n.to_string());
    }
    out.push(']');
    out
}

/// Adds `b` to `a`, bucket by bucket.
fn add(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(*y);
    }
}

struct BucketDeltaSum;

/// The aggregate's state: the total so far, and room to read one row.
#[derive(Default)]
struct DeltaSum {
    total: Vec<u64>,
    end: Vec<u64>,
    start: Vec<u64>,
}

impl DeltaSum {
    /// Reads one row into `end`: the bucket counts of argument `end_arg`
    /// less those of argument `start_arg` (when it holds any), clamped at
    /// 0; `false` when `end_arg` holds no bucket counts.
    fn read_row(&mut self, ctx: &Context<'_>, end_arg: usize, start_arg: usize) -> bool {
        let DeltaSum { end, start, .. } = self;
        if !text_arg(ctx, end_arg).is_some_and(|t| read_counts(t, end)) {
            return false;
        }
        if text_arg(ctx, start_arg).is_some_and(|t| read_counts(t, start)) {
            for (e, s) in end.iter_mut().zip(start.iter()) {
                *e = e.saturating_sub(*s);
            }
        }
        true
    }
}

impl Aggregate<DeltaSum, Option<String>> for BucketDeltaSum {
    fn init(&self, _: &mut Context<'_>) -> Result<DeltaSum> {
        Ok(DeltaSum::default())
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut DeltaSum) -> Result<()> {
        if state.read_row(ctx, 0, 1) {
            add(&mut state.total, &state.end);
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, state: Option<DeltaSum>) -> Result<Option<String>> {
        Ok(state.map(|s| write_counts(&s.total)))
    }
}

struct BucketDeltaSums;

/// The aggregate's state: the totals per group so far, and room to read
/// one row.
#[derive(Default)]
struct DeltaSums {
    totals: KeyedMap<Vec<u8>, Vec<u64>>,
    row: DeltaSum,
}

impl Aggregate<DeltaSums, Option<String>> for BucketDeltaSums {
    fn init(&self, _: &mut Context<'_>) -> Result<DeltaSums> {
        Ok(DeltaSums::default())
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut DeltaSums) -> Result<()> {
        let Some(group) = text_arg(ctx, 0) else {
            return Ok(());
        };
        if !state.row.read_row(ctx, 1, 2) {
            return Ok(());
        }
        let end = &state.row.end;
        match state.totals.get_mut(group) {
            Some(total) => add(total, end),
            None => {
                state.totals.insert(group.to_vec(), end.clone());
            }
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, state: Option<DeltaSums>) -> Result<Option<String>> {
        let Some(state) = state else {
            return Ok(None);
        };
        let object: serde_json::Map<String, serde_json::Value> = state
            .totals
            .into_iter()
            .map(|(group, total)| {
                (
                    String::from_utf8_lossy(&group).into_owned(),
                    serde_json::Value::from(total),
                )
            })
            .collect();
        Ok(Some(serde_json::Value::Object(object).to_string()))
    }
}

/// One histogram bucket: values in `(lower, upper]`, `upper` `None` for the
/// last, unbounded bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Lower bound (exclusive).
    pub lower: f64,
    /// Upper bound (inclusive); `None` for the last bucket.
    pub upper: Option<f64>,
    /// Observations in the bucket.
    pub count: f64,
}

/// The buckets of `counts` under explicit `bounds` (the first bucket starts
/// at 0: survey's histograms hold durations, token counts and speeds, none
/// of them negative).
pub fn buckets(bounds: &[f64], counts: &[u64]) -> Vec<Bucket> {
    counts
        .iter()
        .enumerate()
        .map(|(i, n)| Bucket {
            lower: if i == 0 {
                0.0
            } else {
                bounds.get(i - 1).copied().unwrap_or(f64::MAX)
            },
            upper: bounds.get(i).copied(),
            count: *n as f64,
        })
        .collect()
}

/// The `q`-quantile of the observations in `buckets` (in bound order),
/// found by linear interpolation within the bucket that holds it; in the
/// unbounded last bucket, its lower bound. `None` when there are none.
pub fn quantile(q: f64, buckets: &[Bucket]) -> Option<f64> {
    let total: f64 = buckets.iter().map(|b| b.count.max(0.0)).sum();
    if total <= 0.0 || !q.is_finite() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut below = 0.0;
    for bucket in buckets.iter().filter(|b| b.count > 0.0) {
        if below + bucket.count >= rank {
            return Some(match bucket.upper {
                Some(upper) => {
                    bucket.lower + (upper - bucket.lower) * ((rank - below) / bucket.count)
                }
                None => bucket.lower,
            });
        }
        below += bucket.count;
    }
    buckets
        .iter()
        .rev()
        .find(|b| b.count > 0.0)
        .map(|b| b.upper.unwrap_or(b.lower))
}

struct HistogramQuantile;

/// The aggregate's state: the quantile, the metric, the counts so far.
type State = (f64, Option<&'static [f64]>, Vec<u64>);

impl Aggregate<State, Option<f64>> for HistogramQuantile {
    fn init(&self, _: &mut Context<'_>) -> Result<State> {
        Ok((0.5, None, Vec::new()))
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut State) -> Result<()> {
        state.0 = ctx.get(0)?;
        let metric = text_arg(ctx, 1).and_then(|t| std::str::from_utf8(t).ok());
        state.1 = metric.and_then(schema::metric).map(|m| m.boundaries);
        let mut counts = Vec::new();
        if text_arg(ctx, 2).is_some_and(|t| read_counts(t, &mut counts)) {
            add(&mut state.2, &counts);
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, state: Option<State>) -> Result<Option<f64>> {
        Ok(state.and_then(|(q, bounds, counts)| quantile(q, &buckets(bounds?, &counts))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(lower: f64, upper: Option<f64>, count: f64) -> Bucket {
        Bucket {
            lower,
            upper,
            count,
        }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        // 10 observations in (0, 100], 10 in (100, 200].
        let two = [b(0.0, Some(100.0), 10.0), b(100.0, Some(200.0), 10.0)];
        assert_eq!(quantile(0.5, &two), Some(100.0));
        assert_eq!(quantile(0.25, &two), Some(50.0));
        assert_eq!(quantile(0.9, &two), Some(180.0));
        assert_eq!(quantile(1.0, &two), Some(200.0));
        // A single observation in (1000, 2500] reads as the bucket's middle.
        let one = [
            b(0.0, Some(100.0), 0.0),
            b(1000.0, Some(2500.0), 1.0),
            b(2500.0, None, 0.0),
        ];
        assert_eq!(quantile(0.5, &one), Some(1750.0));
        // The unbounded bucket gives its lower bound.
        let top = [b(0.0, Some(10.0), 1.0), b(10.0, None, 3.0)];
        assert_eq!(quantile(0.5, &top), Some(10.0));
        assert_eq!(quantile(0.5, &[b(0.0, Some(1.0), 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(
            buckets(&[10.0, 30.0], &[1, 2, 3]),
            [
                b(0.0, Some(10.0), 1.0),
                b(10.0, Some(30.0), 2.0),
                b(30.0, None, 3.0)
            ]
        );
    }

    #[test]
    fn counts_parse_fast_and_strictly() {
        assert_eq!(parse_counts("[0,2, 3]"), Some(vec![0, 2, 3]));
        assert_eq!(parse_counts("[]"), Some(vec![]));
        assert_eq!(parse_counts("[1.5]"), None);
        assert_eq!(parse_counts("[-1]"), None);
        assert_eq!(parse_counts("0,1"), None);
        assert_eq!(parse_counts("[1,,2]"), None);
        assert_eq!(parse_counts("[99999999999999999999]"), None);
        assert_eq!(parse_counts(" [ 7 ] "), Some(vec![7]));
        assert_eq!(write_counts(&[0, 12, 3]), "[0,12,3]");
    }

    #[test]
    fn sql_functions_work_in_queries() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let root: f64 = conn
            .query_row("SELECT sqrt(2.25)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(root, 1.5);
        let total: String = conn
            .query_row(
                "SELECT bucket_delta_sum(e, s) FROM (\
                 SELECT '[3,5,1]' AS e, '[1,5,0]' AS s UNION ALL \
                 SELECT '[0,2,0]', NULL)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(total, "[2,2,1]");
        let per_group: String = conn
            .query_row(
                "SELECT bucket_delta_sums(g, e, s) FROM (\
                 SELECT 'a' AS g, '[3,5,1]' AS e, '[1,5,0]' AS s UNION ALL \
                 SELECT 'b', '[1]', NULL UNION ALL \
                 SELECT 'a', '[0,2,0]', NULL UNION ALL \
                 SELECT NULL, '[9]', NULL)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let per_group: serde_json::Value = serde_json::from_str(&per_group).unwrap();
        assert_eq!(per_group, serde_json::json!({"a": [2, 2, 1], "b": [1]}));
        // Uptime buckets: (0, 10], (10, 30], ...: 2 in the first, 2 in the second.
        let p50: Option<f64> = conn
            .query_row(
                "SELECT histogram_quantile(0.5, 'mesh_llm_model_uptime_s', b) FROM (\
                 SELECT '[2,1]' AS b UNION ALL SELECT '[0,1]')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(p50, Some(10.0));
        let none: Option<f64> = conn
            .query_row(
                "SELECT histogram_quantile(0.5, 'mesh_llm_model_uptime_s', '[]') WHERE 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(none, None);
    }
}
