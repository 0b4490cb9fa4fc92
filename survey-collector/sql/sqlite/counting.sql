-- The counting rule, written once: every count in the report comes from
-- window_counts and window_buckets. The window is [:since, :until) in UTC
-- days since the epoch.
--
-- Per stream (one process's series):
--   cumulative: the last value before :until minus the last value before
--     :since, "last" being the largest: a cumulative value only grows, so
--     repeated exports, retried requests and late points change nothing,
--     and the first point of a stream counts in full;
--   delta: the sum of the window's points (each point is stored once).
-- Totals add streams up.
DROP TABLE IF EXISTS temp.window_counts;
CREATE TEMP TABLE window_counts (
    StreamId INTEGER PRIMARY KEY,
    N REAL NOT NULL
);
INSERT INTO window_counts (StreamId, N)
SELECT r.StreamId,
       CASE s.AggregationTemporality
           WHEN 1 THEN total(CASE WHEN r.Day >= :since AND r.Day < :until THEN r.Value END)
           ELSE coalesce(max(CASE WHEN r.Day < :until THEN r.Value END), 0)
              - coalesce(max(CASE WHEN r.Day < :since THEN r.Value END), 0)
       END
FROM rollup_daily AS r
JOIN streams AS s ON s.StreamId = r.StreamId
WHERE s.Kind = 'sum'
GROUP BY r.StreamId;
-- Histograms, bucket by bucket, the same way. The last row before a day is
-- the one with the largest count (its bucket counts are all at least those
-- of any earlier one).
DROP TABLE IF EXISTS temp.window_buckets;
CREATE TEMP TABLE window_buckets (
    StreamId INTEGER NOT NULL,
    Bucket INTEGER NOT NULL,
    N REAL NOT NULL
);
WITH ends AS (
    SELECT r.StreamId, r.BucketCounts, max(r.Value) AS Count
    FROM rollup_daily AS r
    JOIN streams AS s ON s.StreamId = r.StreamId
    WHERE s.Kind = 'histogram' AND s.AggregationTemporality = 2 AND r.Day < :until
    GROUP BY r.StreamId
),
starts AS (
    SELECT r.StreamId, r.BucketCounts, max(r.Value) AS Count
    FROM rollup_daily AS r
    JOIN streams AS s ON s.StreamId = r.StreamId
    WHERE s.Kind = 'histogram' AND s.AggregationTemporality = 2 AND r.Day < :since
    GROUP BY r.StreamId
)
INSERT INTO window_buckets (StreamId, Bucket, N)
SELECT e.StreamId,
       CAST(b.key AS INTEGER),
       b.value - coalesce(json_extract(st.BucketCounts, '$[' || b.key || ']'), 0)
FROM ends AS e
LEFT JOIN starts AS st ON st.StreamId = e.StreamId,
     json_each(e.BucketCounts) AS b;
INSERT INTO window_buckets (StreamId, Bucket, N)
SELECT r.StreamId, CAST(b.key AS INTEGER), total(b.value)
FROM rollup_daily AS r
JOIN streams AS s ON s.StreamId = r.StreamId,
     json_each(r.BucketCounts) AS b
WHERE s.Kind = 'histogram'
  AND s.AggregationTemporality = 1
  AND r.Day >= :since
  AND r.Day < :until
GROUP BY r.StreamId, b.key;
-- The five counters of each stream with a count in the window, side by
-- side, with the stream's node and dimensions: what the questions add up.
DROP TABLE IF EXISTS temp.lifecycle;
CREATE TEMP TABLE lifecycle AS
SELECT s.Node,
       s.Model,
       s.GpuName,
       s.BackendDevice,
       s.GpuCount,
       s.ContextBucket,
       s.FailureReason,
       CASE s.MetricName WHEN 'mesh_llm_model_launch_total' THEN c.N ELSE 0 END AS launches,
       CASE s.MetricName WHEN 'mesh_llm_model_launch_success_total' THEN c.N ELSE 0 END AS successes,
       CASE s.MetricName WHEN 'mesh_llm_model_launch_failure_total' THEN c.N ELSE 0 END AS failures,
       CASE s.MetricName WHEN 'mesh_llm_model_unload_total' THEN c.N ELSE 0 END AS unloads,
       CASE s.MetricName WHEN 'mesh_llm_model_exit_unexpected_total' THEN c.N ELSE 0 END AS exits
FROM window_counts AS c
JOIN streams AS s ON s.StreamId = c.StreamId
WHERE c.N > 0;
-- The histogram buckets with observations in the window: bucket i holds
-- values in (LowerBound, UpperBound]; the last has no UpperBound.
DROP TABLE IF EXISTS temp.histograms;
CREATE TEMP TABLE histograms AS
SELECT s.Node,
       s.MetricName,
       s.Model,
       s.GpuName,
       s.FailureReason,
       b.LowerBound,
       b.UpperBound,
       c.N
FROM window_buckets AS c
JOIN streams AS s ON s.StreamId = c.StreamId
JOIN histogram_buckets AS b ON b.MetricName = s.MetricName AND b.Bucket = c.Bucket
WHERE c.N > 0;
-- Gauges are snapshots: the largest exact context length each stream showed
-- in the window.
DROP TABLE IF EXISTS temp.contexts;
CREATE TEMP TABLE contexts (
    Node TEXT NOT NULL,
    Model TEXT,
    GpuName TEXT,
    ContextBucket TEXT,
    Value REAL NOT NULL
);
INSERT INTO contexts (Node, Model, GpuName, ContextBucket, Value)
SELECT s.Node, s.Model, s.GpuName, s.ContextBucket, max(r.Value)
FROM rollup_daily AS r
JOIN streams AS s ON s.StreamId = r.StreamId
WHERE s.MetricName = 'mesh_llm_model_context_length'
  AND r.Day >= :since
  AND r.Day < :until
GROUP BY r.StreamId;
