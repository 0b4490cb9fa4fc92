-- Which model/hardware combinations serve fastest, at which context sizes?
-- From the opt-in inference metrics (nodes with [telemetry]
-- prompt_shape_metrics = true), per model, GPU, device and context bucket.
-- requests: inference requests of every outcome; ok: those answered in
-- full. decode_tps_p50, decode_tps_p10, prefill_tps_p50: generation and
-- prompt processing speeds (tokens/s) of the requests answered in full;
-- ttft_p50_ms, ttft_p90_ms: time to first token of the streamed ones; each
-- interpolated within its histogram bucket, null without data.
-- nodes: distinct node processes with requests in the window.
WITH counts AS (
    SELECT Model, GpuName, BackendDevice, ContextBucket,
           sum(Requests) AS R,
           sum(Ok) AS K,
           uniqExact(Node) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE Requests > 0
    GROUP BY Model, GpuName, BackendDevice, ContextBucket
),
decode AS (
    SELECT Model, GpuName, BackendDevice, ContextBucket,
           survey_quantile(0.5, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P50,
           survey_quantile(0.1, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P10
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName = 'mesh_llm_inference_decode_tokens_per_s'
    GROUP BY Model, GpuName, BackendDevice, ContextBucket
),
prefill AS (
    SELECT Model, GpuName, BackendDevice, ContextBucket,
           survey_quantile(0.5, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P50
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName = 'mesh_llm_inference_prefill_tokens_per_s'
    GROUP BY Model, GpuName, BackendDevice, ContextBucket
),
ttft AS (
    SELECT Model, GpuName, BackendDevice, ContextBucket,
           survey_quantile(0.5, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P50,
           survey_quantile(0.9, survey_bounds(any(MetricName)), sumForEach(Buckets)) AS P90
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName = 'mesh_llm_inference_time_to_first_token_ms'
    GROUP BY Model, GpuName, BackendDevice, ContextBucket
)
SELECT c.Model AS model,
       c.GpuName AS gpu_name,
       c.BackendDevice AS backend_device,
       c.ContextBucket AS context_bucket,
       toInt64(c.R) AS requests,
       toInt64(c.K) AS ok,
       d.P50 AS decode_tps_p50,
       d.P10 AS decode_tps_p10,
       p.P50 AS prefill_tps_p50,
       t.P50 AS ttft_p50_ms,
       t.P90 AS ttft_p90_ms,
       c.N AS nodes
FROM counts AS c
LEFT JOIN decode AS d
       ON isNotDistinctFrom(d.Model, c.Model) AND isNotDistinctFrom(d.GpuName, c.GpuName)
      AND isNotDistinctFrom(d.BackendDevice, c.BackendDevice)
      AND isNotDistinctFrom(d.ContextBucket, c.ContextBucket)
LEFT JOIN prefill AS p
       ON isNotDistinctFrom(p.Model, c.Model) AND isNotDistinctFrom(p.GpuName, c.GpuName)
      AND isNotDistinctFrom(p.BackendDevice, c.BackendDevice)
      AND isNotDistinctFrom(p.ContextBucket, c.ContextBucket)
LEFT JOIN ttft AS t
       ON isNotDistinctFrom(t.Model, c.Model) AND isNotDistinctFrom(t.GpuName, c.GpuName)
      AND isNotDistinctFrom(t.BackendDevice, c.BackendDevice)
      AND isNotDistinctFrom(t.ContextBucket, c.ContextBucket)
WHERE c.R >= {min_requests:UInt64}
ORDER BY decode_tps_p50 DESC NULLS LAST, model ASC NULLS LAST, gpu_name ASC NULLS LAST,
         backend_device ASC NULLS LAST, context_bucket ASC NULLS LAST
SETTINGS join_use_nulls = 1
