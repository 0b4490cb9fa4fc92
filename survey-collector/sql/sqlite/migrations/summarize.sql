-- Every stream's series and summary, rebuilt from its rollup rows: the
-- upgrade to schema version 2 runs it on the streams stored before, and
-- `Store::summarize_all` on streams written into the tables directly.
-- Ingest keeps the same values point by point; a test checks they agree.
-- Everything is recomputed: the summaries are cleared first.
UPDATE streams
SET SeriesId = NULL, FirstDay = NULL, LastDay = NULL, Whole = NULL, WholeBuckets = NULL,
    WholeDay = NULL;
INSERT INTO nodes (Node) SELECT DISTINCT Node FROM streams WHERE true
ON CONFLICT DO NOTHING;
INSERT INTO series (NodeId, Model, GpuName, BackendDevice, GpuCount, ContextBucket, FailureReason)
SELECT DISTINCT n.NodeId, s.Model, s.GpuName, s.BackendDevice, s.GpuCount, s.ContextBucket,
       s.FailureReason
FROM streams AS s
JOIN nodes AS n ON n.Node = s.Node
WHERE true
ON CONFLICT DO NOTHING;
UPDATE streams
SET SeriesId = (
    SELECT se.SeriesId
    FROM series AS se
    JOIN nodes AS n ON n.NodeId = se.NodeId
    WHERE n.Node = streams.Node
      AND ifnull(se.Model, X'') = ifnull(streams.Model, X'')
      AND ifnull(se.GpuName, X'') = ifnull(streams.GpuName, X'')
      AND ifnull(se.BackendDevice, X'') = ifnull(streams.BackendDevice, X'')
      AND ifnull(se.GpuCount, X'') = ifnull(streams.GpuCount, X'')
      AND ifnull(se.ContextBucket, X'') = ifnull(streams.ContextBucket, X'')
      AND ifnull(se.FailureReason, X'') = ifnull(streams.FailureReason, X'')
);
UPDATE streams
SET (FirstDay, LastDay, Whole) = (
    SELECT min(r.Day), max(r.Day),
           CASE streams.AggregationTemporality WHEN 1 THEN total(r.Value) ELSE max(r.Value) END
    FROM rollup_daily AS r
    WHERE r.StreamId = streams.StreamId
)
WHERE Kind <> 'histogram';
UPDATE streams
SET (FirstDay, LastDay, Whole, WholeBuckets) = (
    SELECT min(r.Day), max(r.Day), total(r.Count), bucket_delta_sum(r.BucketCounts, NULL)
    FROM rollup_histogram_daily AS r
    WHERE r.StreamId = streams.StreamId
)
WHERE Kind = 'histogram' AND AggregationTemporality = 1;
UPDATE streams
SET (FirstDay, LastDay) = (
    SELECT min(r.Day), max(r.Day)
    FROM rollup_histogram_daily AS r
    WHERE r.StreamId = streams.StreamId
),
(Whole, WholeBuckets, WholeDay) = (
    SELECT r.Count, r.BucketCounts, r.Day
    FROM rollup_histogram_daily AS r
    WHERE r.StreamId = streams.StreamId
    ORDER BY r.Count DESC, r.Day
    LIMIT 1
)
WHERE Kind = 'histogram' AND AggregationTemporality <> 1;
