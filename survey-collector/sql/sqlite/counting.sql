-- The counting rule, written once: every count in the report comes from
-- window_counts. The window is [:since, :until) in UTC days since the epoch.
--
-- Per stream (one process's series) and component:
--   cumulative: the last value before :until minus the last value before
--     :since, "last" being the largest: a cumulative value only grows, so
--     repeated exports, retried requests and late points change nothing,
--     and the first point of a stream counts in full;
--   delta: the sum of the window's points (each point is stored once).
-- Totals add streams up.
DROP TABLE IF EXISTS temp.window_counts;
CREATE TEMP TABLE window_counts (
    StreamId INTEGER NOT NULL,
    Component INTEGER NOT NULL,
    N REAL NOT NULL,
    PRIMARY KEY (StreamId, Component)
);
INSERT INTO window_counts (StreamId, Component, N)
SELECT r.StreamId,
       r.Component,
       CASE s.AggregationTemporality
           WHEN 1 THEN total(CASE WHEN r.Day >= :since AND r.Day < :until THEN r.Value END)
           ELSE coalesce(max(CASE WHEN r.Day < :until THEN r.Value END), 0)
              - coalesce(max(CASE WHEN r.Day < :since THEN r.Value END), 0)
       END
FROM rollup_daily AS r
JOIN streams AS s ON s.StreamId = r.StreamId
WHERE s.Kind IN ('sum', 'histogram')
GROUP BY r.StreamId, r.Component;
-- Gauges are snapshots: the largest value each stream showed in the window.
DROP TABLE IF EXISTS temp.window_gauges;
CREATE TEMP TABLE window_gauges (
    StreamId INTEGER PRIMARY KEY,
    Value REAL NOT NULL
);
INSERT INTO window_gauges (StreamId, Value)
SELECT r.StreamId, max(r.Value)
FROM rollup_daily AS r
JOIN streams AS s ON s.StreamId = r.StreamId
WHERE s.Kind = 'gauge' AND r.Component = -1 AND r.Day >= :since AND r.Day < :until
GROUP BY r.StreamId;
