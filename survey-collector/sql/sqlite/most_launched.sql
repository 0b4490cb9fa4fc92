-- Which models are most frequently launched?
-- nodes: distinct node processes (service.instance.id) that launched it.
SELECT s.Model AS model,
       CAST(total(c.N) AS INTEGER) AS launches,
       count(DISTINCT s.Node) AS nodes
FROM window_counts AS c
JOIN streams AS s ON s.StreamId = c.StreamId
WHERE s.MetricName = 'mesh_llm_model_launch_total'
  AND c.Component = -1
  AND c.N > 0
GROUP BY s.Model
HAVING total(c.N) >= :min_launches
ORDER BY launches DESC, model NULLS LAST;
