-- Which context sizes are viable for each model/hardware combination?
-- success_rate: successes / completed launches (successes + failures).
-- max_context: the largest exact context length seen loaded in the window
-- (mesh_llm_model_context_length); null if never seen at an export.
WITH counts AS (
    SELECT s.Model AS model,
           s.GpuName AS gpu_name,
           s.ContextBucket AS context_bucket,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_total' THEN c.N END) AS launches,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_success_total' THEN c.N END) AS successes,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_failure_total' THEN c.N END) AS failures
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    WHERE c.Component = -1
      AND s.MetricName IN ('mesh_llm_model_launch_total',
                           'mesh_llm_model_launch_success_total',
                           'mesh_llm_model_launch_failure_total')
    GROUP BY 1, 2, 3
),
contexts AS (
    SELECT s.Model AS model,
           s.GpuName AS gpu_name,
           s.ContextBucket AS context_bucket,
           max(g.Value) AS max_context
    FROM window_gauges AS g
    JOIN streams AS s ON s.StreamId = g.StreamId
    WHERE s.MetricName = 'mesh_llm_model_context_length'
    GROUP BY 1, 2, 3
),
combinations AS (
    SELECT model, gpu_name, context_bucket FROM counts
    WHERE launches + successes + failures > 0
    UNION
    SELECT model, gpu_name, context_bucket FROM contexts
)
SELECT k.model,
       k.gpu_name,
       k.context_bucket,
       CAST(coalesce(c.launches, 0) AS INTEGER) AS launches,
       CAST(coalesce(c.successes, 0) AS INTEGER) AS successes,
       CAST(coalesce(c.failures, 0) AS INTEGER) AS failures,
       c.successes / nullif(c.successes + c.failures, 0) AS success_rate,
       CAST(x.max_context AS INTEGER) AS max_context
FROM combinations AS k
LEFT JOIN counts AS c
       ON c.model IS k.model AND c.gpu_name IS k.gpu_name AND c.context_bucket IS k.context_bucket
LEFT JOIN contexts AS x
       ON x.model IS k.model AND x.gpu_name IS k.gpu_name AND x.context_bucket IS k.context_bucket
WHERE coalesce(c.launches, 0) >= :min_launches
ORDER BY k.model NULLS LAST, k.gpu_name NULLS LAST,
         CASE k.context_bucket
             WHEN '<=8k' THEN 1 WHEN '8k_16k' THEN 2 WHEN '16k_32k' THEN 3
             WHEN '32k_64k' THEN 4 WHEN '64k_128k' THEN 5 WHEN '>128k' THEN 6
             ELSE 7
         END;
