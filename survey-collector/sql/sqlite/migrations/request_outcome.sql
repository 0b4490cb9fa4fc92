-- survey-collector storage: schema version 4 (PRAGMA user_version).
--
-- The opt-in inference metrics. mesh_llm_inference_requests_total carries
-- mesh_llm.request_outcome, which gets a typed column like every other
-- attribute. The outcome is not a dimension of a series: a series' request
-- streams, one per outcome, add up to its requests, and the report reads
-- each stream's outcome from the index it scans, which gains the column.
--
-- A database written before holds no inference stream (collectors before
-- this version refused the inference metrics), so nothing is recomputed.
ALTER TABLE streams ADD COLUMN RequestOutcome TEXT;
DROP INDEX streams_for_report;
CREATE INDEX streams_for_report ON streams (
    Kind, SeriesId, MetricName, AggregationTemporality, FirstDay, LastDay, Whole, WholeBuckets,
    RequestOutcome
);
