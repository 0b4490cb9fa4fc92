-- Which model/hardware combinations produce long launch times or short uptimes?
-- launch_p50_ms, launch_p90_ms: successful launches only, interpolated
-- within their histogram bucket. ended: unloads + unexpected exits.
WITH counts AS (
    SELECT Model, GpuName,
           sum(Launches) AS L,
           sum(Unloads + Exits) AS D,
           uniqExactIf(Node, Launches + Unloads + Exits > 0) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    GROUP BY Model, GpuName
),
launch_time AS (
    SELECT Model, GpuName,
           survey_quantile(0.5, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P50,
           survey_quantile(0.9, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P90
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName = 'mesh_llm_model_launch_duration_ms'
      AND FailureReason IS NULL
    GROUP BY Model, GpuName
),
uptime AS (
    SELECT Model, GpuName,
           survey_quantile(0.5, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P50
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName = 'mesh_llm_model_uptime_s'
    GROUP BY Model, GpuName
)
SELECT c.Model AS model,
       c.GpuName AS gpu_name,
       toInt64(c.L) AS launches,
       l.P50 AS launch_p50_ms,
       l.P90 AS launch_p90_ms,
       toInt64(c.D) AS ended,
       u.P50 AS uptime_p50_s,
       c.N AS nodes
FROM counts AS c
LEFT JOIN launch_time AS l ON isNotDistinctFrom(l.Model, c.Model) AND isNotDistinctFrom(l.GpuName, c.GpuName)
LEFT JOIN uptime AS u ON isNotDistinctFrom(u.Model, c.Model) AND isNotDistinctFrom(u.GpuName, c.GpuName)
WHERE c.L + c.D > 0
  AND c.L >= {min_launches:UInt64}
ORDER BY launch_p90_ms DESC NULLS LAST, uptime_p50_s ASC NULLS LAST, model ASC NULLS LAST,
         gpu_name ASC NULLS LAST
SETTINGS join_use_nulls = 1
