#!/usr/bin/env python3
"""survey's questions on ClickHouse, in-process with chdb.

Creates the schema (schema.sql) in a fresh chdb session, inserts the rows
the OpenTelemetry Collector's clickhouse exporter would write (one INSERT
per exported request, so the materialized views fire as they would), runs
the queries in queries/ (one file per question, named like its key) for
each window asked, and prints one JSON object per window with the same
keys, rows and field names as `survey-collector report --format json`.

    report.py --batches rows.jsonl [--min-requests N] [--streams]
              [--window SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES[:MIN_REQUESTS]] ...]

rows.jsonl holds one exported request per line:
    {"table": "otel_metrics_sum", "rows": [{...}, ...]}
A window's dates are YYYY-MM-DD (UTC, SINCE inclusive, UNTIL exclusive);
either may be empty for no bound, as may MIN_LAUNCHES (0). Rows backed by
fewer than MIN_NODES distinct node processes (default 1) are left out and
counted on stderr, as survey-collector's --min-nodes does. `fastest` rows
backed by fewer than MIN_REQUESTS inference requests are left out
(default: --min-requests, itself 0), as survey-collector's
--min-requests does. With --streams, a last line says which streams the
views counted: {"streams": [[node, metric, streams], ...]}, for each node
and metric in the rollups (what survey-collector's store holds as its
streams of counters, histograms and the context gauge).
"""

import argparse
import json
import pathlib
import re
import sys

from cluster import code, statements

HERE = pathlib.Path(__file__).resolve().parent
# The questions: one query file each, named like its key (the next
# question is one file).
QUESTIONS = sorted(path.stem for path in (HERE / "queries").glob("*.sql"))
TABLES = {"otel_metrics_sum", "otel_metrics_gauge", "otel_metrics_histogram"}
# The widest window a Date allows.
FIRST_DAY, LAST_DAY = "1970-01-01", "2149-06-06"
SETTINGS = {"output_format_json_quote_64bit_integers": 0}


def session():
    from chdb import session as chdb_session

    s = chdb_session.Session()
    for statement in statements((HERE / "schema.sql").read_text()):
        s.query(code(statement))
    return s


def insert(s, batches):
    count = 0
    for number, line in enumerate(batches, 1):
        if not line.strip():
            continue
        batch = json.loads(line)
        table = batch["table"]
        if table not in TABLES:
            sys.exit(f"line {number}: unknown table {table!r}; expected one of {sorted(TABLES)}")
        if not batch["rows"]:
            continue
        rows = "\n".join(json.dumps(row, separators=(",", ":")) for row in batch["rows"])
        s.query(f"INSERT INTO survey.{table} FORMAT JSONEachRow\n{rows}")
        count += 1
    return count


def parse_window(text):
    """(since, until, min_launches, min_nodes, min_requests); min_requests
    None when the window gives none."""
    parts = text.split(":")
    if not 3 <= len(parts) <= 5:
        raise argparse.ArgumentTypeError(
            f"expected SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES[:MIN_REQUESTS]], got {text!r}")
    parts += [""] * (5 - len(parts))
    since, until, minimum, min_nodes, min_requests = parts
    for day in (since, until):
        if day and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {day!r}")
    if since and until and since >= until:
        raise argparse.ArgumentTypeError(f"the window is empty: {since} is not before {until}")
    for number, what in ((minimum, "launches"), (min_nodes, "nodes"), (min_requests, "requests")):
        if number and not number.isdigit():
            raise argparse.ArgumentTypeError(f"expected a whole number of {what}, got {number!r}")
    return (since or FIRST_DAY, until or LAST_DAY, int(minimum or 0), max(int(min_nodes or 1), 1),
            int(min_requests) if min_requests else None)


def whole_number(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def suppress(answers, min_nodes):
    """Leaves out the rows backed by fewer than min_nodes nodes; returns how
    many."""
    suppressed = 0
    for key, rows in answers.items():
        kept = [row for row in rows if row.get("nodes", min_nodes) >= min_nodes]
        suppressed += len(rows) - len(kept)
        answers[key] = kept
    return suppressed


def question(s, key, since, until, min_launches, min_requests=0):
    """The rows answering question `key` over [since, until)."""
    params = {"since": since, "until": until, "min_launches": min_launches,
              "min_requests": min_requests}
    sql = (HERE / "queries" / f"{key}.sql").read_text()
    sql = code(sql)
    settings = ", ".join(f"{k} = {v}" for k, v in SETTINGS.items())
    sql = sql + (",\n" if "SETTINGS" in sql else "\nSETTINGS ") + settings
    out = s.query(sql, "JSONEachRow", params=params).bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def streams(s):
    """[node, metric, streams] for each node and metric the rollups hold,
    sorted."""
    sql = """
        SELECT Node, MetricName, toInt64(uniqExact(StreamKey)) AS n
        FROM (SELECT Node, MetricName, StreamKey FROM survey.stream_days
              UNION ALL
              SELECT Node, MetricName, StreamKey FROM survey.histogram_days)
        GROUP BY Node, MetricName
        ORDER BY Node, MetricName"""
    out = s.query(sql, "JSONCompactEachRow").bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def report(s, since, until, min_launches, min_requests=0):
    """The answers, by question."""
    return {key: question(s, key, since, until, min_launches, min_requests) for key in QUESTIONS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", required=True, type=pathlib.Path,
                        help="exported requests as exporter rows, one JSON object per line")
    parser.add_argument("--window", action="append", type=parse_window, default=[],
                        help="SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES[:MIN_REQUESTS]] "
                             "(repeatable; default: everything)")
    parser.add_argument("--min-requests", type=whole_number, default=0,
                        help="leave out fastest rows backed by fewer inference requests "
                             "(default 0; a window's MIN_REQUESTS wins)")
    parser.add_argument("--streams", action="store_true",
                        help="also print the streams the views counted, per node and metric")
    args = parser.parse_args()
    s = session()
    with args.batches.open() as batches:
        insert(s, batches)
    windows = args.window or [(FIRST_DAY, LAST_DAY, 0, 1, None)]
    for since, until, min_launches, min_nodes, min_requests in windows:
        if min_requests is None:
            min_requests = args.min_requests
        answers = report(s, since, until, min_launches, min_requests)
        suppressed = suppress(answers, min_nodes)
        if suppressed:
            print(f"{since} to {until}: {suppressed} rows backed by fewer than {min_nodes} "
                  "nodes suppressed", file=sys.stderr)
        print(json.dumps(answers))
    if args.streams:
        print(json.dumps({"streams": streams(s)}))


if __name__ == "__main__":
    main()
