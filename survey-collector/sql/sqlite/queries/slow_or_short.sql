-- Which model/hardware combinations produce long launch times or short uptimes?
-- launch_p50_ms, launch_p90_ms: successful launches only, interpolated
-- within their histogram bucket. ended: unloads + unexpected exits.
WITH counts AS (
    SELECT Model AS model,
           GpuName AS gpu_name,
           total(launches) AS launches,
           total(unloads + exits) AS ended,
           count(DISTINCT CASE WHEN launches + unloads + exits > 0 THEN Node END) AS nodes
    FROM lifecycle
    GROUP BY 1, 2
),
launch_time AS (
    SELECT Model AS model,
           GpuName AS gpu_name,
           histogram_quantile(0.5, MetricName, Buckets) AS p50,
           histogram_quantile(0.9, MetricName, Buckets) AS p90
    FROM histograms
    WHERE MetricName = 'mesh_llm_model_launch_duration_ms'
      AND FailureReason IS NULL
    GROUP BY 1, 2
),
uptime AS (
    SELECT Model AS model,
           GpuName AS gpu_name,
           histogram_quantile(0.5, MetricName, Buckets) AS p50
    FROM histograms
    WHERE MetricName = 'mesh_llm_model_uptime_s'
    GROUP BY 1, 2
)
SELECT c.model,
       c.gpu_name,
       CAST(c.launches AS INTEGER) AS launches,
       l.p50 AS launch_p50_ms,
       l.p90 AS launch_p90_ms,
       CAST(c.ended AS INTEGER) AS ended,
       u.p50 AS uptime_p50_s,
       c.nodes
FROM counts AS c
LEFT JOIN launch_time AS l ON l.model IS c.model AND l.gpu_name IS c.gpu_name
LEFT JOIN uptime AS u ON u.model IS c.model AND u.gpu_name IS c.gpu_name
WHERE c.launches + c.ended > 0
  AND c.launches >= :min_launches
ORDER BY launch_p90_ms DESC NULLS LAST, uptime_p50_s NULLS LAST, c.model NULLS LAST,
         c.gpu_name NULLS LAST;
