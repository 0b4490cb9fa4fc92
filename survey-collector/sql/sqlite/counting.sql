-- The counting rule, written once: every count in the report comes from
-- the tables made here. The window is [:since, :until) in UTC days since
-- the epoch.
--
-- Per stream (one process's series):
--   cumulative: the last value before :until minus the last value before
--     :since, "last" being the largest: a cumulative value only grows, so
--     repeated exports, retried requests and late points change nothing,
--     and the first point of a stream counts in full;
--   delta: the sum of the window's points (each point is stored once).
-- Histograms the same way, bucket by bucket. Totals add streams up.
--
-- One pass over the daily rows of sums and gauges.
DROP TABLE IF EXISTS temp.window_values;
CREATE TEMP TABLE window_values (
    StreamId INTEGER PRIMARY KEY,
    LastBeforeEnd REAL,
    LastBeforeStart REAL,
    WindowSum REAL NOT NULL,
    WindowMax REAL
);
INSERT INTO window_values (StreamId, LastBeforeEnd, LastBeforeStart, WindowSum, WindowMax)
SELECT StreamId,
       max(CASE WHEN Day < :until THEN Value END),
       max(CASE WHEN Day < :since THEN Value END),
       total(CASE WHEN Day >= :since AND Day < :until THEN Value END),
       max(CASE WHEN Day >= :since AND Day < :until THEN Value END)
FROM rollup_daily
GROUP BY StreamId;
-- The five counters, side by side, per node and dimensions: what the
-- questions add up.
DROP TABLE IF EXISTS temp.lifecycle;
CREATE TEMP TABLE lifecycle AS
WITH counts AS (
    SELECT s.Node, s.MetricName, s.Model, s.GpuName, s.BackendDevice, s.GpuCount,
           s.ContextBucket, s.FailureReason,
           CASE s.AggregationTemporality
               WHEN 1 THEN v.WindowSum
               ELSE coalesce(v.LastBeforeEnd, 0) - coalesce(v.LastBeforeStart, 0)
           END AS N
    FROM window_values AS v
    JOIN streams AS s ON s.StreamId = v.StreamId
    WHERE s.Kind = 'sum'
)
SELECT Node, Model, GpuName, BackendDevice, GpuCount, ContextBucket, FailureReason,
       total(CASE MetricName WHEN 'mesh_llm_model_launch_total' THEN N END) AS launches,
       total(CASE MetricName WHEN 'mesh_llm_model_launch_success_total' THEN N END) AS successes,
       total(CASE MetricName WHEN 'mesh_llm_model_launch_failure_total' THEN N END) AS failures,
       total(CASE MetricName WHEN 'mesh_llm_model_unload_total' THEN N END) AS unloads,
       total(CASE MetricName WHEN 'mesh_llm_model_exit_unexpected_total' THEN N END) AS exits
FROM counts
WHERE N > 0
GROUP BY 1, 2, 3, 4, 5, 6, 7;
-- Gauges are snapshots: the largest exact context length each node showed
-- in the window.
DROP TABLE IF EXISTS temp.contexts;
CREATE TEMP TABLE contexts AS
SELECT s.Node, s.Model, s.GpuName, s.ContextBucket, max(v.WindowMax) AS Value
FROM window_values AS v
JOIN streams AS s ON s.StreamId = v.StreamId
WHERE s.MetricName = 'mesh_llm_model_context_length'
  AND v.WindowMax IS NOT NULL
GROUP BY 1, 2, 3, 4;
-- Histograms: per stream, the bucket counts of the last (largest-count)
-- row before the end and before the start; for delta histograms, the sum
-- of the window's rows.
DROP TABLE IF EXISTS temp.histogram_ends;
CREATE TEMP TABLE histogram_ends (
    StreamId INTEGER PRIMARY KEY,
    Count REAL NOT NULL,
    BucketCounts TEXT NOT NULL
);
INSERT INTO histogram_ends (StreamId, Count, BucketCounts)
SELECT StreamId, max(Count), BucketCounts
FROM rollup_histogram_daily
WHERE Day < :until
GROUP BY StreamId;
DROP TABLE IF EXISTS temp.histogram_starts;
CREATE TEMP TABLE histogram_starts (
    StreamId INTEGER PRIMARY KEY,
    Count REAL NOT NULL,
    BucketCounts TEXT NOT NULL
);
INSERT INTO histogram_starts (StreamId, Count, BucketCounts)
SELECT StreamId, max(Count), BucketCounts
FROM rollup_histogram_daily
WHERE Day < :since
GROUP BY StreamId;
DROP TABLE IF EXISTS temp.histogram_streams;
CREATE TEMP TABLE histogram_streams (
    Node TEXT NOT NULL,
    MetricName TEXT NOT NULL,
    Model TEXT,
    GpuName TEXT,
    FailureReason TEXT,
    EndBuckets TEXT,
    StartBuckets TEXT
);
INSERT INTO histogram_streams
SELECT s.Node, s.MetricName, s.Model, s.GpuName, s.FailureReason, e.BucketCounts, st.BucketCounts
FROM histogram_ends AS e
JOIN streams AS s ON s.StreamId = e.StreamId
LEFT JOIN histogram_starts AS st ON st.StreamId = e.StreamId
WHERE s.AggregationTemporality = 2
  AND e.Count > coalesce(st.Count, 0);
INSERT INTO histogram_streams
SELECT s.Node, s.MetricName, s.Model, s.GpuName, s.FailureReason, d.Buckets, NULL
FROM (
    SELECT StreamId, bucket_delta_sum(BucketCounts, NULL) AS Buckets, total(Count) AS Count
    FROM rollup_histogram_daily
    WHERE Day >= :since AND Day < :until
      AND StreamId IN (SELECT StreamId FROM streams
                       WHERE Kind = 'histogram' AND AggregationTemporality = 1)
    GROUP BY StreamId
) AS d
JOIN streams AS s ON s.StreamId = d.StreamId
WHERE s.AggregationTemporality = 1
  AND d.Count > 0;
-- The window's bucket counts per metric and dimensions. (The nodes behind
-- them are those of the counters that count the same launches and ends.)
DROP TABLE IF EXISTS temp.histograms;
CREATE TEMP TABLE histograms AS
SELECT MetricName, Model, GpuName, FailureReason,
       bucket_delta_sum(EndBuckets, StartBuckets) AS Buckets
FROM histogram_streams
GROUP BY 1, 2, 3, 4;
