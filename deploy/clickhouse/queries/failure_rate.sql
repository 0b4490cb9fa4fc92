-- Which models have the highest launch failure rate?
-- failure_rate: failures / completed launches (successes + failures).
WITH per_model AS (
    SELECT Model,
           sum(Launches) AS L,
           sum(Successes) AS S,
           sum(Failures) AS F,
           uniqExact(Node) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE Launches + Successes + Failures > 0
    GROUP BY Model
),
by_reason AS (
    SELECT Model, coalesce(FailureReason, 'other') AS Reason, toInt64(sum(Failures)) AS R
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE Failures > 0
    GROUP BY Model, Reason
),
reasons AS (
    SELECT Model, CAST((groupArray(Reason), groupArray(R)), 'Map(String, Int64)') AS Reasons
    FROM by_reason
    GROUP BY Model
)
SELECT p.Model AS model,
       toInt64(p.L) AS launches,
       toInt64(p.S) AS successes,
       toInt64(p.F) AS failures,
       p.F / nullIf(p.S + p.F, 0) AS failure_rate,
       mapSort(r.Reasons) AS reasons,
       p.N AS nodes
FROM per_model AS p
LEFT JOIN reasons AS r ON isNotDistinctFrom(r.Model, p.Model)
WHERE p.L >= {min_launches:UInt64}
ORDER BY failure_rate DESC NULLS LAST, failures DESC, launches DESC, model ASC NULLS LAST
SETTINGS join_use_nulls = 1
