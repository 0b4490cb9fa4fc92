-- The counting rule as the report applies it (docs/counting-rule.md
-- states it and names its other implementations): every count in the
-- report comes from the tables made here. The window is [:since, :until)
-- in UTC days since the epoch.
--
-- Per stream (one process's series):
--   cumulative: the last value before :until minus the last value before
--     :since, "last" being the largest: a cumulative value only grows, so
--     repeated exports, retried requests and late points change nothing,
--     and the first point of a stream counts in full;
--   delta: the sum of the window's points (each point is stored once).
-- Histograms the same way, bucket by bucket. Totals add streams up.
--
-- A stream whose rollup rows all lie inside the window counts its whole
-- value (streams.Whole, kept by ingest); one with none inside counts
-- nothing; only a stream the window cuts reads its rollup rows.
--
-- The counters, side by side, per series (a node and the report's
-- dimensions): what the questions add up. The five lifecycle counters,
-- then the inference requests (opt-in): all of them, and those answered
-- in full (outcome `ok`). The outcome is the stream's, not the series',
-- and only the requests counter has one (validation sees to it).
DROP TABLE IF EXISTS temp.lifecycle;
CREATE TEMP TABLE lifecycle AS
WITH counts AS (
    SELECT s.SeriesId, s.MetricName, s.RequestOutcome,
           CASE
               WHEN s.FirstDay IS NULL OR s.LastDay < :since OR s.FirstDay >= :until THEN 0
               WHEN s.FirstDay >= :since AND s.LastDay < :until THEN s.Whole
               WHEN s.AggregationTemporality = 1 THEN (
                   SELECT total(r.Value) FROM rollup_daily AS r
                   WHERE r.StreamId = s.StreamId AND r.Day >= :since AND r.Day < :until)
               ELSE CASE
                        WHEN s.LastDay < :until THEN s.Whole
                        ELSE coalesce((SELECT max(r.Value) FROM rollup_daily AS r
                                       WHERE r.StreamId = s.StreamId AND r.Day < :until), 0)
                    END
                  - CASE
                        WHEN s.FirstDay >= :since THEN 0
                        ELSE coalesce((SELECT max(r.Value) FROM rollup_daily AS r
                                       WHERE r.StreamId = s.StreamId AND r.Day < :since), 0)
                    END
           END AS N
    FROM streams AS s
    WHERE s.Kind = 'sum'
),
-- In the index's order: grouping sorts nothing.
per_series AS (
    SELECT SeriesId,
           total(CASE MetricName WHEN 'mesh_llm_model_launch_total' THEN N END) AS launches,
           total(CASE MetricName WHEN 'mesh_llm_model_launch_success_total' THEN N END) AS successes,
           total(CASE MetricName WHEN 'mesh_llm_model_launch_failure_total' THEN N END) AS failures,
           total(CASE MetricName WHEN 'mesh_llm_model_unload_total' THEN N END) AS unloads,
           total(CASE MetricName WHEN 'mesh_llm_model_exit_unexpected_total' THEN N END) AS exits,
           total(CASE MetricName WHEN 'mesh_llm_inference_requests_total' THEN N END) AS requests,
           total(CASE RequestOutcome WHEN 'ok' THEN N END) AS ok
    FROM counts
    WHERE N > 0
    GROUP BY SeriesId
)
SELECT se.NodeId AS Node, se.Model, se.GpuName, se.BackendDevice, se.GpuCount, se.ContextBucket,
       se.FailureReason, c.launches, c.successes, c.failures, c.unloads, c.exits, c.requests, c.ok
FROM per_series AS c
JOIN series AS se ON se.SeriesId = c.SeriesId;
-- The questions group by prefixes of this (model; model and GPU; model and
-- hardware), so they read it in order and sort nothing.
CREATE INDEX temp.lifecycle_by_hardware ON lifecycle (
    Model, GpuName, BackendDevice, GpuCount, Node, launches, successes, failures, unloads, exits,
    ContextBucket, FailureReason, requests, ok
);
-- Gauges are snapshots: the largest exact context length each node showed
-- in the window.
DROP TABLE IF EXISTS temp.contexts;
CREATE TEMP TABLE contexts AS
WITH window_max AS (
    SELECT s.SeriesId,
           CASE
               WHEN s.FirstDay IS NULL OR s.LastDay < :since OR s.FirstDay >= :until THEN NULL
               WHEN s.FirstDay >= :since AND s.LastDay < :until THEN s.Whole
               ELSE (SELECT max(r.Value) FROM rollup_daily AS r
                     WHERE r.StreamId = s.StreamId AND r.Day >= :since AND r.Day < :until)
           END AS Value
    FROM streams AS s
    WHERE s.Kind = 'gauge' AND s.MetricName = 'mesh_llm_model_context_length'
)
SELECT se.NodeId AS Node, se.Model, se.GpuName, se.ContextBucket, max(w.Value) AS Value
FROM window_max AS w
JOIN series AS se ON se.SeriesId = w.SeriesId
WHERE w.Value IS NOT NULL
GROUP BY 1, 2, 3, 4;
-- Histograms: per stream, the bucket counts at the window's end and start
-- (of the largest-count row before each, the earliest such row on a tie),
-- for a stream whose count grew in the window; for delta histograms, the
-- sum of the window's rows. Added up per metric and dimensions: model, GPU
-- and failure reason; for the inference metrics (named mesh_llm_inference_*),
-- device and context bucket too (NULL for the others, whose questions do not
-- ask: a longer key for every stream costs every report). (The nodes behind
-- them are those of the counters that count the same launches, ends and
-- requests.)
DROP TABLE IF EXISTS temp.histograms;
CREATE TEMP TABLE histograms AS
WITH streams_in_window AS (
    SELECT s.SeriesId, s.MetricName,
           CASE
               WHEN s.FirstDay >= :since AND s.LastDay < :until THEN s.Whole
               WHEN s.AggregationTemporality = 1 THEN (
                   SELECT total(r.Count) FROM rollup_histogram_daily AS r
                   WHERE r.StreamId = s.StreamId AND r.Day >= :since AND r.Day < :until)
               WHEN s.LastDay < :until THEN s.Whole
               ELSE (SELECT max(r.Count) FROM rollup_histogram_daily AS r
                     WHERE r.StreamId = s.StreamId AND r.Day < :until)
           END AS EndCount,
           CASE
               WHEN s.FirstDay >= :since OR s.AggregationTemporality = 1 THEN 0
               ELSE (SELECT max(r.Count) FROM rollup_histogram_daily AS r
                     WHERE r.StreamId = s.StreamId AND r.Day < :since)
           END AS StartCount,
           CASE
               WHEN s.FirstDay >= :since AND s.LastDay < :until THEN s.WholeBuckets
               WHEN s.AggregationTemporality = 1 THEN (
                   SELECT bucket_delta_sum(r.BucketCounts, NULL) FROM rollup_histogram_daily AS r
                   WHERE r.StreamId = s.StreamId AND r.Day >= :since AND r.Day < :until)
               WHEN s.LastDay < :until THEN s.WholeBuckets
               ELSE (SELECT r.BucketCounts FROM rollup_histogram_daily AS r
                     WHERE r.StreamId = s.StreamId AND r.Day < :until
                     ORDER BY r.Count DESC, r.Day LIMIT 1)
           END AS EndBuckets,
           CASE
               WHEN s.FirstDay >= :since OR s.AggregationTemporality = 1 THEN NULL
               ELSE (SELECT r.BucketCounts FROM rollup_histogram_daily AS r
                     WHERE r.StreamId = s.StreamId AND r.Day < :since
                     ORDER BY r.Count DESC, r.Day LIMIT 1)
           END AS StartBuckets
    FROM streams AS s
    WHERE s.Kind = 'histogram'
      AND s.LastDay >= :since AND s.FirstDay < :until
),
-- Grouped with bucket_delta_sums, which sorts nothing: many streams, few
-- groups.
totals AS (
    SELECT bucket_delta_sums(CASE
                                 WHEN h.MetricName LIKE 'mesh\_llm\_inference\_%' ESCAPE '\'
                                 THEN json_array(h.MetricName, se.Model, se.GpuName,
                                                 se.FailureReason, se.BackendDevice,
                                                 se.ContextBucket)
                                 ELSE json_array(h.MetricName, se.Model, se.GpuName,
                                                 se.FailureReason)
                             END,
                             h.EndBuckets, h.StartBuckets) AS PerGroup
    FROM streams_in_window AS h
    JOIN series AS se ON se.SeriesId = h.SeriesId
    WHERE h.EndCount > h.StartCount
)
SELECT json_extract(g.key, '$[0]') AS MetricName,
       json_extract(g.key, '$[1]') AS Model,
       json_extract(g.key, '$[2]') AS GpuName,
       json_extract(g.key, '$[3]') AS FailureReason,
       json_extract(g.key, '$[4]') AS BackendDevice,
       json_extract(g.key, '$[5]') AS ContextBucket,
       g.value AS Buckets
FROM totals AS t, json_each(t.PerGroup) AS g;
