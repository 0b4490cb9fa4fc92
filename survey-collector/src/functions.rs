//! SQL functions the report's queries use that SQLite's bundled build
//! lacks: `sqrt(x)` (for the Wilson interval) and the aggregate
//! `histogram_quantile(q, lower, upper, n)`.

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::{Connection, Result};

/// Registers the functions on `conn`.
pub fn register(conn: &Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("sqrt", 1, flags, |ctx| {
        let x: Option<f64> = ctx.get(0)?;
        Ok(x.filter(|x| *x >= 0.0).map(f64::sqrt))
    })?;
    conn.create_aggregate_function("histogram_quantile", 4, flags, HistogramQuantile)
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

/// The `q`-quantile of the observations in `buckets` (any order), found by
/// linear interpolation within the bucket that holds it; in the unbounded
/// last bucket, its lower bound. `None` when there are no observations.
pub fn quantile(q: f64, buckets: &mut [Bucket]) -> Option<f64> {
    buckets.sort_by(|a, b| a.lower.total_cmp(&b.lower));
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

/// The aggregate's state: the quantile asked for and the buckets seen.
type State = (f64, Vec<Bucket>);

impl Aggregate<State, Option<f64>> for HistogramQuantile {
    fn init(&self, _: &mut Context<'_>) -> Result<State> {
        Ok((0.5, Vec::new()))
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut State) -> Result<()> {
        state.0 = ctx.get(0)?;
        let lower: f64 = ctx.get(1)?;
        let upper: Option<f64> = ctx.get(2)?;
        let count: Option<f64> = ctx.get(3)?;
        // Rows for the same bucket (several streams) add up.
        let count = count.unwrap_or(0.0);
        match state.1.iter_mut().find(|b| b.lower == lower) {
            Some(bucket) => bucket.count += count,
            None => state.1.push(Bucket {
                lower,
                upper,
                count,
            }),
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, state: Option<State>) -> Result<Option<f64>> {
        Ok(state.and_then(|(q, mut buckets)| quantile(q, &mut buckets)))
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
        let mut buckets = [b(100.0, Some(200.0), 10.0), b(0.0, Some(100.0), 10.0)];
        assert_eq!(quantile(0.5, &mut buckets), Some(100.0));
        assert_eq!(quantile(0.25, &mut buckets), Some(50.0));
        assert_eq!(quantile(0.9, &mut buckets), Some(180.0));
        assert_eq!(quantile(1.0, &mut buckets), Some(200.0));
        // A single observation in (1000, 2500] reads as the bucket's middle.
        let mut one = [
            b(0.0, Some(100.0), 0.0),
            b(1000.0, Some(2500.0), 1.0),
            b(2500.0, None, 0.0),
        ];
        assert_eq!(quantile(0.5, &mut one), Some(1750.0));
        // The unbounded bucket gives its lower bound.
        let mut top = [b(0.0, Some(10.0), 1.0), b(10.0, None, 3.0)];
        assert_eq!(quantile(0.5, &mut top), Some(10.0));
        assert_eq!(quantile(0.5, &mut [b(0.0, Some(1.0), 0.0)]), None);
        assert_eq!(quantile(0.5, &mut []), None);
    }

    #[test]
    fn sql_functions_work_in_queries() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let root: f64 = conn
            .query_row("SELECT sqrt(2.25)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(root, 1.5);
        let p50: Option<f64> = conn
            .query_row(
                "SELECT histogram_quantile(0.5, lower, upper, n) FROM (\
                 SELECT 0.0 AS lower, 100.0 AS upper, 6 AS n UNION ALL \
                 SELECT 0.0, 100.0, 4 UNION ALL \
                 SELECT 100.0, 200.0, 10 UNION ALL \
                 SELECT 200.0, NULL, 0)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(p50, Some(100.0));
        let none: Option<f64> = conn
            .query_row(
                "SELECT histogram_quantile(0.5, 0.0, 1.0, 0) WHERE 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(none, None);
    }
}
