-- Which models are most frequently launched?
-- nodes: distinct node processes (service.instance.id) that launched it.
SELECT Model AS model,
       CAST(total(launches) AS INTEGER) AS launches,
       count(DISTINCT Node) AS nodes
FROM lifecycle
WHERE launches > 0
GROUP BY Model
HAVING total(launches) >= :min_launches
ORDER BY launches DESC, model NULLS LAST;
