-- Which hardware/model combinations are most reliable?
-- reliability: the share of completed launches (successes + failures) that
-- neither failed nor later exited unexpectedly, with its 95% Wilson
-- interval (z = 1.96).
WITH counts AS (
    SELECT Model, GpuName, BackendDevice, GpuCount,
           sum(Launches) AS L,
           sum(Successes) AS S,
           sum(Failures) AS F,
           sum(Exits) AS E,
           uniqExact(NodeKey) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE MetricName IN ('mesh_llm_model_launch_total', 'mesh_llm_model_launch_success_total',
                         'mesh_llm_model_launch_failure_total',
                         'mesh_llm_model_exit_unexpected_total')
    GROUP BY Model, GpuName, BackendDevice, GpuCount
),
rated AS (
    SELECT *,
           S + F AS C,
           greatest(S - E, 0) / nullIf(S + F, 0) AS P,
           1.96 AS Z
    FROM counts
    WHERE L >= {min_launches:UInt64}
)
SELECT Model AS model,
       GpuName AS gpu_name,
       BackendDevice AS backend_device,
       GpuCount AS gpu_count,
       toInt64(L) AS launches,
       toInt64(S) AS successes,
       toInt64(F) AS failures,
       toInt64(E) AS unexpected_exits,
       P AS reliability,
       (P + Z * Z / (2 * C) - Z * sqrt(P * (1 - P) / C + Z * Z / (4 * C * C))) / (1 + Z * Z / C)
         AS reliability_low,
       (P + Z * Z / (2 * C) + Z * sqrt(P * (1 - P) / C + Z * Z / (4 * C * C))) / (1 + Z * Z / C)
         AS reliability_high,
       N AS nodes
FROM rated
ORDER BY reliability_low DESC NULLS LAST, launches DESC, model ASC NULLS LAST,
         gpu_name ASC NULLS LAST, backend_device ASC NULLS LAST, gpu_count ASC NULLS LAST
