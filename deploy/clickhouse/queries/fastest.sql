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
           uniqExact(NodeKey) AS N
    FROM survey.lifecycle(since = {since:Date}, until = {until:Date})
    WHERE MetricName = 'mesh_llm_inference_requests_total'
    GROUP BY Model, GpuName, BackendDevice, ContextBucket
),
speeds AS (
    SELECT Model, GpuName, BackendDevice, ContextBucket,
           sumForEachIf(Buckets, MetricName = 'mesh_llm_inference_decode_tokens_per_s') AS Decode,
           sumForEachIf(Buckets, MetricName = 'mesh_llm_inference_prefill_tokens_per_s') AS Prefill,
           sumForEachIf(Buckets, MetricName = 'mesh_llm_inference_time_to_first_token_ms') AS Ttft,
           survey_bounds('mesh_llm_inference_decode_tokens_per_s') AS DecodeBounds,
           survey_bounds('mesh_llm_inference_prefill_tokens_per_s') AS PrefillBounds,
           survey_bounds('mesh_llm_inference_time_to_first_token_ms') AS TtftBounds
    FROM survey.histograms(since = {since:Date}, until = {until:Date})
    WHERE MetricName IN ('mesh_llm_inference_decode_tokens_per_s',
                         'mesh_llm_inference_prefill_tokens_per_s',
                         'mesh_llm_inference_time_to_first_token_ms')
    GROUP BY Model, GpuName, BackendDevice, ContextBucket
)
SELECT c.Model AS model,
       c.GpuName AS gpu_name,
       c.BackendDevice AS backend_device,
       c.ContextBucket AS context_bucket,
       toInt64(c.R) AS requests,
       toInt64(c.K) AS ok,
       survey_quantile(0.5, t.DecodeBounds, t.Decode) AS decode_tps_p50,
       survey_quantile(0.1, t.DecodeBounds, t.Decode) AS decode_tps_p10,
       survey_quantile(0.5, t.PrefillBounds, t.Prefill) AS prefill_tps_p50,
       survey_quantile(0.5, t.TtftBounds, t.Ttft) AS ttft_p50_ms,
       survey_quantile(0.9, t.TtftBounds, t.Ttft) AS ttft_p90_ms,
       c.N AS nodes
FROM counts AS c
LEFT JOIN speeds AS t
       ON isNotDistinctFrom(t.Model, c.Model) AND isNotDistinctFrom(t.GpuName, c.GpuName)
      AND isNotDistinctFrom(t.BackendDevice, c.BackendDevice)
      AND isNotDistinctFrom(t.ContextBucket, c.ContextBucket)
WHERE c.R >= {min_requests:UInt64}
ORDER BY decode_tps_p50 DESC NULLS LAST, model ASC NULLS LAST, gpu_name ASC NULLS LAST,
         backend_device ASC NULLS LAST, context_bucket ASC NULLS LAST
SETTINGS join_use_nulls = 1
