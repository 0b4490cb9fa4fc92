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
    SELECT Model AS model,
           GpuName AS gpu_name,
           BackendDevice AS backend_device,
           ContextBucket AS context_bucket,
           total(requests) AS requests,
           total(ok) AS ok,
           count(DISTINCT Node) AS nodes
    FROM lifecycle
    WHERE requests > 0
    GROUP BY 1, 2, 3, 4
),
decode AS (
    SELECT Model AS model,
           GpuName AS gpu_name,
           BackendDevice AS backend_device,
           ContextBucket AS context_bucket,
           histogram_quantile(0.5, MetricName, Buckets) AS p50,
           histogram_quantile(0.1, MetricName, Buckets) AS p10
    FROM histograms
    WHERE MetricName = 'mesh_llm_inference_decode_tokens_per_s'
    GROUP BY 1, 2, 3, 4
),
prefill AS (
    SELECT Model AS model,
           GpuName AS gpu_name,
           BackendDevice AS backend_device,
           ContextBucket AS context_bucket,
           histogram_quantile(0.5, MetricName, Buckets) AS p50
    FROM histograms
    WHERE MetricName = 'mesh_llm_inference_prefill_tokens_per_s'
    GROUP BY 1, 2, 3, 4
),
ttft AS (
    SELECT Model AS model,
           GpuName AS gpu_name,
           BackendDevice AS backend_device,
           ContextBucket AS context_bucket,
           histogram_quantile(0.5, MetricName, Buckets) AS p50,
           histogram_quantile(0.9, MetricName, Buckets) AS p90
    FROM histograms
    WHERE MetricName = 'mesh_llm_inference_time_to_first_token_ms'
    GROUP BY 1, 2, 3, 4
)
SELECT c.model,
       c.gpu_name,
       c.backend_device,
       c.context_bucket,
       CAST(c.requests AS INTEGER) AS requests,
       CAST(c.ok AS INTEGER) AS ok,
       d.p50 AS decode_tps_p50,
       d.p10 AS decode_tps_p10,
       p.p50 AS prefill_tps_p50,
       t.p50 AS ttft_p50_ms,
       t.p90 AS ttft_p90_ms,
       c.nodes
FROM counts AS c
LEFT JOIN decode AS d
       ON d.model IS c.model AND d.gpu_name IS c.gpu_name
      AND d.backend_device IS c.backend_device AND d.context_bucket IS c.context_bucket
LEFT JOIN prefill AS p
       ON p.model IS c.model AND p.gpu_name IS c.gpu_name
      AND p.backend_device IS c.backend_device AND p.context_bucket IS c.context_bucket
LEFT JOIN ttft AS t
       ON t.model IS c.model AND t.gpu_name IS c.gpu_name
      AND t.backend_device IS c.backend_device AND t.context_bucket IS c.context_bucket
WHERE c.requests >= :min_requests
ORDER BY decode_tps_p50 DESC NULLS LAST, c.model NULLS LAST, c.gpu_name NULLS LAST,
         c.backend_device NULLS LAST, c.context_bucket NULLS LAST;
