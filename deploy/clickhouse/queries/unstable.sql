-- Which models have poor stability after successful launch?
-- exits_per_success: unexpected exits / successful launches.
-- uptime_p50_s: median uptime of every instance that ended in the window,
-- interpolated within its bucket.
WITH counts AS (
    SELECT Model,
           sum(Launches) AS L,
           sum(Successes) AS S,
           sum(Exits) AS E,
           uniqExact(NodeKey) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE MetricName IN ('mesh_llm_model_launch_total', 'mesh_llm_model_launch_success_total',
                         'mesh_llm_model_unload_total', 'mesh_llm_model_exit_unexpected_total')
    GROUP BY Model
),
uptime AS (
    SELECT Model, sumForEach(Buckets) AS Uptime,
           survey_bounds('mesh_llm_model_uptime_s') AS UptimeBounds
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName = 'mesh_llm_model_uptime_s'
    GROUP BY Model
)
SELECT c.Model AS model,
       toInt64(c.L) AS launches,
       toInt64(c.S) AS successes,
       toInt64(c.E) AS unexpected_exits,
       c.E / nullIf(c.S, 0) AS exits_per_success,
       survey_quantile(0.5, u.UptimeBounds, u.Uptime) AS uptime_p50_s,
       c.N AS nodes
FROM counts AS c
LEFT JOIN uptime AS u ON isNotDistinctFrom(u.Model, c.Model)
WHERE c.S + c.E > 0
  AND c.L >= {min_launches:UInt64}
ORDER BY exits_per_success DESC NULLS LAST, unexpected_exits DESC, model ASC NULLS LAST
SETTINGS join_use_nulls = 1
