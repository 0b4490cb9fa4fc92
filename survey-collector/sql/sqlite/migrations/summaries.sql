-- survey-collector storage: schema version 2 (PRAGMA user_version).
--
-- What lets the report read one narrow index instead of every rollup row:
-- each stream's summary (its first and last day, and its value over its
-- whole life), and the report's grouping unit, the series.

-- One row per node process (service.instance.id).
CREATE TABLE nodes (
    NodeId INTEGER PRIMARY KEY,
    Node TEXT NOT NULL UNIQUE
);

-- One row per node and report dimensions: the streams of one node's
-- launches of one model on one hardware with one context bucket (and one
-- failure reason) share a series, whatever their metric.
CREATE TABLE series (
    SeriesId INTEGER PRIMARY KEY,
    NodeId INTEGER NOT NULL REFERENCES nodes (NodeId),
    Model TEXT,
    GpuName TEXT,
    BackendDevice TEXT,
    GpuCount INTEGER,
    ContextBucket TEXT,
    FailureReason TEXT
);

-- Absent dimensions are equal to each other here (an empty blob is never
-- equal to a text or an integer).
CREATE UNIQUE INDEX series_identity ON series (
    NodeId, ifnull(Model, X''), ifnull(GpuName, X''), ifnull(BackendDevice, X''),
    ifnull(GpuCount, X''), ifnull(ContextBucket, X''), ifnull(FailureReason, X'')
);

-- The stream's summary, kept by ingest with its rollup rows:
--   FirstDay, LastDay: the first and last day it has rollup rows on;
--   Whole: its value over every day: the largest value of a cumulative sum,
--     the total of a delta sum, the largest value of a gauge, a histogram's
--     count (largest if cumulative, total if delta);
--   WholeBuckets: a histogram's bucket counts (JSON) at that count (the
--     earliest day's, if several days reach it), or their totals for a
--     delta histogram;
--   WholeSum: a histogram's sum, likewise (no longer kept: version 3 drops
--     it);
--   WholeDay: the day of that count, for a cumulative histogram.
-- A report window holding a stream's whole life takes Whole and reads none
-- of its rollup rows.
ALTER TABLE streams ADD COLUMN SeriesId INTEGER REFERENCES series (SeriesId);
ALTER TABLE streams ADD COLUMN FirstDay INTEGER;
ALTER TABLE streams ADD COLUMN LastDay INTEGER;
ALTER TABLE streams ADD COLUMN Whole REAL;
ALTER TABLE streams ADD COLUMN WholeSum REAL;
ALTER TABLE streams ADD COLUMN WholeBuckets TEXT;
ALTER TABLE streams ADD COLUMN WholeDay INTEGER;

-- What the report scans, in series order, without touching the table.
CREATE INDEX streams_for_report ON streams (
    Kind, SeriesId, MetricName, AggregationTemporality, FirstDay, LastDay, Whole, WholeBuckets
);
