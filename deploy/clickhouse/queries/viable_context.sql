-- Which context sizes are viable for each model/hardware combination?
-- success_rate: successes / completed launches (successes + failures).
-- max_context: the largest exact context length seen loaded in the window.
WITH evidence AS (
    SELECT NodeKey, Model, GpuName, ContextBucket, Launches, Successes, Failures,
           CAST(NULL, 'Nullable(Float64)') AS Context
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE MetricName IN ('mesh_llm_model_launch_total', 'mesh_llm_model_launch_success_total',
                         'mesh_llm_model_launch_failure_total')
    UNION ALL
    SELECT NodeKey, Model, GpuName, ContextBucket, toFloat64(0), toFloat64(0), toFloat64(0),
           CAST(Context, 'Nullable(Float64)')
    FROM survey.contexts(since = {since:Date}, until = {until:Date})
)
SELECT Model AS model,
       GpuName AS gpu_name,
       ContextBucket AS context_bucket,
       toInt64(sum(Launches)) AS launches,
       toInt64(sum(Successes)) AS successes,
       toInt64(sum(Failures)) AS failures,
       sum(Successes) / nullIf(sum(Successes) + sum(Failures), 0) AS success_rate,
       CAST(max(Context), 'Nullable(Int64)') AS max_context,
       uniqExact(NodeKey) AS nodes
FROM evidence
GROUP BY Model, GpuName, ContextBucket
HAVING sum(Launches) >= {min_launches:UInt64}
ORDER BY model ASC NULLS LAST, gpu_name ASC NULLS LAST,
         multiIf(context_bucket = '<=8k', 1, context_bucket = '8k_16k', 2,
                 context_bucket = '16k_32k', 3, context_bucket = '32k_64k', 4,
                 context_bucket = '64k_128k', 5, context_bucket = '>128k', 6, 7)
