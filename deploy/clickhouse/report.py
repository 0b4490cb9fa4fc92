#!/usr/bin/env python3
"""survey's six questions on ClickHouse, in-process with chdb.

Creates the schema (schema.sql) in a fresh chdb session, inserts the rows
the OpenTelemetry Collector's clickhouse exporter would write (one INSERT
per exported request, so the materialized views fire as they would), runs
the six queries in queries/ for each window asked, and prints one JSON
object per window with the same keys, rows and field names as
`survey-collector report --format json`.

    report.py --batches rows.jsonl [--window SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES] ...]

rows.jsonl holds one exported request per line:
    {"table": "otel_metrics_sum", "rows": [{...}, ...]}
A window's dates are YYYY-MM-DD (UTC, SINCE inclusive, UNTIL exclusive);
either may be empty for no bound, as may MIN_LAUNCHES (0). Rows backed by
fewer than MIN_NODES distinct node processes (default 1) are left out and
counted on stderr, as survey-collector's --min-nodes does.
"""

import argparse
import json
import pathlib
import re
import sys

from cluster import code, statements

HERE = pathlib.Path(__file__).resolve().parent
QUESTIONS = [
    "most_launched",
    "failure_rate",
    "reliable_hardware",
    "viable_context",
    "unstable",
    "slow_or_short",
]
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
    parts = text.split(":")
    if len(parts) == 3:
        parts.append("")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(
            f"expected SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES], got {text!r}")
    since, until, minimum, min_nodes = parts
    for day in (since, until):
        if day and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {day!r}")
    if since and until and since >= until:
        raise argparse.ArgumentTypeError(f"the window is empty: {since} is not before {until}")
    for number, what in ((minimum, "launches"), (min_nodes, "nodes")):
        if number and not number.isdigit():
            raise argparse.ArgumentTypeError(f"expected a whole number of {what}, got {number!r}")
    return since or FIRST_DAY, until or LAST_DAY, int(minimum or 0), max(int(min_nodes or 1), 1)


def suppress(answers, min_nodes):
    """Leaves out the rows backed by fewer than min_nodes nodes; returns how
    many."""
    suppressed = 0
    for key, rows in answers.items():
        kept = [row for row in rows if row.get("nodes", min_nodes) >= min_nodes]
        suppressed += len(rows) - len(kept)
        answers[key] = kept
    return suppressed


def question(s, key, since, until, min_launches):
    """The rows answering question `key` over [since, until)."""
    params = {"since": since, "until": until, "min_launches": min_launches}
    sql = (HERE / "queries" / f"{key}.sql").read_text()
    sql = code(sql)
    settings = ", ".join(f"{k} = {v}" for k, v in SETTINGS.items())
    sql = sql + (",\n" if "SETTINGS" in sql else "\nSETTINGS ") + settings
    out = s.query(sql, "JSONEachRow", params=params).bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def report(s, since, until, min_launches):
    """The six answers, by question."""
    return {key: question(s, key, since, until, min_launches) for key in QUESTIONS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", required=True, type=pathlib.Path,
                        help="exported requests as exporter rows, one JSON object per line")
    parser.add_argument("--window", action="append", type=parse_window, default=[],
                        help="SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES] (repeatable; default: everything)")
    args = parser.parse_args()
    s = session()
    with args.batches.open() as batches:
        insert(s, batches)
    windows = args.window or [(FIRST_DAY, LAST_DAY, 0, 1)]
    for since, until, min_launches, min_nodes in windows:
        answers = report(s, since, until, min_launches)
        suppressed = suppress(answers, min_nodes)
        if suppressed:
            print(f"{since} to {until}: {suppressed} rows backed by fewer than {min_nodes} "
                  "nodes suppressed", file=sys.stderr)
        print(json.dumps(answers))


if __name__ == "__main__":
    main()
