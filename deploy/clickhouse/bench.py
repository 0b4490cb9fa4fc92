#!/usr/bin/env python3
"""ClickHouse's seven queries against survey-collector's report, on one
generated fleet, in one run (a benchmark; not run in CI).

    deploy/clickhouse/venv.sh target/chdb-venv
    cargo build --release -p survey-collector
    target/chdb-venv/bin/python deploy/clickhouse/bench.py [--nodes 10000] [--days 30]
        [--runs 5] [--collector target/release/survey-collector]

The fleet is that of survey-collector's report benchmark
(survey-collector/benches/collector.rs, generate_report_data): each node
has 20 models, each with launch, success and unload counters, launch-time
and uptime histograms and a context gauge; each day it launches 3 of its
models once more and unloads them (the three counters and the two
histograms of each change that day), and 2 of its models are loaded (the
gauge of each is seen that day). The same streams and days go

  * into survey-collector: a SQLite store made by survey-collector's own
    migrations (survey-collector/sql/sqlite/migrations), its streams and
    daily rollup rows written as the report benchmark writes them, then
    summarized by its summarize.sql, as Store::summarize_all does;
  * into ClickHouse (schema.sql, in chdb) through its views: the points as
    the exporter's rows, one per stream and day it changed, one INSERT per
    table and day, so the materialized views fire as they do on a server.

Then, in one run, both answer the same two windows, all days and the last
7 days (which cuts every stream still counting): `survey-collector report
--format json` (one process each time, wall clock), and the seven queries
one after the other in the chdb session (report.py's question(), wall
clock), alternating, --runs times each after one run of each that is not
timed. Printed: the medians and their ratio, for ClickHouse with its
summaries merged (OPTIMIZE ... FINAL, as a server whose background merges
caught up) and with inserts pending (the fleet's last day sent again, a
retry that changes no count, left in parts not merged yet, as on a server
taking inserts: the views' FINAL then merges rows as it reads them, and a
window that cuts streams merges their Days too). The answers must equal
survey-collector's (as the end-to-end test compares them) in every run.
About 6 minutes for the default fleet on a 2-core machine.
"""

import argparse
import datetime
import json
import pathlib
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import report

ROOT = report.HERE.parent.parent
SQLITE = ROOT / "survey-collector" / "sql" / "sqlite" / "migrations"
# survey-collector's schema versions, in order (survey-collector/src/store.rs, MIGRATIONS).
MIGRATIONS = [["schema.sql"], ["summaries.sql", "summarize.sql"], ["drop_whole_sum.sql"],
              ["request_outcome.sql"]]
MODELS = 20
BUCKETS = ["<=8k", "8k_16k", "16k_32k", "32k_64k", "64k_128k", ">128k"]
# Each model's streams, as the report benchmark creates them: the three
# counters, the two histograms (with the bucket each launch falls in, and
# the sum per launch) and the context gauge.
COUNTERS = ["mesh_llm_model_launch_total", "mesh_llm_model_launch_success_total",
            "mesh_llm_model_unload_total"]
HISTOGRAMS = [("mesh_llm_model_launch_duration_ms", 5, 5000.0),
              ("mesh_llm_model_uptime_s", 6, 3600.0)]
GAUGE = "mesh_llm_model_context_length"
CONTEXT = 8192


def instance_id(node):
    return f"{node:08x}-0000-4000-8000-{node * 7919:012x}"


def launched(node, day, k):
    """The model `node` launches `k`-th on `day` (u32 arithmetic, as the
    report benchmark's)."""
    return ((day * 3) % 2**32 + k + node) % 2**32 % MODELS


class NoDeltaHistograms:
    """survey-collector's bucket_delta_sum, which summarize.sql names for
    delta histograms; the fleet has none."""

    def step(self, end, start):
        raise RuntimeError("bucket_delta_sum: the fleet has no delta histogram")

    def finalize(self):
        return None


def sqlite_store(path, nodes, days, today, bucket_counts):
    """The fleet's streams and rollups in a survey-collector store at
    `path`; returns how many streams and rollup rows it holds."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_aggregate("bucket_delta_sum", 2, NoDeltaHistograms)
    conn.execute("PRAGMA journal_mode = WAL")
    for version, files in enumerate(MIGRATIONS, 1):
        ddl = "\n".join((SQLITE / name).read_text() for name in files)
        conn.executescript(f"BEGIN IMMEDIATE;\n{ddl}\nPRAGMA user_version = {version};\nCOMMIT;")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    kinds = [(metric, "sum") for metric in COUNTERS] + \
            [(metric, "histogram") for metric, _, _ in HISTOGRAMS] + [(GAUGE, "gauge")]
    streams, rollups, histograms = [], [], []
    stream_id = 0

    def flush():
        conn.executemany(
            "INSERT INTO streams (StreamId, StreamKey, MetricName, ResourceId, StartTimeUnix, "
            "Kind, AggregationTemporality, Node, Model, GpuName, BackendDevice, GpuCount, "
            "ContextBucket) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'NVIDIA GeForce RTX 4090', 'cuda', 1, ?)", streams)
        conn.executemany("INSERT INTO rollup_daily (StreamId, Day, Value) VALUES (?, ?, ?)",
                         rollups)
        conn.executemany("INSERT INTO rollup_histogram_daily "
                         "(StreamId, Day, Count, Sum, BucketCounts) VALUES (?, ?, ?, ?, ?)",
                         histograms)
        streams.clear()
        rollups.clear()
        histograms.clear()

    for node in range(nodes):
        node_id = instance_id(node)
        conn.execute("INSERT INTO resources (ResourceId, ResourceAttributes, ServiceName, Node) "
                     "VALUES (?, ?, 'mesh-llm', ?)",
                     (node + 1, json.dumps({"service.instance.id": node_id}, separators=(",", ":")),
                      node_id))
        ids = []
        for model in range(MODELS):
            per_kind = []
            for metric, kind in kinds:
                stream_id += 1
                start, temporality = (0, 0) if kind == "gauge" else (1, 2)
                streams.append((stream_id, stream_id.to_bytes(16, "little"), metric, node + 1,
                                start, kind, temporality, node_id, f"model-{model:02}-Q4_K_M",
                                BUCKETS[model % len(BUCKETS)]))
                per_kind.append(stream_id)
            ids.append(per_kind)
        counts = [0] * MODELS
        for day in range(today - days, today):
            for k in range(3):
                model = launched(node, day, k)
                counts[model] += 1
                n = counts[model]
                for stream in ids[model][:len(COUNTERS)]:
                    rollups.append((stream, day, float(n)))
                for i, (metric, bucket, per_launch) in enumerate(HISTOGRAMS):
                    buckets = [0] * bucket_counts[metric]
                    buckets[bucket] = n
                    histograms.append((ids[model][len(COUNTERS) + i], day, float(n), n * per_launch,
                                       json.dumps(buckets, separators=(",", ":"))))
            for loaded in range(2):
                rollups.append((ids[(node + loaded) % MODELS][-1], day, float(CONTEXT)))
        if len(rollups) > 100_000:
            flush()
    flush()
    conn.execute("COMMIT")
    conn.executescript("BEGIN IMMEDIATE;\n" + (SQLITE / "summarize.sql").read_text() + "\nCOMMIT;")
    conn.execute("PRAGMA synchronous = FULL")
    streams, rows = conn.execute(
        "SELECT (SELECT count(*) FROM streams), (SELECT count(*) FROM rollup_daily) "
        "+ (SELECT count(*) FROM rollup_histogram_daily)").fetchone()
    conn.close()
    return streams, rows


# The exporter's rows of the fleet, from bench.launches (node n, day d,
# model m, its launches so far c, the launch's k of the day).
RESOURCE = """map('service.name', 'mesh-llm', 'service.version', '0.9.0',
    'service.instance.id', concat(lower(leftPad(hex(toUInt32(n)), 8, '0')), '-0000-4000-8000-',
                                  lower(leftPad(hex(toUInt64(n) * 7919), 12, '0'))),
    'telemetry.sdk.language', 'rust', 'telemetry.sdk.name', 'opentelemetry',
    'telemetry.sdk.version', '0.33.1')"""


def attributes(launch_kind):
    """What survey puts on model m's points (the report benchmark's
    attributes(); the launch kind only where survey puts it)."""
    kind = "'mesh_llm.launch_kind', 'runtime_load'," if launch_kind else ""
    return f"""map('mesh_llm.model', concat('model-', leftPad(toString(m), 2, '0'), '-Q4_K_M'),
        'mesh_llm.architecture', 'llama', 'mesh_llm.quantization', 'Q4_K_M', {kind}
        'mesh_llm.gpu_name', 'NVIDIA GeForce RTX 4090',
        'mesh_llm.gpu_stable_id', '6f1c2d3e4b5a6978', 'mesh_llm.backend_device', 'cuda',
        'mesh_llm.gpu_count', '1', 'mesh_llm.is_soc', 'false', 'mesh_llm.backend', 'llama.cpp',
        'mesh_llm.context_bucket', {BUCKETS}[m % {len(BUCKETS)} + 1],
        'mesh_llm.service_version', '0.9.0')"""


def export_day(s, day, start):
    """The fleet's points of `day` into the exporter's tables: one INSERT
    per table."""
    launches = f"SELECT n, m, c, k FROM bench.launches WHERE d = {day}"
    time_of = f"toDateTime({day * 86400} + 3600 * (8 * k + 1))"
    s.query(f"""
        INSERT INTO survey.otel_metrics_sum (ResourceAttributes, ScopeName, ServiceName, MetricName,
            MetricDescription, MetricUnit, Attributes, StartTimeUnix, TimeUnix, Value,
            AggregationTemporality, IsMonotonic)
        SELECT {RESOURCE}, 'survey', 'mesh-llm', metric, '', survey_unit(metric),
               {attributes(True)}, toDateTime({start}), {time_of}, toFloat64(c), 2, true
        FROM ({launches})
        ARRAY JOIN {COUNTERS} AS metric""")
    s.query(f"""
        INSERT INTO survey.otel_metrics_histogram (ResourceAttributes, ScopeName, ServiceName,
            MetricName, MetricDescription, MetricUnit, Attributes, StartTimeUnix, TimeUnix, Count,
            Sum, BucketCounts, ExplicitBounds, AggregationTemporality)
        SELECT {RESOURCE}, 'survey', 'mesh-llm', metric, '', survey_unit(metric),
               {attributes(True)}, toDateTime({start}), {time_of}, toUInt64(c), c * per_launch,
               arrayMap(i -> if(i = bucket + 1, toUInt64(c), toUInt64(0)),
                        range(1, length(survey_bounds(metric)) + 2)),
               survey_bounds(metric), 2
        FROM ({launches})
        ARRAY JOIN {[h[0] for h in HISTOGRAMS]} AS metric, {[h[1] for h in HISTOGRAMS]} AS bucket,
                   {[h[2] for h in HISTOGRAMS]} AS per_launch""")
    s.query(f"""
        INSERT INTO survey.otel_metrics_gauge (ResourceAttributes, ScopeName, ServiceName,
            MetricName, MetricDescription, MetricUnit, Attributes, StartTimeUnix, TimeUnix, Value)
        SELECT {RESOURCE}, 'survey', 'mesh-llm', '{GAUGE}', '', survey_unit('{GAUGE}'),
               {attributes(False)}, toDateTime({start}), toDateTime({day * 86400} + 3600),
               toFloat64({CONTEXT})
        FROM (SELECT DISTINCT n FROM bench.launches WHERE d = {day})
        ARRAY JOIN [n % {MODELS}, (n + 1) % {MODELS}] AS m""")


def clickhouse_fleet(s, nodes, days, today):
    """The fleet's points into the exporter's tables, day by day; returns
    how many rows."""
    first = today - days
    s.query("CREATE DATABASE IF NOT EXISTS bench")
    s.query(f"""
        CREATE TABLE bench.launches ENGINE = MergeTree ORDER BY (d, n) AS
        SELECT n, d, k, m,
               count() OVER (PARTITION BY n, m ORDER BY d, k
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c
        FROM (SELECT n, d, k, ((d * 3) % 4294967296 + k + n) % 4294967296 % {MODELS} AS m
              FROM (SELECT number AS n FROM numbers({nodes})) AS nodes
              CROSS JOIN (SELECT {first} + number AS d FROM numbers({days})) AS days
              ARRAY JOIN [0, 1, 2] AS k)""")
    start = (first - 1) * 86400
    for day in range(first, today):
        export_day(s, day, start)
    return (len(COUNTERS) + len(HISTOGRAMS)) * 3 * nodes * days + 2 * nodes * days


def same(a, b):
    """Numbers: integers equal, floats to 1e-9 relative; the rest equal,
    objects by key (as survey-fleet/tests/clickhouse.rs compares)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def collector_report(collector, store, since):
    """survey-collector's answers, and the wall time of the process."""
    command = [str(collector), "report", "--db", str(store), "--format", "json"]
    if since:
        command += ["--since", since]
    began = time.monotonic()
    done = subprocess.run(command, check=True, capture_output=True)
    return json.loads(done.stdout), time.monotonic() - began


def clickhouse_report(s, since):
    """The seven queries' answers, and their wall time, one after the
    other; also each query's time."""
    answers, each = {}, {}
    for key in report.QUESTIONS:
        began = time.monotonic()
        answers[key] = report.question(s, key, since or report.FIRST_DAY, report.LAST_DAY, 0)
        each[key] = time.monotonic() - began
    return answers, sum(each.values()), each


def parts(s):
    """The summaries' active parts, as text."""
    return s.query("SELECT arrayStringConcat(groupArray(concat(table, ' ', toString(n))), ', ') "
                   "FROM (SELECT table, count() AS n FROM system.parts WHERE database = 'survey' "
                   "AND active AND table LIKE '%summaries' GROUP BY table ORDER BY table)",
                   "TSV").bytes().decode().strip()


def compare(windows, collector, store, s, runs, state, figures):
    """Times both on each window, alternating, after a run of each that is
    not timed, and checks the answers of every run."""
    for name, since in windows.items():
        sc, ch, per_query = [], [], {key: [] for key in report.QUESTIONS}
        for run in range(runs + 1):
            expected, collector_spent = collector_report(collector, store, since)
            answers, spent, each = clickhouse_report(s, since)
            if run:
                sc.append(collector_spent)
                ch.append(spent)
                for key, t in each.items():
                    per_query[key].append(t)
            for key in report.QUESTIONS:
                if not same(expected[key], answers[key]):
                    sys.exit(f"{state}, {name}, {key}: ClickHouse answers otherwise\n"
                             f"survey-collector: {json.dumps(expected[key])}\n"
                             f"ClickHouse: {json.dumps(answers[key])}")
        figures.append((f"{state} ({parts(s)} parts)", name, statistics.median(sc),
                        statistics.median(ch),
                        {key: statistics.median(t) for key, t in per_query.items()}))


def day_text(day):
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def one_number(s, sql):
    return float(s.query(sql, "TSV").bytes().decode().strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (medians)")
    parser.add_argument("--collector", type=pathlib.Path,
                        default=ROOT / "target" / "release" / "survey-collector",
                        help="the release survey-collector binary")
    args = parser.parse_args()
    if not args.collector.exists():
        sys.exit(f"no survey-collector at {args.collector}: `cargo build --release -p "
                 "survey-collector`, or --collector PATH")
    started = time.monotonic()
    today = int(time.time()) // 86400
    windows = {"all days": None, "last 7 days": day_text(today - 7)}
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="survey-bench-"))
    try:
        s = report.session()
        bucket_counts = {metric: int(one_number(s, f"SELECT length(survey_bounds('{metric}')) + 1"))
                         for metric, _, _ in HISTOGRAMS}
        began = time.monotonic()
        store = scratch / "survey.db"
        streams, rollup_rows = sqlite_store(store, args.nodes, args.days, today, bucket_counts)
        sqlite_time = time.monotonic() - began
        began = time.monotonic()
        exported = clickhouse_fleet(s, args.nodes, args.days, today)
        clickhouse_time = time.monotonic() - began
        began = time.monotonic()
        s.query("OPTIMIZE TABLE survey.stream_summaries FINAL")
        s.query("OPTIMIZE TABLE survey.histogram_summaries FINAL")
        optimize_time = time.monotonic() - began
        summaries = one_number(s, "SELECT (SELECT count() FROM survey.stream_summaries) "
                                  "+ (SELECT count() FROM survey.histogram_summaries)")
        size = one_number(s, "SELECT sum(bytes_on_disk) FROM system.parts "
                             "WHERE database = 'survey' AND active "
                             "AND table IN ('stream_summaries', 'histogram_summaries')")
        node_days = args.nodes * args.days
        print(f"fleet: {args.nodes} nodes x {args.days} days ({day_text(today - args.days)} to "
              f"{day_text(today - 1)}), {exported / node_days:.0f} changed points a node-day")
        print(f"  survey-collector: {streams} streams, {rollup_rows} rollup rows, "
              f"{store.stat().st_size / node_days:.0f} bytes a node-day (written in "
              f"{sqlite_time:.0f} s)")
        print(f"  ClickHouse: {exported} exporter rows through the views in "
              f"{clickhouse_time:.0f} s; "
              f"{summaries:.0f} summary rows, {size / node_days:.0f} bytes a node-day; "
              f"OPTIMIZE ... FINAL of both in {optimize_time:.1f} s")
        figures = []
        compare(windows, args.collector, store, s, args.runs, "merged", figures)
        # The last day again, as a retried export, into parts left unmerged.
        s.query("SYSTEM STOP MERGES survey.stream_summaries")
        s.query("SYSTEM STOP MERGES survey.histogram_summaries")
        export_day(s, today - 1, (today - args.days - 1) * 86400)
        compare(windows, args.collector, store, s, args.runs, "inserts pending", figures)
        s.query("SYSTEM START MERGES survey.stream_summaries")
        s.query("SYSTEM START MERGES survey.histogram_summaries")
        print(f"answers equal in every run ({len(report.QUESTIONS)} questions, "
              f"{len(windows)} windows); medians of {args.runs} runs, wall clock "
              f"(the whole benchmark: {time.monotonic() - started:.0f} s):")
        for state, name, sc, ch, each in figures:
            print(f"  {name}, ClickHouse {state}: {ch:.2f} s, survey-collector report {sc:.2f} s: "
                  f"x{ch / sc:.2f}")
            print("    " + ", ".join(f"{key} {t * 1000:.0f} ms" for key, t in each.items()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
