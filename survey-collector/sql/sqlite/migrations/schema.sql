-- survey-collector storage: schema version 1 (PRAGMA user_version).
--
-- Raw points live in three tables named and shaped like those of the
-- OpenTelemetry Collector's ClickHouse exporter (otel_metrics_sum,
-- otel_metrics_gauge, otel_metrics_histogram): the same column names in the
-- same order, with SQLite types. Differences: times are INTEGER nanoseconds
-- since the epoch; attribute maps are canonical JSON text (keys sorted,
-- values as text, as the exporter's Map(String, String) holds them);
-- BucketCounts and ExplicitBounds are JSON arrays; there are no Exemplars
-- columns (survey sends none, and points carrying any are rejected); a
-- StreamId column links each point to its stream. A raw point is stored only
-- when its stream's value changed, and kept for the retention period.
--
-- The report reads `streams` and the daily rollups, never the raw tables,
-- so its cost follows streams x days, not points.

-- One row per sending process (per distinct resource).
CREATE TABLE resources (
    ResourceId INTEGER PRIMARY KEY,
    ResourceAttributes TEXT NOT NULL UNIQUE,
    ServiceName TEXT NOT NULL,
    -- service.instance.id, or the whole resource of a node that predates it.
    Node TEXT NOT NULL
);

-- One row per stream: one process's series of one metric with one attribute
-- set, since one start time. The resource holds service.instance.id, so two
-- identical nodes are two streams, and a restarted node is a new stream.
-- A delta series and a gauge series are each one stream (StartTimeUnix 0);
-- their points are told apart by their own times.
CREATE TABLE streams (
    StreamId INTEGER PRIMARY KEY,
    -- The first 16 bytes of the SHA-256 of the stream's identity: metric
    -- name, resource and attributes as canonical JSON, start time.
    StreamKey BLOB NOT NULL UNIQUE,
    MetricName TEXT NOT NULL,
    ResourceId INTEGER NOT NULL REFERENCES resources (ResourceId),
    StartTimeUnix INTEGER NOT NULL,
    Kind TEXT NOT NULL CHECK (Kind IN ('sum', 'gauge', 'histogram')),
    AggregationTemporality INTEGER NOT NULL,
    -- The resource's node, repeated here for the report.
    Node TEXT NOT NULL,
    -- The attributes, typed: every allowed key has a column, so these are
    -- the whole attribute set, and the report's dimensions.
    Model TEXT,
    Architecture TEXT,
    Quantization TEXT,
    LaunchKind TEXT,
    GpuName TEXT,
    GpuStableId TEXT,
    BackendDevice TEXT,
    GpuCount INTEGER,
    IsSoc INTEGER,
    Backend TEXT,
    ContextBucket TEXT,
    ServiceVersion TEXT,
    FailureReason TEXT,
    -- The last point folded into the rollup, to store raw points and
    -- rollup rows only on change.
    LastTimeUnix INTEGER NOT NULL DEFAULT 0,
    LastValue REAL,
    LastSum REAL
);

-- Per stream and UTC day (histograms in a table of their own). For
-- cumulative sums and histograms: the largest value (a histogram's count,
-- with that point's sum and bucket counts, a JSON array) seen that day,
-- written only on days the value changed (the counting rule takes
-- the last value before a time as the largest one before it). For delta
-- sums and histograms: the sum of the day's distinct points. For gauges:
-- the largest value seen, on every day one was seen.
CREATE TABLE rollup_daily (
    StreamId INTEGER NOT NULL REFERENCES streams (StreamId),
    Day INTEGER NOT NULL,
    Value REAL NOT NULL,
    PRIMARY KEY (StreamId, Day)
) WITHOUT ROWID;

CREATE TABLE rollup_histogram_daily (
    StreamId INTEGER NOT NULL REFERENCES streams (StreamId),
    Day INTEGER NOT NULL,
    Count REAL NOT NULL,
    Sum REAL NOT NULL,
    BucketCounts TEXT NOT NULL,
    PRIMARY KEY (StreamId, Day)
) WITHOUT ROWID;


CREATE TABLE otel_metrics_sum (
    ResourceAttributes TEXT NOT NULL,
    ResourceSchemaUrl TEXT NOT NULL DEFAULT '',
    ScopeName TEXT NOT NULL,
    ScopeVersion TEXT NOT NULL,
    ScopeAttributes TEXT NOT NULL DEFAULT '{}',
    ScopeDroppedAttrCount INTEGER NOT NULL DEFAULT 0,
    ScopeSchemaUrl TEXT NOT NULL DEFAULT '',
    ServiceName TEXT NOT NULL,
    MetricName TEXT NOT NULL,
    MetricDescription TEXT NOT NULL,
    MetricUnit TEXT NOT NULL,
    Attributes TEXT NOT NULL,
    StartTimeUnix INTEGER NOT NULL,
    TimeUnix INTEGER NOT NULL,
    Value REAL NOT NULL,
    Flags INTEGER NOT NULL DEFAULT 0,
    AggregationTemporality INTEGER NOT NULL,
    IsMonotonic INTEGER NOT NULL,
    StreamId INTEGER NOT NULL REFERENCES streams (StreamId),
    UNIQUE (StreamId, StartTimeUnix, TimeUnix)
);

CREATE INDEX otel_metrics_sum_by_time ON otel_metrics_sum (TimeUnix);

CREATE TABLE otel_metrics_gauge (
    ResourceAttributes TEXT NOT NULL,
    ResourceSchemaUrl TEXT NOT NULL DEFAULT '',
    ScopeName TEXT NOT NULL,
    ScopeVersion TEXT NOT NULL,
    ScopeAttributes TEXT NOT NULL DEFAULT '{}',
    ScopeDroppedAttrCount INTEGER NOT NULL DEFAULT 0,
    ScopeSchemaUrl TEXT NOT NULL DEFAULT '',
    ServiceName TEXT NOT NULL,
    MetricName TEXT NOT NULL,
    MetricDescription TEXT NOT NULL,
    MetricUnit TEXT NOT NULL,
    Attributes TEXT NOT NULL,
    StartTimeUnix INTEGER NOT NULL,
    TimeUnix INTEGER NOT NULL,
    Value REAL NOT NULL,
    Flags INTEGER NOT NULL DEFAULT 0,
    StreamId INTEGER NOT NULL REFERENCES streams (StreamId),
    UNIQUE (StreamId, StartTimeUnix, TimeUnix)
);

CREATE INDEX otel_metrics_gauge_by_time ON otel_metrics_gauge (TimeUnix);

CREATE TABLE otel_metrics_histogram (
    ResourceAttributes TEXT NOT NULL,
    ResourceSchemaUrl TEXT NOT NULL DEFAULT '',
    ScopeName TEXT NOT NULL,
    ScopeVersion TEXT NOT NULL,
    ScopeAttributes TEXT NOT NULL DEFAULT '{}',
    ScopeDroppedAttrCount INTEGER NOT NULL DEFAULT 0,
    ScopeSchemaUrl TEXT NOT NULL DEFAULT '',
    ServiceName TEXT NOT NULL,
    MetricName TEXT NOT NULL,
    MetricDescription TEXT NOT NULL,
    MetricUnit TEXT NOT NULL,
    Attributes TEXT NOT NULL,
    StartTimeUnix INTEGER NOT NULL,
    TimeUnix INTEGER NOT NULL,
    Count INTEGER NOT NULL,
    Sum REAL NOT NULL,
    BucketCounts TEXT NOT NULL,
    ExplicitBounds TEXT NOT NULL,
    Flags INTEGER NOT NULL DEFAULT 0,
    Min REAL,
    Max REAL,
    AggregationTemporality INTEGER NOT NULL,
    StreamId INTEGER NOT NULL REFERENCES streams (StreamId),
    UNIQUE (StreamId, StartTimeUnix, TimeUnix)
);

CREATE INDEX otel_metrics_histogram_by_time ON otel_metrics_histogram (TimeUnix);
