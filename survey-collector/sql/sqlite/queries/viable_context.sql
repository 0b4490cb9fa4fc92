-- Which context sizes are viable for each model/hardware combination?
-- success_rate: successes / completed launches (successes + failures).
-- max_context: the largest exact context length seen loaded in the window
-- (mesh_llm_model_context_length); null if never seen at an export.
WITH evidence AS (
    SELECT Node, Model, GpuName, ContextBucket, launches, successes, failures,
           NULL AS context
    FROM lifecycle
    WHERE launches + successes + failures > 0
    UNION ALL
    SELECT Node, Model, GpuName, ContextBucket, 0, 0, 0, Value
    FROM contexts
)
SELECT Model AS model,
       GpuName AS gpu_name,
       ContextBucket AS context_bucket,
       CAST(total(launches) AS INTEGER) AS launches,
       CAST(total(successes) AS INTEGER) AS successes,
       CAST(total(failures) AS INTEGER) AS failures,
       total(successes) / nullif(total(successes) + total(failures), 0) AS success_rate,
       CAST(max(context) AS INTEGER) AS max_context,
       count(DISTINCT Node) AS nodes
FROM evidence
GROUP BY 1, 2, 3
HAVING total(launches) >= :min_launches
ORDER BY model NULLS LAST, gpu_name NULLS LAST,
         CASE context_bucket
             WHEN '<=8k' THEN 1 WHEN '8k_16k' THEN 2 WHEN '16k_32k' THEN 3
             WHEN '32k_64k' THEN 4 WHEN '64k_128k' THEN 5 WHEN '>128k' THEN 6
             ELSE 7
         END;
