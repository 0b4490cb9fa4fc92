//! Store: accepted points into embedded SQLite (bundled, WAL mode).
//!
//! Tables are in `sql/sqlite/migrations/schema.sql`, and the migrations after it
//! (`summaries.sql`, `drop_whole_sum.sql`, `request_outcome.sql`). One
//! transaction per batch, committed with `synchronous = FULL`, so a batch
//! answered 200 is on disk. Per point: find or create its stream (and its
//! series), keep the raw point if the stream's value changed, and fold it
//! into the stream's daily rollup and summary, which are all the report
//! reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use survey_schema::{self as schema, AttributeKey, MetricKind};

use crate::keyed_hash::KeyedMap;
use crate::validate::{Attributes, Dimension, Point, TEMPORALITY_DELTA, Validated, Value};

/// The DDL of every schema version, in order: version `i + 1` is reached by
/// running `MIGRATIONS[i]` on version `i`.
const MIGRATIONS: &[&str] = &[
    include_str!("../sql/sqlite/migrations/schema.sql"),
    concat!(
        include_str!("../sql/sqlite/migrations/summaries.sql"),
        include_str!("../sql/sqlite/migrations/summarize.sql")
    ),
    include_str!("../sql/sqlite/migrations/drop_whole_sum.sql"),
    include_str!("../sql/sqlite/migrations/request_outcome.sql"),
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Nanoseconds in a UTC day.
pub const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `report` was pointed at a database that does not exist.
    #[error("no database at {0}; `survey-collector serve --db {0}` creates it")]
    Missing(PathBuf),
    /// The database was written by a newer survey-collector.
    #[error(
        "the database at {path} has schema version {found}, newer than this \
         survey-collector understands ({supported}); use a newer survey-collector"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A read-only open found a schema that needs an upgrade first.
    #[error(
        "the database at {path} has schema version {found}; run \
         `survey-collector serve --db {path}` once to upgrade it to {supported}"
    )]
    OlderSchema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// SQLite failed.
    #[error("{context}: {source}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// Wraps a SQLite error with what was being done.
pub(crate) fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite {
        context: context.into(),
        source,
    }
}

/// The collector's database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// What the writer knows of streams it has seen, so a repeated value
    /// costs no query.
    streams: StreamCache,
}

/// Most streams [`StreamCache`] remembers before it starts over.
const CACHED_STREAMS: usize = 500_000;

/// A stream's identity, as the writer sees it in validated points.
#[derive(Debug, Clone)]
struct StreamIdentity {
    metric: &'static str,
    resource: Arc<str>,
    attributes: Arc<Attributes>,
    start: i64,
}

impl PartialEq for StreamIdentity {
    fn eq(&self, other: &StreamIdentity) -> bool {
        // Points of one request, and attribute sets from the validation
        // cache, share their strings: compare pointers first.
        self.metric == other.metric
            && self.start == other.start
            && (Arc::ptr_eq(&self.attributes, &other.attributes)
                || self.attributes.json == other.attributes.json)
            && (Arc::ptr_eq(&self.resource, &other.resource) || self.resource == other.resource)
    }
}

impl Eq for StreamIdentity {}

impl std::hash::Hash for StreamIdentity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.metric.as_bytes());
        state.write(self.resource.as_bytes());
        state.write_u64(self.attributes.hash);
        state.write_i64(self.start);
    }
}

/// Streams seen, their ids and last folded points, and resources' ids.
#[derive(Debug, Default)]
struct StreamCache {
    streams: KeyedMap<StreamIdentity, Stream>,
    resources: KeyedMap<Arc<str>, i64>,
}

impl StreamCache {
    fn clear(&mut self) {
        self.streams.clear();
        self.resources.clear();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating it if needed) the database at `path` for writing, and
    /// brings its schema up to the newest version this build knows.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, MIGRATIONS)
    }

    fn open_with(path: &Path, migrations: &[&str]) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(sqlite(format!(
            "cannot open the database at {}",
            path.display()
        )))?;
        let store = Store::configure(conn, path)?;
        store.migrate(migrations)?;
        Ok(store)
    }

    /// Opens an existing database for reading (the report), while `serve`
    /// may be writing to it.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(format!(
            "cannot open the database at {}",
            path.display()
        )))?;
        let store = Store::configure(conn, path)?;
        let found = store.version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            return Err(StoreError::OlderSchema {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(store)
    }

    fn configure(conn: Connection, path: &Path) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite("cannot set the busy timeout"))?;
        crate::sql_functions::register(&conn).map_err(sqlite("cannot register SQL functions"))?;
        if !conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            // WAL: the report reads while serve writes. FULL: a commit is on
            // disk before the sender hears 200.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sqlite(format!(
                    "{} is not a usable SQLite database",
                    path.display()
                )))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sqlite("cannot set synchronous = FULL"))?;
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            streams: StreamCache::default(),
        })
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite(format!(
                "{} is not a usable SQLite database",
                self.path.display()
            )))
    }

    /// Runs the migrations the database lacks, each in its own transaction.
    fn migrate(&self, migrations: &[&str]) -> Result<(), StoreError> {
        let found = self.version()?;
        let supported = migrations.len() as i64;
        if found > supported {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
                supported,
            });
        }
        for (version, ddl) in migrations.iter().enumerate().skip(found as usize) {
            let target = version as i64 + 1;
            self.execute_in_transaction(
                &format!("{ddl}\nPRAGMA user_version = {target};"),
                format!("cannot upgrade the database schema to version {target}"),
            )?;
        }
        Ok(())
    }

    /// Runs `sql` (statements) in one write transaction: all of it, or
    /// none.
    fn execute_in_transaction(&self, sql: &str, context: String) -> Result<(), StoreError> {
        self.conn
            .execute_batch(&format!("BEGIN IMMEDIATE;\n{sql}\nCOMMIT;"))
            .map_err(|source| {
                let _ = self.conn.execute_batch("ROLLBACK");
                StoreError::Sqlite { context, source }
            })
    }

    /// The SQLite connection, for queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `batches` in one transaction: all of them, or none. The
    /// writer's step; public only for this crate's benchmark and tests,
    /// which reach `Validated` through `__private`.
    #[doc(hidden)]
    pub fn ingest(&mut self, batches: &[&Validated]) -> Result<(), StoreError> {
        if self.streams.streams.len() > CACHED_STREAMS {
            self.streams.clear();
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite("cannot start a write transaction"))?;
        let mut stored = Ok(());
        'batches: for batch in batches {
            for point in &batch.points {
                let resource = &batch.resources[point.resource];
                stored = store_point(&tx, &mut self.streams, resource, point);
                if stored.is_err() {
                    break 'batches;
                }
            }
        }
        let committed = stored
            .map_err(sqlite("cannot store a data point"))
            .and_then(|()| tx.commit().map_err(sqlite("cannot commit")));
        if committed.is_err() {
            // The cache may hold what the rolled back transaction wrote.
            self.streams.clear();
        }
        committed
    }

    /// Rebuilds every stream's series and summary from its rollup rows, for
    /// streams and rollups written into the tables directly (ingest keeps
    /// them itself): the benchmark's bulk load and the tests' checks.
    #[doc(hidden)]
    pub fn summarize_all(&mut self) -> Result<(), StoreError> {
        self.execute_in_transaction(
            include_str!("../sql/sqlite/migrations/summarize.sql"),
            "cannot summarize the streams".into(),
        )
    }

    /// Deletes raw points older than `before` (ns since the epoch); the
    /// rollups stay. Returns how many were deleted.
    pub fn prune(&mut self, before: i64) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite("cannot start a write transaction"))?;
        let mut deleted = 0;
        for table in [
            "otel_metrics_sum",
            "otel_metrics_gauge",
            "otel_metrics_histogram",
        ] {
            deleted += tx
                .execute(
                    &format!("DELETE FROM {table} WHERE TimeUnix < ?1"),
                    [before],
                )
                .map_err(sqlite(format!("cannot prune {table}")))? as u64;
        }
        tx.commit().map_err(sqlite("cannot commit"))?;
        Ok(deleted)
    }
}

/// The typed column of an attribute in `streams`.
fn column(key: AttributeKey) -> &'static str {
    match key {
        AttributeKey::Model => "Model",
        AttributeKey::Architecture => "Architecture",
        AttributeKey::Quantization => "Quantization",
        AttributeKey::LaunchKind => "LaunchKind",
        AttributeKey::GpuName => "GpuName",
        AttributeKey::GpuStableId => "GpuStableId",
        AttributeKey::BackendDevice => "BackendDevice",
        AttributeKey::GpuCount => "GpuCount",
        AttributeKey::IsSoc => "IsSoc",
        AttributeKey::Backend => "Backend",
        AttributeKey::ContextBucket => "ContextBucket",
        AttributeKey::ServiceVersion => "ServiceVersion",
        AttributeKey::FailureReason => "FailureReason",
        AttributeKey::RequestOutcome => "RequestOutcome",
    }
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "sum",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    }
}

/// A stream as stored: its id and the last point folded into its rollup.
#[derive(Debug, Clone, Copy)]
struct Stream {
    id: i64,
    last_time: i64,
    last_value: Option<f64>,
    last_sum: Option<f64>,
}

/// The `StreamKey` of a stream: the first 16 bytes of the SHA-256 of its
/// identity.
fn stream_key(identity: &StreamIdentity) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(identity.metric.as_bytes())
        .chain_update([0])
        .chain_update(identity.resource.as_bytes())
        .chain_update([0])
        .chain_update(identity.attributes.json.as_bytes())
        .chain_update([0])
        .chain_update(identity.start.to_le_bytes())
        .finalize();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

fn resource_id(
    tx: &Transaction<'_>,
    cache: &mut StreamCache,
    resource: &crate::validate::Resource,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.resources.get(&resource.attributes) {
        return Ok(*id);
    }
    let id = tx
        .prepare_cached(
            "INSERT INTO resources (ResourceAttributes, ServiceName, Node) VALUES (?1, ?2, ?3) \
             ON CONFLICT (ResourceAttributes) DO UPDATE SET Node = excluded.Node \
             RETURNING ResourceId",
        )?
        .query_row(
            params![&*resource.attributes, resource.service_name, resource.node],
            |row| row.get(0),
        )?;
    cache.resources.insert(resource.attributes.clone(), id);
    Ok(id)
}

fn find_or_create_stream(
    tx: &Transaction<'_>,
    cache: &mut StreamCache,
    resource: &crate::validate::Resource,
    point: &Point,
) -> rusqlite::Result<(StreamIdentity, Stream)> {
    let identity = StreamIdentity {
        metric: point.metric.name,
        resource: resource.attributes.clone(),
        attributes: point.attributes.clone(),
        start: point.stream_start(),
    };
    if let Some(stream) = cache.streams.get(&identity) {
        return Ok((identity, *stream));
    }
    let key = stream_key(&identity);
    let found = tx
        .prepare_cached(
            "SELECT StreamId, LastTimeUnix, LastValue, LastSum FROM streams WHERE StreamKey = ?1",
        )?
        .query_row(params![key], |row| {
            Ok(Stream {
                id: row.get(0)?,
                last_time: row.get(1)?,
                last_value: row.get(2)?,
                last_sum: row.get(3)?,
            })
        })
        .optional()?;
    let stream = match found {
        Some(stream) => {
            cache.streams.insert(identity.clone(), stream);
            stream
        }
        // A new stream's first point always changes it, and is cached then.
        None => {
            let resource_id = resource_id(tx, cache, resource)?;
            let mut columns = String::new();
            let mut placeholders = String::new();
            let mut values: Vec<rusqlite::types::Value> = vec![
                key.to_vec().into(),
                point.metric.name.to_string().into(),
                resource_id.into(),
                identity.start.into(),
                kind_name(point.metric.kind).to_string().into(),
                i64::from(point.temporality).into(),
                resource.node.clone().into(),
            ];
            for (key, value) in &point.attributes.dimensions {
                columns.push_str(", ");
                columns.push_str(column(*key));
                values.push(match value {
                    Dimension::Text(s) => s.clone().into(),
                    Dimension::Int(i) => (*i).into(),
                    Dimension::Bool(b) => i64::from(*b).into(),
                });
                placeholders.push_str(&format!(", ?{}", values.len()));
            }
            let sql = format!(
                "INSERT INTO streams (StreamKey, MetricName, ResourceId, StartTimeUnix, Kind, \
                 AggregationTemporality, Node{columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7{placeholders})"
            );
            tx.prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(values))?;
            let id = tx.last_insert_rowid();
            join_series(tx, id, &resource.node)?;
            Stream {
                id,
                last_time: 0,
                last_value: None,
                last_sum: None,
            }
        }
    };
    Ok((identity, stream))
}

/// Puts a new stream in its node's series (see `summaries.sql`).
fn join_series(tx: &Transaction<'_>, stream: i64, node: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO nodes (Node) VALUES (?1) ON CONFLICT DO NOTHING")?
        .execute([node])?;
    tx.prepare_cached(
        "INSERT INTO series (NodeId, Model, GpuName, BackendDevice, GpuCount, ContextBucket, \
         FailureReason) \
         SELECT n.NodeId, s.Model, s.GpuName, s.BackendDevice, s.GpuCount, s.ContextBucket, \
         s.FailureReason FROM streams AS s JOIN nodes AS n ON n.Node = s.Node \
         WHERE s.StreamId = ?1 ON CONFLICT DO NOTHING",
    )?
    .execute([stream])?;
    tx.prepare_cached(
        "UPDATE streams SET SeriesId = (SELECT se.SeriesId FROM series AS se \
         JOIN nodes AS n ON n.NodeId = se.NodeId WHERE n.Node = streams.Node \
         AND ifnull(se.Model, X'') = ifnull(streams.Model, X'') \
         AND ifnull(se.GpuName, X'') = ifnull(streams.GpuName, X'') \
         AND ifnull(se.BackendDevice, X'') = ifnull(streams.BackendDevice, X'') \
         AND ifnull(se.GpuCount, X'') = ifnull(streams.GpuCount, X'') \
         AND ifnull(se.ContextBucket, X'') = ifnull(streams.ContextBucket, X'') \
         AND ifnull(se.FailureReason, X'') = ifnull(streams.FailureReason, X'')) \
         WHERE StreamId = ?1",
    )?
    .execute([stream])?;
    Ok(())
}

fn store_point(
    tx: &Transaction<'_>,
    cache: &mut StreamCache,
    resource: &crate::validate::Resource,
    point: &Point,
) -> rusqlite::Result<()> {
    let (identity, stream) = find_or_create_stream(tx, cache, resource, point)?;
    let (value, sum) = match &point.value {
        Value::Number(v) => (*v, None),
        Value::Histogram(h) => (h.count as f64, Some(h.sum)),
    };
    let delta = point.temporality == TEMPORALITY_DELTA;
    // Compared with the last point folded: a repeat of its value adds
    // nothing to the raw points.
    let changed = delta || stream.last_value != Some(value) || stream.last_sum != sum;
    let day = point.time_unix.div_euclid(NANOS_PER_DAY);
    let fold_it = if point.metric.kind == MetricKind::Gauge {
        // A gauge's window value is the largest seen in it, so each day it
        // is seen gets a row; a repeat on the same day cannot raise it.
        changed || stream.last_time.div_euclid(NANOS_PER_DAY) != day
    } else {
        // The counting rule needs, before any day, a row at least as large
        // as every point before it. The last point folded left such a row
        // on or before its day; a later repeat of its value needs no other.
        // A repeat from before it (out of order) gets its own row.
        changed || point.time_unix < stream.last_time
    };

    // A histogram's bucket counts as JSON, written once for the raw row,
    // the rollup row and the summary.
    let buckets = match &point.value {
        Value::Histogram(h) if changed || fold_it => {
            Some(serde_json::to_string(&h.bucket_counts).unwrap_or_default())
        }
        _ => None,
    };
    let mut new_raw = false;
    if changed {
        new_raw = insert_raw(tx, resource, point, buckets.as_deref(), stream.id)?;
    }
    let how = if delta {
        // A retried delta point repeats its (stream, start, time): the raw
        // table already holds it, and it is not added twice.
        new_raw.then_some(Fold::Add)
    } else {
        fold_it.then_some(Fold::Max)
    };
    if let Some(how) = how {
        fold(tx, stream.id, day, &point.value, buckets.as_deref(), how)?;
    }
    if fold_it {
        tx.prepare_cached(
            "UPDATE streams SET LastTimeUnix = ?2, LastValue = ?3, LastSum = ?4 \
             WHERE StreamId = ?1",
        )?
        .execute(params![stream.id, point.time_unix, value, sum])?;
        cache.streams.insert(
            identity,
            Stream {
                last_time: point.time_unix,
                last_value: Some(value),
                last_sum: sum,
                ..stream
            },
        );
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Fold {
    Max,
    Add,
}

/// Folds a point into its stream's rollup row of `day`; `buckets` is a
/// histogram's bucket counts as JSON.
fn fold(
    tx: &Transaction<'_>,
    stream: i64,
    day: i64,
    value: &Value,
    buckets: Option<&str>,
    how: Fold,
) -> rusqlite::Result<()> {
    match (value, how) {
        (Value::Number(v), Fold::Max) => tx
            .prepare_cached(
                "INSERT INTO rollup_daily (StreamId, Day, Value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (StreamId, Day) DO UPDATE SET Value = excluded.Value \
                 WHERE excluded.Value > rollup_daily.Value",
            )?
            .execute(params![stream, day, v]),
        (Value::Number(v), Fold::Add) => tx
            .prepare_cached(
                "INSERT INTO rollup_daily (StreamId, Day, Value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (StreamId, Day) DO UPDATE SET Value = rollup_daily.Value + excluded.Value",
            )?
            .execute(params![stream, day, v]),
        (Value::Histogram(h), Fold::Max) => tx
            .prepare_cached(
                "INSERT INTO rollup_histogram_daily (StreamId, Day, Count, Sum, BucketCounts) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (StreamId, Day) DO UPDATE SET Count = excluded.Count, \
                 Sum = excluded.Sum, BucketCounts = excluded.BucketCounts \
                 WHERE excluded.Count > rollup_histogram_daily.Count",
            )?
            .execute(params![
                stream,
                day,
                h.count as f64,
                h.sum,
                buckets.unwrap_or_default()
            ]),
        (Value::Histogram(h), Fold::Add) => {
            // The day's row so far, added to bucket by bucket.
            let before = tx
                .prepare_cached(
                    "SELECT Count, Sum, BucketCounts FROM rollup_histogram_daily \
                     WHERE StreamId = ?1 AND Day = ?2",
                )?
                .query_row(params![stream, day], |r| {
                    Ok((r.get::<_, f64>(1)?, (r.get(0)?, r.get(2)?)))
                })
                .optional()?;
            let sum = h.sum + before.as_ref().map_or(0.0, |(sum, _)| *sum);
            let (count, buckets) = added_counts(h, before.map(|(_, counts)| counts));
            tx.prepare_cached(
                "INSERT OR REPLACE INTO rollup_histogram_daily (StreamId, Day, Count, Sum, BucketCounts) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![stream, day, count, sum, buckets])
        }
    }?;
    summarize(tx, stream, day, value, buckets, how)
}

/// Folds a point into its stream's summary (see `summaries.sql`), as
/// [`fold`] does into the day's rollup row.
fn summarize(
    tx: &Transaction<'_>,
    stream: i64,
    day: i64,
    value: &Value,
    buckets: Option<&str>,
    how: Fold,
) -> rusqlite::Result<()> {
    const DAYS: &str =
        "FirstDay = min(ifnull(FirstDay, ?2), ?2), LastDay = max(ifnull(LastDay, ?2), ?2)";
    const LARGER: &str = "(?3 > ifnull(Whole, -1) OR (?3 = Whole AND ?2 < WholeDay))";
    match (value, how) {
        (Value::Number(v), Fold::Max) => tx
            .prepare_cached(&format!(
                "UPDATE streams SET {DAYS}, Whole = max(ifnull(Whole, ?3), ?3) WHERE StreamId = ?1"
            ))?
            .execute(params![stream, day, v]),
        (Value::Number(v), Fold::Add) => tx
            .prepare_cached(&format!(
                "UPDATE streams SET {DAYS}, Whole = ifnull(Whole, 0) + ?3 WHERE StreamId = ?1"
            ))?
            .execute(params![stream, day, v]),
        // The largest count wins; on a tie, the earliest day's (within a
        // day, the first point's, as in the rollup row).
        (Value::Histogram(h), Fold::Max) => tx
            .prepare_cached(&format!(
                "UPDATE streams SET {DAYS}, Whole = max(ifnull(Whole, ?3), ?3), \
                 WholeBuckets = CASE WHEN {LARGER} THEN ?4 ELSE WholeBuckets END, \
                 WholeDay = CASE WHEN {LARGER} THEN ?2 ELSE WholeDay END \
                 WHERE StreamId = ?1"
            ))?
            .execute(params![
                stream,
                day,
                h.count as f64,
                buckets.unwrap_or_default()
            ]),
        (Value::Histogram(h), Fold::Add) => {
            let before = tx
                .prepare_cached(
                    "SELECT Whole, WholeBuckets FROM streams \
                     WHERE StreamId = ?1 AND Whole IS NOT NULL",
                )?
                .query_row(params![stream], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (count, buckets) = added_counts(h, before);
            tx.prepare_cached(&format!(
                "UPDATE streams SET {DAYS}, Whole = ?3, WholeBuckets = ?4 WHERE StreamId = ?1"
            ))?
            .execute(params![stream, day, count, buckets])
        }
    }?;
    Ok(())
}

/// A delta histogram point added to a total so far (count, and bucket
/// counts as JSON): the new total.
fn added_counts(
    point: &crate::validate::HistogramValue,
    before: Option<(f64, String)>,
) -> (f64, String) {
    let (mut count, mut buckets) = (point.count as f64, point.bucket_counts.clone());
    if let Some((c, b)) = before {
        count += c;
        let b = crate::sql_functions::parse_counts(&b).unwrap_or_default();
        for (n, m) in buckets.iter_mut().zip(b) {
            *n += m;
        }
    }
    (count, serde_json::to_string(&buckets).unwrap_or_default())
}

/// The columns every raw table starts with, in the exporter's order.
const RAW_COLUMNS: &str = "ResourceAttributes, ScopeName, ScopeVersion, ServiceName, MetricName, \
                           MetricDescription, MetricUnit, Attributes, StartTimeUnix, TimeUnix";

/// Writes the raw point; `false` when the stream already holds a point with
/// the same start and time (a retried request).
fn insert_raw(
    tx: &Transaction<'_>,
    resource: &crate::validate::Resource,
    point: &Point,
    buckets: Option<&str>,
    stream: i64,
) -> rusqlite::Result<bool> {
    use rusqlite::types::Value as Sql;
    let spec = point.metric;
    let mut values: Vec<Sql> = vec![
        resource.attributes.to_string().into(),
        schema::SCOPE_NAME.to_string().into(),
        point.scope_version.clone().into(),
        resource.service_name.clone().into(),
        spec.name.to_string().into(),
        spec.description.to_string().into(),
        spec.unit.to_string().into(),
        point.attributes.json.clone().into(),
        point.start_time_unix.into(),
        point.time_unix.into(),
    ];
    let temporality = i64::from(point.temporality);
    let (table, columns) = match (&point.value, spec.kind) {
        (Value::Number(v), MetricKind::Counter) => {
            values.extend([Sql::from(*v), temporality.into(), 1i64.into()]);
            (
                "otel_metrics_sum",
                "Value, AggregationTemporality, IsMonotonic",
            )
        }
        (Value::Number(v), _) => {
            values.push((*v).into());
            ("otel_metrics_gauge", "Value")
        }
        (Value::Histogram(h), _) => {
            values.extend([
                Sql::from(i64::try_from(h.count).unwrap_or(i64::MAX)),
                h.sum.into(),
                buckets.unwrap_or_default().to_string().into(),
                serde_json::to_string(spec.boundaries)
                    .unwrap_or_default()
                    .into(),
                h.min.into(),
                h.max.into(),
                temporality.into(),
            ]);
            (
                "otel_metrics_histogram",
                "Count, Sum, BucketCounts, ExplicitBounds, Min, Max, AggregationTemporality",
            )
        }
    };
    values.push(stream.into());
    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT OR IGNORE INTO {table} ({RAW_COLUMNS}, {columns}, StreamId) VALUES ({})",
        placeholders.join(", ")
    );
    let inserted = tx
        .prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(values))?;
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{MostLaunched, Rows};

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "survey-collector-store-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("survey.db")
    }

    #[test]
    fn a_new_database_gets_the_current_schema_and_reopens_unchanged() {
        let path = temp_db("new");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.version().unwrap(), SCHEMA_VERSION);
        let mode: String = store
            .connection()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.version().unwrap(), SCHEMA_VERSION);
        Store::open_read_only(&path).unwrap();
    }

    #[test]
    fn version_2_drops_the_histogram_sum_no_question_reads() {
        let path = temp_db("upgrade-2");
        let store = Store::open_with(&path, &MIGRATIONS[..2]).unwrap();
        store
            .connection()
            .execute_batch("SELECT WholeSum FROM streams")
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.version().unwrap(), SCHEMA_VERSION);
        let gone = store
            .connection()
            .execute_batch("SELECT WholeSum FROM streams")
            .unwrap_err();
        assert!(gone.to_string().contains("no such column"), "{gone}");
    }

    /// The columns of index `name`, in order.
    fn index_columns(store: &Store, name: &str) -> Vec<String> {
        store
            .connection()
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
            .unwrap()
            .query_map([name], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A database at schema `version` (its first migrations) holding one
    /// resource and the streams `rows` (the `VALUES` of an INSERT into
    /// `streams`, then any further statements), opened raw.
    fn database_at(name: &str, version: usize, rows: &str) -> (PathBuf, Connection) {
        let path = temp_db(name);
        drop(Store::open_with(&path, &MIGRATIONS[..version]).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO resources (ResourceAttributes, ServiceName, Node) VALUES ('{{}}', 'mesh-llm', 'n');
             INSERT INTO streams (StreamKey, MetricName, ResourceId, StartTimeUnix, Kind,
                 AggregationTemporality, Node, Model)
             VALUES {rows}"
        ))
        .unwrap();
        (path, conn)
    }

    #[test]
    fn version_4_types_the_request_outcome_and_keeps_what_was_there() {
        // Version 3 data: a launch counter with its series and summary.
        let (path, conn) = database_at(
            "upgrade-4",
            3,
            "(X'01', 'mesh_llm_model_launch_total', 1, 1, 'sum', 2, 'n1', 'm');
             INSERT INTO rollup_daily (StreamId, Day, Value) VALUES (1, 10, 2), (1, 12, 5);",
        );
        let err = conn
            .execute_batch("SELECT RequestOutcome FROM streams")
            .unwrap_err();
        assert!(err.to_string().contains("no such column"), "{err}");
        drop(conn);
        let mut store = Store::open_with(&path, &MIGRATIONS[..3]).unwrap();
        store.summarize_all().unwrap();
        let before = index_columns(&store, "streams_for_report");
        drop(store);

        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.version().unwrap(), 4);
        // The index the report scans gains the outcome, at its end.
        let after = index_columns(&store, "streams_for_report");
        assert_eq!(after[..before.len()], before[..]);
        assert_eq!(after[before.len()..], ["RequestOutcome"]);
        // What was stored still answers.
        let report = crate::Report::build(&store, crate::ReportOptions::default()).unwrap();
        let launched = report.answer("most_launched").unwrap();
        assert_eq!(
            launched.rows,
            Rows::MostLaunched(vec![MostLaunched {
                model: Some("m".into()),
                launches: 5,
                nodes: 1,
            }])
        );
        // An inference counter's outcome lands in its typed column, and
        // the report counts it.
        let request = |outcome: &str, value: f64| {
            let attributes =
                format!("{{\"mesh_llm.model\":\"m\",\"mesh_llm.request_outcome\":\"{outcome}\"}}");
            Validated {
                resources: vec![crate::validate::Resource {
                    attributes: "{\"service.instance.id\":\"n2\"}".into(),
                    service_name: String::new(),
                    node: "n2".into(),
                }],
                points: vec![Point {
                    resource: 0,
                    metric: schema::metric(schema::INFERENCE_REQUESTS_TOTAL).unwrap(),
                    scope_version: String::new(),
                    attributes: Arc::new(Attributes {
                        hash: crate::keyed_hash::hash_bytes(attributes.as_bytes()),
                        json: attributes,
                        dimensions: vec![
                            (AttributeKey::Model, Dimension::Text("m".into())),
                            (
                                AttributeKey::RequestOutcome,
                                Dimension::Text(outcome.into()),
                            ),
                        ],
                    }),
                    start_time_unix: 1,
                    time_unix: 11 * NANOS_PER_DAY,
                    temporality: crate::validate::TEMPORALITY_CUMULATIVE,
                    value: Value::Number(value),
                }],
                rejected: Default::default(),
            }
        };
        store
            .ingest(&[&request("ok", 3.0), &request("timeout", 1.0)])
            .unwrap();
        let outcomes: Vec<(String, String)> = store
            .connection()
            .prepare(
                "SELECT MetricName, ifnull(RequestOutcome, '-') FROM streams ORDER BY StreamId",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let requests = schema::INFERENCE_REQUESTS_TOTAL.to_string();
        assert_eq!(
            outcomes,
            [
                (schema::LAUNCH_TOTAL.to_string(), "-".to_string()),
                (requests.clone(), "ok".to_string()),
                (requests, "timeout".to_string()),
            ]
        );
        let report = crate::Report::build(&store, crate::ReportOptions::default()).unwrap();
        let fastest = report.answer("fastest").unwrap();
        let Rows::Fastest(rows) = &fastest.rows else {
            panic!("{:?}", fastest.rows);
        };
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].requests, rows[0].ok), (4, 3));
        assert_eq!(report.nodes, 2);
    }

    #[test]
    fn an_older_schema_is_upgraded_in_place() {
        // Version 1 data: a launch counter of two nodes, each with rollup
        // rows on two days, and a cumulative histogram.
        let (path, conn) = database_at(
            "upgrade",
            1,
            "(X'01', 'mesh_llm_model_launch_total', 1, 1, 'sum', 2, 'n1', 'm'),
                    (X'02', 'mesh_llm_model_launch_total', 1, 1, 'sum', 2, 'n2', 'm'),
                    (X'03', 'mesh_llm_model_uptime_s', 1, 1, 'histogram', 2, 'n1', 'm');
             INSERT INTO rollup_daily (StreamId, Day, Value) VALUES (1, 10, 2), (1, 12, 5), (2, 11, 1);
             INSERT INTO rollup_histogram_daily (StreamId, Day, Count, Sum, BucketCounts)
             VALUES (3, 10, 1, 5, '[1,0]'), (3, 11, 3, 50, '[1,2]');",
        );
        drop(conn);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.version().unwrap(), SCHEMA_VERSION);
        let summaries: Vec<(i64, i64, i64, f64, Option<String>)> = store
            .connection()
            .prepare(
                "SELECT SeriesId, FirstDay, LastDay, Whole, WholeBuckets FROM streams \
                 ORDER BY StreamId",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            summaries,
            [
                (1, 10, 12, 5.0, None),
                (2, 11, 11, 1.0, None),
                (1, 10, 11, 3.0, Some("[1,2]".to_string())),
            ]
        );
        let report = crate::Report::build(&store, crate::ReportOptions::default()).unwrap();
        let launched = report.answer("most_launched").unwrap();
        assert_eq!(
            launched.rows,
            Rows::MostLaunched(vec![MostLaunched {
                model: Some("m".into()),
                launches: 6,
                nodes: 2,
            }])
        );
        drop(store);
        // A later version runs only what is new, once.
        let later: Vec<&str> = MIGRATIONS
            .iter()
            .copied()
            .chain(["ALTER TABLE streams ADD COLUMN Extra TEXT; CREATE TABLE upgraded (x);"])
            .collect();
        let store = Store::open_with(&path, &later).unwrap();
        assert_eq!(store.version().unwrap(), SCHEMA_VERSION + 1);
        store
            .connection()
            .execute("INSERT INTO upgraded (x) VALUES (1)", [])
            .unwrap();
        drop(store);
        let store = Store::open_with(&path, &later).unwrap();
        assert_eq!(store.version().unwrap(), SCHEMA_VERSION + 1);
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let path = temp_db("newer");
        let store = Store::open(&path).unwrap();
        store
            .connection()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(store);
        for err in [
            Store::open(&path).unwrap_err(),
            Store::open_read_only(&path).unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains("newer than this survey-collector"), "{text}");
            assert!(
                text.contains(&format!("version {}", SCHEMA_VERSION + 1)),
                "{text}"
            );
        }
    }

    #[test]
    fn a_read_only_open_of_an_older_schema_asks_for_serve() {
        let path = temp_db("older");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE unrelated (x)").unwrap();
        drop(conn);
        let err = Store::open_read_only(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::OlderSchema { found: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("survey-collector serve"));
        let err = Store::open_read_only(&path.with_extension("absent")).unwrap_err();
        assert!(matches!(err, StoreError::Missing(_)), "{err}");
    }
}
