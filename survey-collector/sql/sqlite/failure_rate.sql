-- Which models have the highest launch failure rate?
-- failure_rate: failures / completed launches (successes + failures).
WITH counts AS (
    SELECT s.Model AS model,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_total' THEN c.N END) AS launches,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_success_total' THEN c.N END) AS successes,
           total(CASE WHEN s.MetricName = 'mesh_llm_model_launch_failure_total' THEN c.N END) AS failures
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    WHERE c.Component = -1
      AND s.MetricName IN ('mesh_llm_model_launch_total',
                           'mesh_llm_model_launch_success_total',
                           'mesh_llm_model_launch_failure_total')
    GROUP BY s.Model
),
by_reason AS (
    SELECT s.Model AS model,
           coalesce(s.FailureReason, 'other') AS reason,
           CAST(total(c.N) AS INTEGER) AS n
    FROM window_counts AS c
    JOIN streams AS s ON s.StreamId = c.StreamId
    WHERE c.Component = -1
      AND c.N > 0
      AND s.MetricName = 'mesh_llm_model_launch_failure_total'
    GROUP BY 1, 2
    ORDER BY 1, 2
),
reasons AS (
    SELECT model, json_group_object(reason, n) AS reasons
    FROM by_reason
    GROUP BY model
)
SELECT c.model,
       CAST(c.launches AS INTEGER) AS launches,
       CAST(c.successes AS INTEGER) AS successes,
       CAST(c.failures AS INTEGER) AS failures,
       c.failures / nullif(c.successes + c.failures, 0) AS failure_rate,
       coalesce(r.reasons, '{}') AS reasons
FROM counts AS c
LEFT JOIN reasons AS r ON r.model IS c.model
WHERE c.launches + c.successes + c.failures > 0
  AND c.launches >= :min_launches
ORDER BY failure_rate DESC NULLS LAST, failures DESC, launches DESC, c.model NULLS LAST;
