-- The counting rule, written once: every count in the report comes from
-- window_counts. The window is [:since, :until) in UTC days since the epoch.
--
-- Per stream (one process's series) and component:
--   cumulative: the last value before :until minus the last value before
--     :since, "last" being the largest: a cumulative value only grows, so
--     repeated exports, retried requests and late points change nothing,
--     and the first point of a stream counts in full;
--   delta: the sum of the window's points (each point is stored once).
-- Totals add streams up.
DROP TABLE IF EXISTS temp.window_counts;
CREATE TEMP TABLE window_counts (
    StreamId INTEGER NOT NULL,
    Component INTEGER NOT NULL,
    N REAL NOT NULL,
    PRIMARY KEY (StreamId, Component)
);
INSERT INTO window_counts (StreamId, Component, N)
SELECT r.StreamId,
       r.Component,
       CASE s.AggregationTemporality
           WHEN 1 THEN total(CASE WHEN r.Day >= :since AND r.Day < :until THEN r.Value END)
           ELSE coalesce(max(CASE WHEN r.Day < :until THEN r.Value END), 0)
              - coalesce(max(CASE WHEN r.Day < :since THEN r.Value END), 0)
       END
FROM rollup_daily AS r
JOIN streams AS s ON s.StreamId = r.StreamId
WHERE s.Kind IN ('sum', 'histogram')
GROUP BY r.StreamId, r.Component;
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
WHERE s.Kind = 'sum' AND c.Component = -1 AND c.N > 0;
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
FROM window_counts AS c
JOIN streams AS s ON s.StreamId = c.StreamId
JOIN histogram_buckets AS b ON b.MetricName = s.MetricName AND b.Bucket = c.Component
WHERE s.Kind = 'histogram' AND c.N > 0;
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
  AND r.Component = -1
  AND r.Day >= :since
  AND r.Day < :until
GROUP BY r.StreamId;
