-- Which model/hardware combinations produce long launch times or short uptimes?
-- launch_p50_ms, launch_p90_ms: successful launches only, interpolated
-- within their histogram bucket. ended: unloads + unexpected exits.
WITH counts AS (
    SELECT s.Model AS model,
           s.GpuName AS gpu_name,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_total' THEN c.N END) AS launches,
           total(CASE WHEN s.MetricName IN ('mesh_llm_model_unload_total',
                                            'mesh_llm_model_exit_unexpected_total')
                      THEN c.N END) AS ended
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    WHERE c.Component = -1
      AND s.MetricName IN ('mesh_llm_model_launch_total',
                           'mesh_llm_model_unload_total',
                           'mesh_llm_model_exit_unexpected_total')
    GROUP BY 1, 2
),
launch_time AS (
    SELECT s.Model AS model,
           s.GpuName AS gpu_name,
           histogram_quantile(0.5, b.LowerBound, b.UpperBound, c.N) AS p50,
           histogram_quantile(0.9, b.LowerBound, b.UpperBound, c.N) AS p90
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    JOIN histogram_buckets AS b ON b.MetricName = s.MetricName AND b.Bucket = c.Component
    WHERE s.MetricName = 'mesh_llm_model_launch_duration_ms'
      AND s.FailureReason IS NULL
    GROUP BY 1, 2
),
uptime AS (
    SELECT s.Model AS model,
           s.GpuName AS gpu_name,
           histogram_quantile(0.5, b.LowerBound, b.UpperBound, c.N) AS p50
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    JOIN histogram_buckets AS b ON b.MetricName = s.MetricName AND b.Bucket = c.Component
    WHERE s.MetricName = 'mesh_llm_model_uptime_s'
    GROUP BY 1, 2
)
SELECT c.model,
       c.gpu_name,
       CAST(c.launches AS INTEGER) AS launches,
       l.p50 AS launch_p50_ms,
       l.p90 AS launch_p90_ms,
       CAST(c.ended AS INTEGER) AS ended,
       u.p50 AS uptime_p50_s
FROM counts AS c
LEFT JOIN launch_time AS l ON l.model IS c.model AND l.gpu_name IS c.gpu_name
LEFT JOIN uptime AS u ON u.model IS c.model AND u.gpu_name IS c.gpu_name
WHERE c.launches + c.ended > 0
  AND c.launches >= :min_launches
ORDER BY launch_p90_ms DESC NULLS LAST, uptime_p50_s NULLS LAST, c.model NULLS LAST,
         c.gpu_name NULLS LAST;
