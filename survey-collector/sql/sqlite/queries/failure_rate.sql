-- Which models have the highest launch failure rate?
-- failure_rate: failures / completed launches (successes + failures).
WITH per_model AS (
    SELECT Model AS model,
           total(launches) AS launches,
           total(successes) AS successes,
           total(failures) AS failures,
           count(DISTINCT Node) AS nodes
    FROM lifecycle
    WHERE launches + successes + failures > 0
    GROUP BY Model
),
by_reason AS (
    SELECT Model AS model,
           coalesce(FailureReason, 'other') AS reason,
           CAST(total(failures) AS INTEGER) AS n
    FROM lifecycle
    WHERE failures > 0
    GROUP BY 1, 2
    ORDER BY 1, 2
),
reasons AS (
    SELECT model, json_group_object(reason, n) AS reasons
    FROM by_reason
    GROUP BY model
)
SELECT p.model,
       CAST(p.launches AS INTEGER) AS launches,
       CAST(p.successes AS INTEGER) AS successes,
       CAST(p.failures AS INTEGER) AS failures,
       p.failures / nullif(p.successes + p.failures, 0) AS failure_rate,
       coalesce(r.reasons, '{}') AS reasons,
       p.nodes
FROM per_model AS p
LEFT JOIN reasons AS r ON r.model IS p.model
WHERE p.launches >= :min_launches
ORDER BY failure_rate DESC NULLS LAST, failures DESC, launches DESC, p.model NULLS LAST;
