-- Which hardware/model combinations are most reliable?
-- reliability: the share of completed launches (successes + failures) that
-- neither failed nor later exited unexpectedly, with its 95% Wilson
-- interval (z = 1.96), which ranks a combination by what the evidence
-- supports: 1 success of 1 ranks below 95 of 100.
WITH counts AS (
    SELECT Model AS model,
           GpuName AS gpu_name,
           BackendDevice AS backend_device,
           GpuCount AS gpu_count,
           total(launches) AS launches,
           total(successes) AS successes,
           total(failures) AS failures,
           total(exits) AS exits,
           count(DISTINCT Node) AS nodes
    FROM lifecycle
    WHERE launches + successes + failures + exits > 0
    GROUP BY 1, 2, 3, 4
),
rated AS (
    SELECT *,
           successes + failures AS completed,
           CAST(max(successes - exits, 0) AS REAL) / nullif(successes + failures, 0) AS p,
           1.96 AS z
    FROM counts
    WHERE launches >= :min_launches
)
SELECT model,
       gpu_name,
       backend_device,
       gpu_count,
       CAST(launches AS INTEGER) AS launches,
       CAST(successes AS INTEGER) AS successes,
       CAST(failures AS INTEGER) AS failures,
       CAST(exits AS INTEGER) AS unexpected_exits,
       p AS reliability,
       (p + z * z / (2 * completed)
          - z * sqrt(p * (1 - p) / completed + z * z / (4 * completed * completed)))
         / (1 + z * z / completed) AS reliability_low,
       (p + z * z / (2 * completed)
          + z * sqrt(p * (1 - p) / completed + z * z / (4 * completed * completed)))
         / (1 + z * z / completed) AS reliability_high,
       nodes
FROM rated
ORDER BY reliability_low DESC NULLS LAST, launches DESC, model NULLS LAST, gpu_name NULLS LAST,
         backend_device NULLS LAST, gpu_count NULLS LAST;
