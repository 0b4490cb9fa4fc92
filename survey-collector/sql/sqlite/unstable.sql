-- Which models have poor stability after successful launch?
-- exits_per_success: unexpected exits / successful launches.
-- uptime_p50_s: median uptime of every instance that ended in the window
-- (the uptime histogram does not tell unloads from exits), interpolated
-- within its bucket.
WITH counts AS (
    SELECT s.Model AS model,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_total' THEN c.N END) AS launches,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_success_total' THEN c.N END) AS successes,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_exit_unexpected_total' THEN c.N END) AS exits
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    WHERE c.Component = -1
      AND s.MetricName IN ('mesh_llm_model_launch_total',
                           'mesh_llm_model_launch_success_total',
                           'mesh_llm_model_exit_unexpected_total')
    GROUP BY 1
),
uptime AS (
    SELECT s.Model AS model,
           histogram_quantile(0.5, b.LowerBound, b.UpperBound, c.N) AS uptime_p50_s
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    JOIN histogram_buckets AS b ON b.MetricName = s.MetricName AND b.Bucket = c.Component
    WHERE s.MetricName = 'mesh_llm_model_uptime_s'
    GROUP BY 1
)
SELECT c.model,
       CAST(c.launches AS INTEGER) AS launches,
       CAST(c.successes AS INTEGER) AS successes,
       CAST(c.exits AS INTEGER) AS unexpected_exits,
       c.exits / nullif(c.successes, 0) AS exits_per_success,
       u.uptime_p50_s
FROM counts AS c
LEFT JOIN uptime AS u ON u.model IS c.model
WHERE c.successes + c.exits > 0
  AND c.launches >= :min_launches
ORDER BY exits_per_success DESC NULLS LAST, unexpected_exits DESC, c.model NULLS LAST;
