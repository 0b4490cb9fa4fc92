-- Which model/hardware combinations produce long launch times or short uptimes?
-- launch_p50_ms, launch_p90_ms: successful launches only, interpolated
-- within their histogram bucket. ended: unloads + unexpected exits.
WITH counts AS (
    SELECT Model, GpuName,
           sum(Launches) AS L,
           sum(Unloads + Exits) AS D,
           uniqExact(NodeKey) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE MetricName IN ('mesh_llm_model_launch_total', 'mesh_llm_model_unload_total',
                         'mesh_llm_model_exit_unexpected_total')
    GROUP BY Model, GpuName
),
times AS (
    SELECT Model, GpuName,
           sumForEachIf(Buckets, MetricName = 'mesh_llm_model_launch_duration_ms'
                                 AND FailureReason IS NULL) AS Launch,
           sumForEachIf(Buckets, MetricName = 'mesh_llm_model_uptime_s') AS Uptime,
           survey_bounds('mesh_llm_model_launch_duration_ms') AS LaunchBounds,
           survey_bounds('mesh_llm_model_uptime_s') AS UptimeBounds
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName IN ('mesh_llm_model_launch_duration_ms', 'mesh_llm_model_uptime_s')
    GROUP BY Model, GpuName
)
SELECT c.Model AS model,
       c.GpuName AS gpu_name,
       toInt64(c.L) AS launches,
       survey_quantile(0.5, t.LaunchBounds, t.Launch) AS launch_p50_ms,
       survey_quantile(0.9, t.LaunchBounds, t.Launch) AS launch_p90_ms,
       toInt64(c.D) AS ended,
       survey_quantile(0.5, t.UptimeBounds, t.Uptime) AS uptime_p50_s,
       c.N AS nodes
FROM counts AS c
LEFT JOIN times AS t ON isNotDistinctFrom(t.Model, c.Model) AND isNotDistinctFrom(t.GpuName, c.GpuName)
WHERE c.L + c.D > 0
  AND c.L >= {min_launches:UInt64}
ORDER BY launch_p90_ms DESC NULLS LAST, uptime_p50_s ASC NULLS LAST, model ASC NULLS LAST,
         gpu_name ASC NULLS LAST
SETTINGS join_use_nulls = 1
