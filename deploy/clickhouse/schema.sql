-- survey on ClickHouse, single server: the tables the OpenTelemetry
-- Collector's clickhouse exporter writes, and what makes the questions
-- (queries/*.sql) cheap at scale. Apply with
-- `clickhouse-client --multiquery < schema.sql` before starting the
-- collector (its config sets `create_schema: false`).
-- `cluster.py` turns this file into the cluster form (`schema.cluster.sql`).
--
-- The counting rule is the one of survey-collector
-- (survey-collector/sql/sqlite/queries/counting.sql), on per-stream summaries
-- holding each stream's daily rollup, which materialized views keep as the
-- exporter inserts (stream_summaries, histogram_summaries):
--   a cumulative counter counts, per stream, its largest value before the
--   window's end minus its largest value before the window's start, so
--   repeated exports, retried requests and late points change nothing, and
--   the first point of a stream counts in full; totals add streams up;
--   histograms the same, bucket by bucket; the context gauge gives the
--   largest value seen in the window.
-- A stream is one process's series: metric, resource (which carries
-- service.instance.id, so two identical nodes are two streams), attributes
-- (keys in any order: the key sorts them) and start time.
--
-- Differences from survey-collector, on input survey sends:
--   * the exporter stores times in whole seconds (DateTime), so two
--     restarts of survey within one process in the same second are one
--     stream here (survey's own series resets wait for a new second, so
--     they are always new streams here too);
--   * only cumulative sums and histograms are counted (survey sends no
--     other); the collector's config drops delta points.
-- On input survey does not send, the views drop what survey-collector
-- rejects, as far as a row shows it (survey_accepts, survey_whole): other
-- metrics, kinds, units and bounds, attribute keys survey does not put on
-- the metric, values outside survey's closed enums. A row cannot show: a
-- whole number sent as a double, a start time after its time within the
-- same second, whether an attribute was a string, a number or a flag, or
-- whether a text value is what survey's sanitizers write (the collector's
-- config checks the types of the enums; nothing here runs the
-- sanitizers).

CREATE DATABASE IF NOT EXISTS survey;

-- The exporter's tables.
--
-- The three CREATE TABLE statements below reproduce, for compatibility (the
-- exporter's INSERTs name these columns, in this order, with these types),
-- the DDL that the clickhouse exporter of OpenTelemetry Collector contrib
-- release v0.161.0 runs when `create_schema` is true:
-- github.com/open-telemetry/opentelemetry-collector-contrib,
-- exporter/clickhouseexporter/internal/sqltemplates/metrics_sum_table.sql,
-- metrics_gauge_table.sql and metrics_histogram_table.sql, rendered with
-- database "survey", the default engine MergeTree() and `ttl: 720h`
-- (raw points are kept 30 days; the rollups below keep no TTL).
-- Copyright The OpenTelemetry Authors. Licensed under the Apache License,
-- Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).

CREATE TABLE IF NOT EXISTS "survey"."otel_metrics_sum"  (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName LowCardinality(String) CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime CODEC(Delta, ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime,
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
    TTL toDateTime(TimeUnix) + toIntervalDay(30)
    PARTITION BY toDate(TimeUnix)
    ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)
    SETTINGS index_granularity=8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS "survey"."otel_metrics_gauge"  (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName LowCardinality(String) CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime CODEC(Delta, ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime,
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
    TTL toDateTime(TimeUnix) + toIntervalDay(30)
    PARTITION BY toDate(TimeUnix)
    ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)
    SETTINGS index_granularity=8192, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS "survey"."otel_metrics_histogram"  (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName LowCardinality(String) CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime CODEC(Delta, ZSTD(1)),
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime,
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
    TTL toDateTime(TimeUnix) + toIntervalDay(30)
    PARTITION BY toDate(TimeUnix)
    ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)
    SETTINGS index_granularity=8192, ttl_only_drop_parts = 1;

-- Typed columns, computed on insert from the exporter's maps: the report's
-- dimensions, the node (service.instance.id, or the whole resource of a
-- sender without one), the stream's key and its UTC day; on sums, the
-- request outcome of the inference counter. An absent attribute is NULL,
-- as in survey-collector.
ALTER TABLE survey.otel_metrics_sum
    ADD COLUMN IF NOT EXISTS Node String MATERIALIZED
        if(ResourceAttributes['service.instance.id'] != '',
           ResourceAttributes['service.instance.id'], toString(mapSort(ResourceAttributes))),
    ADD COLUMN IF NOT EXISTS Model Nullable(String) MATERIALIZED nullIf(Attributes['mesh_llm.model'], ''),
    ADD COLUMN IF NOT EXISTS GpuName Nullable(String) MATERIALIZED nullIf(Attributes['mesh_llm.gpu_name'], ''),
    ADD COLUMN IF NOT EXISTS BackendDevice Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.backend_device'], ''),
    ADD COLUMN IF NOT EXISTS GpuCount Nullable(Int64) MATERIALIZED toInt64OrNull(Attributes['mesh_llm.gpu_count']),
    ADD COLUMN IF NOT EXISTS ContextBucket Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.context_bucket'], ''),
    ADD COLUMN IF NOT EXISTS FailureReason Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.failure_reason'], ''),
    ADD COLUMN IF NOT EXISTS RequestOutcome Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.request_outcome'], ''),
    ADD COLUMN IF NOT EXISTS StreamKey FixedString(16) MATERIALIZED
        sipHash128(MetricName, mapSort(ResourceAttributes), mapSort(Attributes), StartTimeUnix),
    ADD COLUMN IF NOT EXISTS Day Date MATERIALIZED toDate(TimeUnix, 'UTC');

ALTER TABLE survey.otel_metrics_histogram
    ADD COLUMN IF NOT EXISTS Node String MATERIALIZED
        if(ResourceAttributes['service.instance.id'] != '',
           ResourceAttributes['service.instance.id'], toString(mapSort(ResourceAttributes))),
    ADD COLUMN IF NOT EXISTS Model Nullable(String) MATERIALIZED nullIf(Attributes['mesh_llm.model'], ''),
    ADD COLUMN IF NOT EXISTS GpuName Nullable(String) MATERIALIZED nullIf(Attributes['mesh_llm.gpu_name'], ''),
    ADD COLUMN IF NOT EXISTS BackendDevice Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.backend_device'], ''),
    ADD COLUMN IF NOT EXISTS GpuCount Nullable(Int64) MATERIALIZED toInt64OrNull(Attributes['mesh_llm.gpu_count']),
    ADD COLUMN IF NOT EXISTS ContextBucket Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.context_bucket'], ''),
    ADD COLUMN IF NOT EXISTS FailureReason Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.failure_reason'], ''),
    ADD COLUMN IF NOT EXISTS StreamKey FixedString(16) MATERIALIZED
        sipHash128(MetricName, mapSort(ResourceAttributes), mapSort(Attributes), StartTimeUnix),
    ADD COLUMN IF NOT EXISTS Day Date MATERIALIZED toDate(TimeUnix, 'UTC');

-- A gauge is a snapshot: its stream has no start time.
ALTER TABLE survey.otel_metrics_gauge
    ADD COLUMN IF NOT EXISTS Node String MATERIALIZED
        if(ResourceAttributes['service.instance.id'] != '',
           ResourceAttributes['service.instance.id'], toString(mapSort(ResourceAttributes))),
    ADD COLUMN IF NOT EXISTS Model Nullable(String) MATERIALIZED nullIf(Attributes['mesh_llm.model'], ''),
    ADD COLUMN IF NOT EXISTS GpuName Nullable(String) MATERIALIZED nullIf(Attributes['mesh_llm.gpu_name'], ''),
    ADD COLUMN IF NOT EXISTS BackendDevice Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.backend_device'], ''),
    ADD COLUMN IF NOT EXISTS GpuCount Nullable(Int64) MATERIALIZED toInt64OrNull(Attributes['mesh_llm.gpu_count']),
    ADD COLUMN IF NOT EXISTS ContextBucket Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.context_bucket'], ''),
    ADD COLUMN IF NOT EXISTS FailureReason Nullable(String) MATERIALIZED
        nullIf(Attributes['mesh_llm.failure_reason'], ''),
    ADD COLUMN IF NOT EXISTS StreamKey FixedString(16) MATERIALIZED
        sipHash128(MetricName, mapSort(ResourceAttributes), mapSort(Attributes)),
    ADD COLUMN IF NOT EXISTS Day Date MATERIALIZED toDate(TimeUnix, 'UTC');

-- The q-quantile of the observations in `counts` under the bucket bounds
-- `bounds` (the first bucket starts at 0), interpolated within the bucket
-- that holds it; in the unbounded last bucket, its lower bound; NULL when
-- there are none. As survey-collector's histogram_quantile.
CREATE FUNCTION IF NOT EXISTS survey_quantile AS (q, bounds, counts) ->
    if(arraySum(counts) = 0, NULL,
       survey_quantile_in(q * arraySum(counts), bounds, counts,
           arrayFirstIndex((c, n) -> n > 0 AND c >= q * arraySum(counts),
                           arrayCumSum(counts), counts)));

CREATE FUNCTION IF NOT EXISTS survey_quantile_in AS (rank, bounds, counts, i) ->
    if(i > length(bounds),
       toFloat64(if(i = 1, 0, bounds[i - 1])),
       if(i = 1, 0, bounds[i - 1])
         + (bounds[i] - if(i = 1, 0, bounds[i - 1]))
           * ((rank - toFloat64(arraySum(arraySlice(counts, 1, i - 1)))) / counts[i]));

-- survey's metrics (survey-schema/src/metrics.rs, METRICS), one entry
-- each: name, kind, unit, bucket bounds (histograms; [] otherwise) and the
-- set of attribute keys its points carry (survey_key_sets). The next
-- metric is one entry here; survey-fleet/tests/clickhouse.rs checks the
-- list against survey's schema.
CREATE FUNCTION IF NOT EXISTS survey_metrics AS () -> [
    ('mesh_llm_model_launch_total', 'counter', '{launch}', CAST([], 'Array(Float64)'), 'launch'),
    ('mesh_llm_model_launch_success_total', 'counter', '{launch}', [], 'launch'),
    ('mesh_llm_model_launch_failure_total', 'counter', '{launch}', [], 'failed_launch'),
    ('mesh_llm_model_unload_total', 'counter', '{unload}', [], 'launch'),
    ('mesh_llm_model_exit_unexpected_total', 'counter', '{exit}', [], 'launch'),
    ('mesh_llm_loaded_models', 'gauge', '{model}', [], 'node'),
    ('mesh_llm_model_loaded', 'gauge', '{instance}', [], 'launch'),
    ('mesh_llm_model_context_length', 'gauge', '{token}', [], 'launch'),
    ('mesh_llm_model_launch_duration_ms', 'histogram', 'ms',
     [100., 250., 500., 1000., 2500., 5000., 10000., 20000., 30000., 60000., 120000., 300000.,
      600000.],
     'failed_launch'),
    ('mesh_llm_model_uptime_s', 'histogram', 's',
     [10., 30., 60., 300., 900., 1800., 3600., 7200., 21600., 43200., 86400., 172800., 345600.,
      604800.],
     'launch'),
    ('mesh_llm_inference_requests_total', 'counter', '{request}', [], 'request'),
    ('mesh_llm_inference_prompt_tokens', 'histogram', '{token}',
     [1., 4., 16., 64., 256., 1024., 2048., 4096., 8192., 16384., 32768., 65536., 131072.,
      262144.],
     'model'),
    ('mesh_llm_inference_output_tokens', 'histogram', '{token}',
     [1., 4., 16., 64., 256., 1024., 2048., 4096., 8192., 16384., 32768., 65536., 131072.,
      262144.],
     'model'),
    ('mesh_llm_inference_prefill_tokens_per_s', 'histogram', '{token}/s',
     [10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000., 25000., 50000., 100000.],
     'model'),
    ('mesh_llm_inference_decode_tokens_per_s', 'histogram', '{token}/s',
     [1., 2., 5., 10., 20., 30., 50., 75., 100., 150., 200., 300., 500., 1000., 2000., 3000.,
      5000.],
     'model'),
    ('mesh_llm_inference_time_to_first_token_ms', 'histogram', 'ms',
     [5., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000., 30000., 60000., 180000.,
      600000.],
     'model')];

-- The position of `metric` in survey_metrics(); 0 for any other metric.
-- (A lookup in constant arrays: the views call these for every row they
-- take, and a lambda over the list per row would cost 20 times more.)
CREATE FUNCTION IF NOT EXISTS survey_metric_index AS (metric) ->
    transform(metric, arrayMap(m -> m.1, survey_metrics()),
              range(1, length(survey_metrics()) + 1), 0);

-- survey's kind, unit and bucket bounds of each metric; '' and [] for any
-- other metric (an array's element 0 is its type's default).
CREATE FUNCTION IF NOT EXISTS survey_kind AS (metric) ->
    arrayMap(m -> m.2, survey_metrics())[survey_metric_index(metric)];

CREATE FUNCTION IF NOT EXISTS survey_unit AS (metric) ->
    arrayMap(m -> m.3, survey_metrics())[survey_metric_index(metric)];

CREATE FUNCTION IF NOT EXISTS survey_bounds AS (metric) ->
    arrayMap(m -> m.4, survey_metrics())[survey_metric_index(metric)];

-- survey's attribute keys (survey-schema/src/keys.rs, AttributeKey),
-- each with the values of its closed enum; [] for the keys whose values
-- come from survey's sanitizers (or are numbers and flags), which SQL
-- cannot run.
CREATE FUNCTION IF NOT EXISTS survey_attributes AS () -> [
    ('mesh_llm.model', CAST([], 'Array(String)')),
    ('mesh_llm.architecture', []),
    ('mesh_llm.quantization', []),
    ('mesh_llm.launch_kind',
     ['startup', 'runtime_load', 'multi_model', 'moe_fallback', 'moe_shard']),
    ('mesh_llm.gpu_name', []),
    ('mesh_llm.gpu_stable_id', []),
    ('mesh_llm.backend_device', []),
    ('mesh_llm.gpu_count', []),
    ('mesh_llm.is_soc', []),
    ('mesh_llm.backend', []),
    ('mesh_llm.context_bucket', ['<=8k', '8k_16k', '16k_32k', '32k_64k', '64k_128k', '>128k']),
    ('mesh_llm.service_version', []),
    ('mesh_llm.failure_reason',
     ['spawn_failed', 'health_timeout', 'exited_before_healthy', 'backend_proxy_failed',
      'capacity_rejected', 'known_kv_cache_crash', 'mmproj_missing', 'other']),
    ('mesh_llm.request_outcome',
     ['ok', 'backend_error', 'timeout', 'client_cancelled', 'shutdown'])];

-- The attribute keys survey puts on a metric's points, by the metric's key
-- set (survey-collector's MetricKeys): those they may carry, and those
-- they always carry. A model's facts on its node; the node's own gauge
-- its hardware and version only; the lifecycle metrics of a model add its
-- launch kind, those of a failed launch its failure reason; the
-- inference metrics neither, and the request counter always its outcome.
CREATE FUNCTION IF NOT EXISTS survey_node_keys AS () ->
    ['mesh_llm.gpu_name', 'mesh_llm.gpu_stable_id', 'mesh_llm.backend_device', 'mesh_llm.gpu_count',
     'mesh_llm.is_soc', 'mesh_llm.service_version'];

CREATE FUNCTION IF NOT EXISTS survey_model_keys AS () ->
    arrayConcat(['mesh_llm.model', 'mesh_llm.architecture', 'mesh_llm.quantization',
                 'mesh_llm.backend', 'mesh_llm.context_bucket'], survey_node_keys());

CREATE FUNCTION IF NOT EXISTS survey_key_sets AS () -> [
    ('node', survey_node_keys(), CAST([], 'Array(String)')),
    ('model', survey_model_keys(), []),
    ('launch', arrayConcat(survey_model_keys(), ['mesh_llm.launch_kind']), []),
    ('failed_launch',
     arrayConcat(survey_model_keys(), ['mesh_llm.launch_kind', 'mesh_llm.failure_reason']), []),
    ('request', arrayConcat(survey_model_keys(), ['mesh_llm.request_outcome']),
     ['mesh_llm.request_outcome'])];

-- The position of `metric`'s key set in survey_key_sets(); 0 for any
-- other metric.
CREATE FUNCTION IF NOT EXISTS survey_key_set_index AS (metric) ->
    transform(arrayMap(m -> m.5, survey_metrics())[survey_metric_index(metric)],
              arrayMap(s -> s.1, survey_key_sets()), range(1, length(survey_key_sets()) + 1), 0);

-- The keys the points of `metric` may carry, and those they always carry
-- ([] for any other metric).
CREATE FUNCTION IF NOT EXISTS survey_allowed_keys AS (metric) ->
    arrayMap(s -> s.2, survey_key_sets())[survey_key_set_index(metric)];

CREATE FUNCTION IF NOT EXISTS survey_required_keys AS (metric) ->
    arrayMap(s -> s.3, survey_key_sets())[survey_key_set_index(metric)];

-- The values of `key`'s closed enum; [] for any other key.
CREATE FUNCTION IF NOT EXISTS survey_values AS (key) ->
    arrayMap(a -> a.2, survey_attributes())[
        transform(key, arrayMap(a -> a.1, survey_attributes()),
                  range(1, length(survey_attributes()) + 1), 0)];

-- Whether `attributes` (a point's map) could be survey's on `metric`, as
-- far as a row shows: each key once, only keys survey puts on the metric,
-- every key it always puts there, and the value of each closed enum one
-- of the enum's. (Which values survey's sanitizers return, and whether a
-- value was sent as a string, a number or a flag, a row does not show.)
CREATE FUNCTION IF NOT EXISTS survey_accepts_attributes AS (metric, attributes) ->
    length(arrayDistinct(mapKeys(attributes))) = length(mapKeys(attributes))
    AND hasAll(survey_allowed_keys(metric), mapKeys(attributes))
    AND hasAll(mapKeys(attributes), survey_required_keys(metric))
    AND arrayAll((k, v) -> empty(survey_values(k)) OR has(survey_values(k), v),
                 mapKeys(attributes), mapValues(attributes));

-- Whether a row is a point survey-collector accepts, as far as a row
-- shows: a metric of survey's of this `kind`, in its unit, with its
-- attributes (survey_accepts_attributes), from survey's scope with nothing
-- added and a version as survey's sanitizer writes it (or none), no
-- schema URLs, no exemplars, no flags; a start time (when `timed`: sums
-- and histograms) after 1970 and no later than its time; a time at most a
-- day ahead of its arrival.
CREATE FUNCTION IF NOT EXISTS survey_accepts AS
    (kind, metric, unit, attributes, scope, scope_version, scope_attributes, scope_schema_url,
     resource_schema_url, exemplar_times, flags, start, time, timed) ->
    survey_kind(metric) = kind AND unit = survey_unit(metric)
    AND survey_accepts_attributes(metric, attributes)
    AND scope = 'survey' AND empty(scope_attributes) AND scope_schema_url = ''
    AND (scope_version = ''
         OR match(scope_version, '^[A-Za-z0-9+]([A-Za-z0-9._+-]{0,62}[A-Za-z0-9+])?$'))
    AND resource_schema_url = '' AND empty(exemplar_times) AND flags = 0
    AND toUnixTimestamp(time) > 0 AND start <= time
    AND (NOT timed OR toUnixTimestamp(start) > 0)
    AND time <= now() + INTERVAL 1 DAY;

-- A value of survey's u64 instruments: a whole number a double holds
-- exactly (an integral double, which survey never sends, passes here).
CREATE FUNCTION IF NOT EXISTS survey_whole AS (v) ->
    v >= 0 AND v <= 9007199254740992 AND v = floor(v);

-- The rollups: one row per stream (once merged), as survey-collector's
-- `streams` table keeps its summaries (survey-collector/sql/sqlite/
-- migrations/summaries.sql), with the stream's daily rollup inside the row:
--   FirstDay, LastDay: the first and last UTC day it has points on;
--   Largest: its largest value over its whole life;
--   Days: each of those days, with its largest value.
-- A window holding a stream's whole life takes Largest and computes
-- nothing from Days; only a stream the window cuts looks into Days (one
-- entry a day with points). Every column merges by min, max or max per
-- day, so the same points inserted in any order, any number of times,
-- leave the same row. The dimensions depend on the stream alone; NodeKey
-- is the SipHash-128 of Node, which the questions count distinct nodes by
-- (as uniqExact(Node) itself does, without hashing each row's Node again).
--
-- Of the cumulative counters (the lifecycle's and the inference
-- requests') and the context gauge.
CREATE TABLE IF NOT EXISTS survey.stream_summaries (
    MetricName LowCardinality(String),
    StreamKey FixedString(16),
    Node SimpleAggregateFunction(any, String),
    NodeKey SimpleAggregateFunction(any, UInt128),
    Model SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    GpuName SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    BackendDevice SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    GpuCount SimpleAggregateFunction(any, Nullable(Int64)),
    ContextBucket SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    FailureReason SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    -- The inference counter's outcome (each outcome is a stream of its own).
    RequestOutcome SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    FirstDay SimpleAggregateFunction(min, Date),
    LastDay SimpleAggregateFunction(max, Date),
    Largest SimpleAggregateFunction(max, Float64),
    Days SimpleAggregateFunction(maxMap, Map(Date, Float64))
) ENGINE = AggregatingMergeTree()
    ORDER BY (MetricName, StreamKey);

-- Of the cumulative histograms: Largest is the largest count with its day
-- (negated) and its bucket counts, the earliest day's on a tie; Days holds
-- each day's largest count with its bucket counts.
CREATE TABLE IF NOT EXISTS survey.histogram_summaries (
    MetricName LowCardinality(String),
    StreamKey FixedString(16),
    Node SimpleAggregateFunction(any, String),
    NodeKey SimpleAggregateFunction(any, UInt128),
    Model SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    GpuName SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    BackendDevice SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    ContextBucket SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    FailureReason SimpleAggregateFunction(any, LowCardinality(Nullable(String))),
    FirstDay SimpleAggregateFunction(min, Date),
    LastDay SimpleAggregateFunction(max, Date),
    Largest SimpleAggregateFunction(max, Tuple(UInt64, Int32, Array(UInt64))),
    Days SimpleAggregateFunction(maxMap, Map(Date, Tuple(UInt64, Array(UInt64))))
) ENGINE = AggregatingMergeTree()
    ORDER BY (MetricName, StreamKey);

-- What fills them, as the exporter inserts. Only points survey-collector
-- would accept count (survey_accepts), cumulative. Within one day, two
-- points of a histogram with equal counts and different buckets (which no
-- honest sender makes) keep the larger buckets here (compared as arrays),
-- where survey-collector keeps the first to arrive.
CREATE MATERIALIZED VIEW IF NOT EXISTS survey.sum_summaries_mv TO survey.stream_summaries AS
SELECT MetricName, StreamKey,
       any(Node) AS Node, reinterpretAsUInt128(sipHash128(Node)) AS NodeKey,
       any(Model) AS Model, any(GpuName) AS GpuName,
       any(BackendDevice) AS BackendDevice, any(GpuCount) AS GpuCount,
       any(ContextBucket) AS ContextBucket, any(FailureReason) AS FailureReason,
       any(RequestOutcome) AS RequestOutcome,
       min(Day) AS FirstDay, max(Day) AS LastDay, max(Value) AS Largest,
       maxMap(map(Day, Value)) AS Days
FROM survey.otel_metrics_sum
WHERE AggregationTemporality = 2 AND IsMonotonic AND survey_whole(Value)
  AND survey_accepts('counter', MetricName, MetricUnit, Attributes, ScopeName, ScopeVersion,
                     ScopeAttributes, ScopeSchemaUrl, ResourceSchemaUrl, Exemplars.TimeUnix,
                     Flags, StartTimeUnix, TimeUnix, true)
GROUP BY MetricName, StreamKey;

CREATE MATERIALIZED VIEW IF NOT EXISTS survey.gauge_summaries_mv TO survey.stream_summaries AS
SELECT MetricName, StreamKey,
       any(Node) AS Node, reinterpretAsUInt128(sipHash128(Node)) AS NodeKey,
       any(Model) AS Model, any(GpuName) AS GpuName,
       any(BackendDevice) AS BackendDevice, any(GpuCount) AS GpuCount,
       any(ContextBucket) AS ContextBucket, any(FailureReason) AS FailureReason,
       CAST(NULL, 'Nullable(String)') AS RequestOutcome,
       min(Day) AS FirstDay, max(Day) AS LastDay, max(Value) AS Largest,
       maxMap(map(Day, Value)) AS Days
FROM survey.otel_metrics_gauge
-- Of the gauges, the questions read the context length.
WHERE MetricName = 'mesh_llm_model_context_length' AND survey_whole(Value)
  AND survey_accepts('gauge', MetricName, MetricUnit, Attributes, ScopeName, ScopeVersion,
                     ScopeAttributes, ScopeSchemaUrl, ResourceSchemaUrl, Exemplars.TimeUnix,
                     Flags, StartTimeUnix, TimeUnix, false)
GROUP BY MetricName, StreamKey;

CREATE MATERIALIZED VIEW IF NOT EXISTS survey.histogram_summaries_mv TO survey.histogram_summaries AS
SELECT MetricName, StreamKey,
       any(Node) AS Node, reinterpretAsUInt128(sipHash128(Node)) AS NodeKey,
       any(Model) AS Model, any(GpuName) AS GpuName,
       any(BackendDevice) AS BackendDevice, any(ContextBucket) AS ContextBucket,
       any(FailureReason) AS FailureReason,
       min(Day) AS FirstDay, max(Day) AS LastDay,
       max((Count, -toInt32(Day), BucketCounts)) AS Largest,
       maxMap(map(Day, (Count, BucketCounts))) AS Days
FROM survey.otel_metrics_histogram
WHERE AggregationTemporality = 2
  AND survey_accepts('histogram', MetricName, MetricUnit, Attributes, ScopeName, ScopeVersion,
                     ScopeAttributes, ScopeSchemaUrl, ResourceSchemaUrl, Exemplars.TimeUnix, Flags, StartTimeUnix,
                     TimeUnix, true)
  -- survey's bucket bounds, counts that add up, and a sum, min and max as
  -- survey-collector accepts them (an absent min or max is stored as 0).
  -- No bucket above the count: with at most 18 buckets (the decode
  -- histogram's, the most of survey's bounds) and a count of at most 2^53,
  -- their sum is at most 18 * 2^53 < 2^64 and cannot wrap around, as
  -- arraySum over UInt64 otherwise could.
  AND ExplicitBounds = survey_bounds(MetricName)
  AND length(BucketCounts) = length(ExplicitBounds) + 1
  AND Count <= 9007199254740992 AND arrayAll(c -> c <= Count, BucketCounts)
  AND arraySum(BucketCounts) = Count
  AND isFinite(Sum) AND Sum >= 0 AND isFinite(Min) AND isFinite(Max)
  AND (Min <= Max OR Max = 0)
GROUP BY MetricName, StreamKey;

-- The counting rule over a window [since, until) of UTC days, as
-- parameterized views: survey.lifecycle(since = ..., until = ...) etc.
-- They read the summaries FINAL (parts not yet merged are merged as they
-- are read; merged ones are read as they are), in two parts: the streams
-- whole in the window, from their summaries alone, and the streams the
-- window cuts, from their Days. The second part runs only when some
-- stream may be cut: when the table holds a day before the window or on
-- or after its end (a window holding every day of the table, such as the
-- default one, reads no Days).

-- The counters side by side, one row per stream that counts in the
-- window: its count in its counter's column, 0 in the others. What the
-- questions add up, by any dimensions (a node has a count of a kind
-- where one of its rows has; NodeKey, a hash of the node, is what they
-- count distinct nodes by). The five lifecycle counters, then the
-- inference requests (opt-in): all of them, and those answered in full
-- (outcome `ok`; the outcome is the stream's, not a dimension).
CREATE VIEW IF NOT EXISTS survey.lifecycle AS
SELECT MetricName, Node, NodeKey, Model, GpuName, BackendDevice, GpuCount, ContextBucket,
       FailureReason,
       if(MetricName = 'mesh_llm_model_launch_total', N, 0) AS Launches,
       if(MetricName = 'mesh_llm_model_launch_success_total', N, 0) AS Successes,
       if(MetricName = 'mesh_llm_model_launch_failure_total', N, 0) AS Failures,
       if(MetricName = 'mesh_llm_model_unload_total', N, 0) AS Unloads,
       if(MetricName = 'mesh_llm_model_exit_unexpected_total', N, 0) AS Exits,
       if(MetricName = 'mesh_llm_inference_requests_total', N, 0) AS Requests,
       if(MetricName = 'mesh_llm_inference_requests_total' AND RequestOutcome = 'ok', N, 0) AS Ok
FROM (
    -- Whole in the window: its largest value.
    SELECT MetricName, Node, NodeKey, Model, GpuName, BackendDevice, GpuCount, ContextBucket,
           FailureReason, RequestOutcome, Largest AS N
    FROM survey.stream_summaries FINAL
    -- The counters of the columns above (a new counter is a new column).
    WHERE MetricName IN ('mesh_llm_model_launch_total', 'mesh_llm_model_launch_success_total',
                         'mesh_llm_model_launch_failure_total', 'mesh_llm_model_unload_total',
                         'mesh_llm_model_exit_unexpected_total',
                         'mesh_llm_inference_requests_total')
      AND FirstDay >= {since:Date} AND LastDay < {until:Date}
    UNION ALL
    -- Cut by it: its largest value of the days before the end minus that
    -- of the days before the start.
    SELECT MetricName, Node, NodeKey, Model, GpuName, BackendDevice, GpuCount, ContextBucket,
           FailureReason, RequestOutcome,
           if(LastDay < {until:Date}, Largest,
              arrayMax((d, v) -> if(d < {until:Date}, v, 0), mapKeys(Days), mapValues(Days)))
           - if(FirstDay >= {since:Date}, 0,
                arrayMax((d, v) -> if(d < {since:Date}, v, 0), mapKeys(Days), mapValues(Days)))
               AS N
    FROM survey.stream_summaries FINAL
    WHERE MetricName IN ('mesh_llm_model_launch_total', 'mesh_llm_model_launch_success_total',
                         'mesh_llm_model_launch_failure_total', 'mesh_llm_model_unload_total',
                         'mesh_llm_model_exit_unexpected_total',
                         'mesh_llm_inference_requests_total')
      AND FirstDay < {until:Date} AND LastDay >= {since:Date}
      AND NOT (FirstDay >= {since:Date} AND LastDay < {until:Date})
      AND (SELECT min(FirstDay) < {since:Date} OR max(LastDay) >= {until:Date}
           FROM survey.stream_summaries)
)
WHERE N > 0;

-- The largest exact context length each node showed in the window (-1:
-- none of the stream's days in the window; a context length is never
-- negative).
CREATE VIEW IF NOT EXISTS survey.contexts AS
SELECT Node, NodeKey, Model, GpuName, ContextBucket, max(Value) AS Context
FROM (
    SELECT Node, NodeKey, Model, GpuName, ContextBucket, Largest AS Value
    FROM survey.stream_summaries FINAL
    WHERE MetricName = 'mesh_llm_model_context_length'
      AND FirstDay >= {since:Date} AND LastDay < {until:Date}
    UNION ALL
    SELECT Node, NodeKey, Model, GpuName, ContextBucket,
           arrayMax((d, v) -> if(d >= {since:Date} AND d < {until:Date}, v, -1),
                    mapKeys(Days), mapValues(Days)) AS Value
    FROM survey.stream_summaries FINAL
    WHERE MetricName = 'mesh_llm_model_context_length'
      AND FirstDay < {until:Date} AND LastDay >= {since:Date}
      AND NOT (FirstDay >= {since:Date} AND LastDay < {until:Date})
      AND (SELECT min(FirstDay) < {since:Date} OR max(LastDay) >= {until:Date}
           FROM survey.stream_summaries)
)
WHERE Value >= 0
GROUP BY Node, NodeKey, Model, GpuName, ContextBucket;

-- The window's bucket counts per metric and dimensions: model, GPU and
-- failure reason; for the inference metrics (named mesh_llm_inference_*),
-- device and context bucket too (NULL for the others, whose questions do
-- not ask: a longer key costs every report; as survey-collector's
-- counting.sql). Per stream, the bucket counts at its largest count
-- before the end minus those at its largest count before the start (the
-- earliest day's on a tie).
CREATE VIEW IF NOT EXISTS survey.histograms AS
SELECT MetricName, Model, GpuName, Device AS BackendDevice, Context AS ContextBucket,
       FailureReason, sumForEach(Counts) AS Buckets
FROM (
    SELECT MetricName, Model, GpuName,
           if(startsWith(MetricName, 'mesh_llm_inference_'), BackendDevice, NULL) AS Device,
           if(startsWith(MetricName, 'mesh_llm_inference_'), ContextBucket, NULL) AS Context,
           FailureReason, Counts
    FROM (
        -- Whole in the window: its buckets at its largest count.
        SELECT MetricName, Model, GpuName, BackendDevice, ContextBucket, FailureReason,
               Largest.3 AS Counts
        FROM survey.histogram_summaries FINAL
        WHERE FirstDay >= {since:Date} AND LastDay < {until:Date} AND Largest.1 > 0
        UNION ALL
        -- Cut by it: from its Days.
        SELECT MetricName, Model, GpuName, BackendDevice, ContextBucket, FailureReason,
               arrayMap((e, i) -> if(i > length(StartCounts), e,
                                     if(StartCounts[i] < e, toUInt64(e - StartCounts[i]),
                                        toUInt64(0))),
                        EndCounts, arrayEnumerate(EndCounts)) AS Counts
        FROM (
            SELECT MetricName, Model, GpuName, BackendDevice, ContextBucket, FailureReason,
                   -- The largest counts before the end and the start, and
                   -- the bucket counts of the earliest day with each.
                   if(LastDay < {until:Date}, Largest.1,
                      arrayMax((d, v) -> if(d < {until:Date}, v.1, 0),
                               mapKeys(Days), mapValues(Days))) AS EndCount,
                   if(FirstDay >= {since:Date}, 0,
                      arrayMax((d, v) -> if(d < {since:Date}, v.1, 0),
                               mapKeys(Days), mapValues(Days))) AS StartCount,
                   if(LastDay < {until:Date}, Largest.3,
                      Days[arrayMin((d, v) -> if(d < {until:Date} AND v.1 = EndCount, d,
                                                 toDate('2149-06-06')),
                                    mapKeys(Days), mapValues(Days))].2) AS EndCounts,
                   if(FirstDay >= {since:Date}, CAST([], 'Array(UInt64)'),
                      Days[arrayMin((d, v) -> if(d < {since:Date} AND v.1 = StartCount, d,
                                                 toDate('2149-06-06')),
                                    mapKeys(Days), mapValues(Days))].2) AS StartCounts
            FROM survey.histogram_summaries FINAL
            WHERE FirstDay < {until:Date} AND LastDay >= {since:Date}
              AND NOT (FirstDay >= {since:Date} AND LastDay < {until:Date})
              AND (SELECT min(FirstDay) < {since:Date} OR max(LastDay) >= {until:Date}
                   FROM survey.histogram_summaries)
        )
        WHERE EndCount > StartCount
    )
)
GROUP BY MetricName, Model, GpuName, Device, Context, FailureReason;
