-- Which models are most frequently launched?
-- nodes: distinct node processes (service.instance.id) that launched it.
SELECT Model AS model,
       toInt64(sum(Launches)) AS launches,
       uniqExact(NodeKey) AS nodes
FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
-- The launch counter's rows (the view holds only rows that count).
WHERE MetricName = 'mesh_llm_model_launch_total'
GROUP BY Model
HAVING sum(Launches) >= {min_launches:UInt64}
ORDER BY launches DESC, model ASC NULLS LAST
