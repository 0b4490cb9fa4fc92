-- Which models have poor stability after successful launch?
-- exits_per_success: unexpected exits / successful launches.
-- uptime_p50_s: median uptime of every instance that ended in the window
-- (the uptime histogram does not tell unloads from exits), interpolated
-- within its bucket.
WITH counts AS (
    SELECT Model AS model,
           total(launches) AS launches,
           total(successes) AS successes,
           total(exits) AS exits,
           count(DISTINCT CASE WHEN launches + successes + unloads + exits > 0 THEN Node END)
             AS nodes
    FROM lifecycle
    GROUP BY Model
),
uptime AS (
    SELECT Model AS model,
           histogram_quantile(0.5, MetricName, Buckets) AS p50
    FROM histograms
    WHERE MetricName = 'mesh_llm_model_uptime_s'
    GROUP BY Model
)
SELECT c.model,
       CAST(c.launches AS INTEGER) AS launches,
       CAST(c.successes AS INTEGER) AS successes,
       CAST(c.exits AS INTEGER) AS unexpected_exits,
       c.exits / nullif(c.successes, 0) AS exits_per_success,
       u.p50 AS uptime_p50_s,
       c.nodes
FROM counts AS c
LEFT JOIN uptime AS u ON u.model IS c.model
WHERE c.successes + c.exits > 0
  AND c.launches >= :min_launches
ORDER BY exits_per_success DESC NULLS LAST, unexpected_exits DESC, c.model NULLS LAST;
