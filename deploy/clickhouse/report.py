#!/usr/bin/env python3
"""survey's questions on ClickHouse.

Runs the queries in queries/ (one file per question, named like its key)
for each window asked, over a ClickHouse server's HTTP interface holding
schema.sql, and prints one JSON object per window with the same keys, rows
and field names as `survey-collector report --format json`.

    report.py --url http://clickhouse:8123 [--user NAME] [--min-requests N]
              [--streams] [--window SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES[:MIN_REQUESTS]] ...]

The password, if any, comes from SURVEY_CLICKHOUSE_PASSWORD.
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

As a module, the same functions run on an in-process chdb session
(`session()`, a fresh database holding schema.sql), as the tests and
bench.py do.
"""

import argparse
import json
import os
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

from cluster import code, statements

HERE = pathlib.Path(__file__).resolve().parent
# The questions: one query file each, named like its key (the next
# question is one file).
QUESTIONS = sorted(path.stem for path in (HERE / "queries").glob("*.sql"))
# The widest window a Date allows.
FIRST_DAY, LAST_DAY = "1970-01-01", "2149-06-06"
SETTINGS = {"output_format_json_quote_64bit_integers": 0}


def session():
    from chdb import session as chdb_session

    s = chdb_session.Session()
    for statement in statements((HERE / "schema.sql").read_text()):
        s.query(code(statement))
    return s


class Server:
    """A ClickHouse server's HTTP interface, queried as a chdb session is:
    query(sql, format, params) -> an answer whose bytes() are the output.
    Query parameters travel as param_<name> (ClickHouse's HTTP form)."""

    class Answer:
        def __init__(self, data):
            self.data = data

        def bytes(self):
            return self.data

    def __init__(self, url, user=None, password=None, timeout=600):
        self.url, self.user, self.password, self.timeout = url.rstrip("/"), user, password, timeout

    def query(self, sql, fmt="TabSeparated", params=None):
        # wait_end_of_query: an error met while the answer streams comes as
        # an error status, not as text after a 200.
        fields = {"default_format": fmt, "wait_end_of_query": 1}
        fields.update({f"param_{k}": str(v) for k, v in (params or {}).items()})
        request = urllib.request.Request(
            f"{self.url}/?{urllib.parse.urlencode(fields)}", data=sql.encode(), method="POST")
        if self.user:
            request.add_header("X-ClickHouse-User", self.user)
        if self.password:
            request.add_header("X-ClickHouse-Key", self.password)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return Server.Answer(answer.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace").strip()
            sys.exit(f"ClickHouse at {self.url} answered {e.code}: {detail}")
        except urllib.error.URLError as e:
            sys.exit(f"ClickHouse at {self.url} cannot be reached: {e.reason}")


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
    """[node, metric, streams] for each node and metric the rollups (the
    views' per-stream summaries) hold, sorted."""
    sql = """
        SELECT Node, MetricName, toInt64(uniqExact(StreamKey)) AS n
        FROM (SELECT Node, MetricName, StreamKey FROM survey.stream_summaries
              UNION ALL
              SELECT Node, MetricName, StreamKey FROM survey.histogram_summaries)
        GROUP BY Node, MetricName
        ORDER BY Node, MetricName"""
    out = s.query(sql, "JSONCompactEachRow").bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def report(s, since, until, min_launches, min_requests=0):
    """The answers, by question."""
    return {key: question(s, key, since, until, min_launches, min_requests) for key in QUESTIONS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True,
                        help="the ClickHouse server's HTTP interface, e.g. http://clickhouse:8123")
    parser.add_argument("--user", help="ClickHouse user (password: SURVEY_CLICKHOUSE_PASSWORD)")
    parser.add_argument("--window", action="append", type=parse_window, default=[],
                        help="SINCE:UNTIL:MIN_LAUNCHES[:MIN_NODES[:MIN_REQUESTS]] "
                             "(repeatable; default: everything)")
    parser.add_argument("--min-requests", type=whole_number, default=0,
                        help="leave out fastest rows backed by fewer inference requests "
                             "(default 0; a window's MIN_REQUESTS wins)")
    parser.add_argument("--streams", action="store_true",
                        help="also print the streams the views counted, per node and metric")
    args = parser.parse_args()
    s = Server(args.url, args.user, os.environ.get("SURVEY_CLICKHOUSE_PASSWORD"))
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
