#!/usr/bin/env python3
"""The queries over generated rollups (a benchmark; not run in CI).

    deploy/clickhouse/venv.sh target/chdb-venv
    target/chdb-venv/bin/python deploy/clickhouse/bench.py [--nodes 10000] [--days 30]
                                                           [--requests 20]

Fills survey.stream_days and survey.histogram_days (schema.sql, in chdb) as
the materialized views would leave them for a fleet like survey-collector's
report benchmark: each node has 20 models, each with launch, success and
unload counters, launch-time and uptime histograms and a context gauge;
each day it launches 3 of its models and unloads them (one rollup row per
stream per day with a change, and the gauge each day for 2 loaded models).
With --requests N (default 20; 0 for none), every node also has the
inference metrics on (prompt_shape_metrics = true), and each launch serves
N requests, of which one in 20 fails: the request counter by outcome and
the five inference histograms of each launched model change that day.
Prints rows and bytes per node-day and each query's time (every query of
queries/), all days and the last 7 days, as the median of a few runs.

The rollups are written directly: the exporter's tables stay empty and
the materialized views never run, so what they cost on insert (their
per-row checks, survey_accepts and the rest, about 0.5 us a row in chdb)
is not measured here.
"""

import argparse
import statistics
import time

import report

MODELS = 20
BUCKETS = ["<=8k", "8k_16k", "16k_32k", "32k_64k", "64k_128k", ">128k"]


INFERENCE = [
    # (metric, the bucket its values fall in)
    ("mesh_llm_inference_prompt_tokens", 7),
    ("mesh_llm_inference_output_tokens", 5),
    ("mesh_llm_inference_prefill_tokens_per_s", 8),
    ("mesh_llm_inference_decode_tokens_per_s", 8),
    ("mesh_llm_inference_time_to_first_token_ms", 6),
]


def generate(s, nodes, days, requests):
    first = f"today() - {days}"
    launches = f"""
        WITH launches AS (
            SELECT n, d, k, (d * 3 + k + n) % {MODELS} AS m
            FROM (SELECT number AS n FROM numbers({nodes})) AS nodes
            CROSS JOIN (SELECT number AS d FROM numbers({days})) AS days
            ARRAY JOIN [0, 1, 2] AS k
        ),
        counted AS (
            SELECT n, d, m,
                   count() OVER (PARTITION BY n, m ORDER BY d, k
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c
            FROM launches
        )"""
    dims = f"""toString(n) AS Node, concat('model-', toString(m)) AS Model,
               'NVIDIA GeForce RTX 4090' AS GpuName, 'cuda' AS BackendDevice,
               toInt64(1) AS GpuCount,
               {BUCKETS}[m % {len(BUCKETS)} + 1] AS ContextBucket"""
    s.query(f"""
        INSERT INTO survey.stream_days
            (MetricName, StreamKey, Day, Node, Model, GpuName, BackendDevice, GpuCount,
             ContextBucket, FailureReason, Largest)
        {launches}
        SELECT metric, sipHash128(metric, n, m), {first} + d, {dims}, NULL, toFloat64(max(c))
        FROM counted
        ARRAY JOIN ['mesh_llm_model_launch_total', 'mesh_llm_model_launch_success_total',
                    'mesh_llm_model_unload_total'] AS metric
        GROUP BY metric, n, m, d""")
    s.query(f"""
        INSERT INTO survey.histogram_days
            (MetricName, StreamKey, Day, Node, Model, GpuName, FailureReason, LargestCount, Buckets)
        {launches}
        SELECT metric, sipHash128(metric, n, m), {first} + d,
               toString(n), concat('model-', toString(m)), 'NVIDIA GeForce RTX 4090', NULL,
               toUInt64(max(c)),
               argMaxState(arrayMap(i -> if(i = bucket, toUInt64(c), toUInt64(0)),
                                    range(1, length(survey_bounds(metric)) + 2)),
                           (toUInt64(c), -toInt32({first} + d)))
        FROM counted
        ARRAY JOIN ['mesh_llm_model_launch_duration_ms', 'mesh_llm_model_uptime_s'] AS metric,
                   [6, 7] AS bucket
        GROUP BY metric, n, m, d""")
    s.query(f"""
        INSERT INTO survey.stream_days
            (MetricName, StreamKey, Day, Node, Model, GpuName, BackendDevice, GpuCount,
             ContextBucket, FailureReason, Largest)
        SELECT 'mesh_llm_model_context_length', sipHash128('context', n, m), {first} + d,
               {dims}, NULL, 8192.
        FROM (SELECT number AS n FROM numbers({nodes})) AS nodes
        CROSS JOIN (SELECT number AS d FROM numbers({days})) AS days
        ARRAY JOIN [n % {MODELS}, (n + 1) % {MODELS}] AS m""")
    if requests:
        failed = max(requests // 20, 1)
        s.query(f"""
            INSERT INTO survey.stream_days
                (MetricName, StreamKey, Day, Node, Model, GpuName, BackendDevice, GpuCount,
                 ContextBucket, FailureReason, RequestOutcome, Largest)
            {launches}
            SELECT 'mesh_llm_inference_requests_total', sipHash128('requests', outcome, n, m),
                   {first} + d, {dims}, NULL, outcome, toFloat64(max(c) * per_launch)
            FROM counted
            ARRAY JOIN ['ok', 'backend_error'] AS outcome,
                       [{requests - failed}, {failed}] AS per_launch
            GROUP BY outcome, per_launch, n, m, d""")
        metrics = [metric for metric, _ in INFERENCE]
        buckets = [bucket for _, bucket in INFERENCE]
        s.query(f"""
            INSERT INTO survey.histogram_days
                (MetricName, StreamKey, Day, Node, Model, GpuName, BackendDevice, ContextBucket,
                 FailureReason, LargestCount, Buckets)
            {launches}
            SELECT metric, sipHash128(metric, n, m), {first} + d,
                   toString(n), concat('model-', toString(m)), 'NVIDIA GeForce RTX 4090', 'cuda',
                   {BUCKETS}[m % {len(BUCKETS)} + 1], NULL,
                   toUInt64(max(c) * {requests - failed}),
                   argMaxState(arrayMap(i -> if(i = bucket, toUInt64(c * {requests - failed}),
                                                toUInt64(0)),
                                        range(1, length(survey_bounds(metric)) + 2)),
                               (toUInt64(c * {requests - failed}), -toInt32({first} + d)))
            FROM counted
            ARRAY JOIN {metrics} AS metric, {buckets} AS bucket
            GROUP BY metric, n, m, d""")
    s.query("OPTIMIZE TABLE survey.stream_days FINAL")
    s.query("OPTIMIZE TABLE survey.histogram_days FINAL")


def one_number(s, sql):
    return float(s.query(sql, "TSV").bytes().decode().strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20,
                        help="inference requests per launch (0: no inference data)")
    args = parser.parse_args()
    s = report.session()
    started = time.monotonic()
    generate(s, args.nodes, args.days, args.requests)
    generated = time.monotonic() - started
    node_days = args.nodes * args.days
    rows = one_number(s, "SELECT (SELECT count() FROM survey.stream_days) "
                         "+ (SELECT count() FROM survey.histogram_days)")
    size = one_number(s, "SELECT sum(bytes_on_disk) FROM system.parts "
                         "WHERE database = 'survey' AND active "
                         "AND table IN ('stream_days', 'histogram_days')")
    print(f"rollups of {args.nodes} nodes x {args.days} days, generated in {generated:.0f} s: "
          f"{rows:.0f} rows, {rows / node_days:.1f} rows and {size / node_days:.0f} bytes "
          f"per node-day")
    launched = sum(r["launches"] for r in report.report(s, report.FIRST_DAY, report.LAST_DAY, 0)
                   ["most_launched"])
    assert launched == args.nodes * args.days * 3, launched
    served = sum(r["requests"] for r in report.report(s, report.FIRST_DAY, report.LAST_DAY, 0)
                 ["fastest"])
    assert served == args.nodes * args.days * 3 * args.requests, served
    windows = {
        "all days": (report.FIRST_DAY, report.LAST_DAY),
        "last 7 days": (s.query("SELECT today() - 7", "TSV").bytes().decode().strip(),
                        report.LAST_DAY),
    }
    for name, (since, until) in windows.items():
        times = {key: [] for key in report.QUESTIONS}
        totals = []
        for _ in range(args.runs):
            total = 0.0
            for key in report.QUESTIONS:
                began = time.monotonic()
                report.question(s, key, since, until, 0)
                spent = time.monotonic() - began
                times[key].append(spent)
                total += spent
            totals.append(total)
        each = ", ".join(f"{key} {statistics.median(t) * 1000:.0f} ms" for key, t in times.items())
        print(f"{len(report.QUESTIONS)} queries, {name}: {statistics.median(totals):.2f} s "
              f"({each})")


if __name__ == "__main__":
    main()
