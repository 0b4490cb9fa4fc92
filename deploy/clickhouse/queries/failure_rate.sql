-- Which models have the highest launch failure rate?
-- failure_rate: failures / completed launches (successes + failures).
-- One read of the view: per model and failure reason, then per model.
WITH per_reason AS (
    SELECT Model, coalesce(FailureReason, 'other') AS Reason,
           sum(Launches) AS L,
           sum(Successes) AS S,
           sum(Failures) AS F,
           uniqExactState(NodeKey) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE MetricName IN ('mesh_llm_model_launch_total', 'mesh_llm_model_launch_success_total',
                         'mesh_llm_model_launch_failure_total')
    GROUP BY Model, Reason
),
per_model AS (
    SELECT Model,
           sum(L) AS Launched,
           sum(S) AS Succeeded,
           sum(F) AS Failed,
           uniqExactMerge(N) AS Nodes,
           CAST(sumMapIf([Reason], [toInt64(F)], F > 0), 'Map(String, Int64)') AS Reasons
    FROM per_reason
    GROUP BY Model
)
SELECT Model AS model,
       toInt64(Launched) AS launches,
       toInt64(Succeeded) AS successes,
       toInt64(Failed) AS failures,
       Failed / nullIf(Succeeded + Failed, 0) AS failure_rate,
       mapSort(Reasons) AS reasons,
       Nodes AS nodes
FROM per_model
WHERE Launched >= {min_launches:UInt64}
ORDER BY failure_rate DESC NULLS LAST, failures DESC, launches DESC, model ASC NULLS LAST
