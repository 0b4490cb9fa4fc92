#!/usr/bin/env python3
"""Turns the single-server schema (schema.sql) into its cluster form.

    cluster.py [--cluster NAME] [schema.sql] > schema.cluster.sql
    cluster.py --check     # schema.cluster.sql is up to date and parses

The rule, applied to each statement:
  * every CREATE and ALTER gets ON CLUSTER <name>;
  * a table T becomes T_local with the Replicated form of its engine
    (ReplicatedMergeTree('/clickhouse/tables/{shard}/<db>/T_local',
    '{replica}'), likewise for AggregatingMergeTree), ALTERs of T go to
    T_local, and after the last of them comes T itself as a Distributed
    table over T_local: the exporter inserts into and the queries read
    from the names they know;
  * raw tables are sharded by node (service.instance.id), so a node's
    streams live on one shard; rollups are only read through their
    Distributed table;
  * a materialized view reads T_local and writes the local rollup, on each
    shard;
  * views and functions keep their text (they read the Distributed tables).
--check needs chdb (deploy/clickhouse/venv.sh) to parse each statement
with ClickHouse's own formatQuery.
"""

import argparse
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
NAME = r'"?(\w+)"?\."?(\w+)"?'
# Raw tables, sharded by node; anything else is a rollup.
SHARDING = {
    "otel_metrics_sum": "cityHash64(ResourceAttributes['service.instance.id'])",
    "otel_metrics_gauge": "cityHash64(ResourceAttributes['service.instance.id'])",
    "otel_metrics_histogram": "cityHash64(ResourceAttributes['service.instance.id'])",
}


def statements(sql):
    """Statements with their leading comments: a statement ends at a line
    of code ending in ';'."""
    found, lines = [], []
    for line in sql.splitlines():
        lines.append(line)
        if not line.lstrip().startswith("--") and line.rstrip().endswith(";"):
            lines[-1] = line.rstrip()[:-1]
            found.append("\n".join(lines).strip())
            lines = []
    if code("\n".join(lines)).strip():
        found.append("\n".join(lines).strip())
    return [s for s in found if code(s).strip()]


def code(statement):
    return "\n".join(l for l in statement.splitlines() if not l.lstrip().startswith("--"))


def leading_comments(statement):
    """The comment lines before a statement's first line of code."""
    lines = []
    for line in statement.splitlines():
        if not line.lstrip().startswith("--"):
            break
        lines.append(line)
    return "".join(line + "\n" for line in lines)


def table_of(statement):
    body = code(statement)
    m = re.match(r"\s*(CREATE TABLE|ALTER TABLE)\s+(IF NOT EXISTS\s+)?" + NAME, body)
    return (m.group(3), m.group(4)) if m else None


def convert(sql, cluster):
    on = f"ON CLUSTER {cluster}"
    items = statements(sql)
    last = {}
    for i, s in enumerate(items):
        t = table_of(s)
        if t:
            last[t] = i
    out = []
    for i, s in enumerate(items):
        body = code(s)
        comments = leading_comments(s)
        if re.match(r"\s*CREATE DATABASE", body):
            body = re.sub(r"(CREATE DATABASE (IF NOT EXISTS )?\w+)", rf"\1 {on}", body, count=1)
        elif re.match(r"\s*CREATE TABLE", body):
            db, name = table_of(s)
            body = re.sub(
                r"CREATE TABLE (IF NOT EXISTS )?" + NAME,
                f"CREATE TABLE IF NOT EXISTS {db}.{name}_local {on}",
                body,
                count=1,
            )
            body = re.sub(
                r"ENGINE = (\w*MergeTree)\(\)",
                lambda m: f"ENGINE = Replicated{m.group(1)}("
                f"'/clickhouse/tables/{{shard}}/{db}/{name}_local', '{{replica}}')",
                body,
                count=1,
            )
        elif re.match(r"\s*ALTER TABLE", body):
            db, name = table_of(s)
            body = re.sub(r"ALTER TABLE " + NAME, f"ALTER TABLE {db}.{name}_local {on}", body, count=1)
        elif re.match(r"\s*CREATE MATERIALIZED VIEW", body):
            body = re.sub(
                r"(CREATE MATERIALIZED VIEW (IF NOT EXISTS )?[\w.]+) TO ([\w.]+)",
                rf"\1 {on} TO \3_local",
                body,
                count=1,
            )
            body = re.sub(r"\bFROM ([\w.]+)", r"FROM \1_local", body)
        elif re.match(r"\s*CREATE VIEW", body):
            body = re.sub(r"(CREATE VIEW (IF NOT EXISTS )?[\w.]+)", rf"\1 {on}", body, count=1)
        elif re.match(r"\s*CREATE FUNCTION", body):
            body = re.sub(r"(CREATE FUNCTION (IF NOT EXISTS )?\w+)", rf"\1 {on}", body, count=1)
        else:
            sys.exit(f"cluster.py: no rule for this statement:\n{body}")
        out.append(comments + body.strip() + ";")
        for (db, name), index in last.items():
            if index == i:
                sharding = SHARDING.get(name)
                key = f", {sharding}" if sharding else ""
                out.append(
                    f"-- {db}.{name}: the cluster-wide table over {db}.{name}_local.\n"
                    f"CREATE TABLE IF NOT EXISTS {db}.{name} {on} AS {db}.{name}_local\n"
                    f"    ENGINE = Distributed({cluster}, {db}, {name}_local{key});"
                )
    header = (
        "-- survey on a ClickHouse cluster: generated from schema.sql by cluster.py\n"
        f"-- (cluster {cluster}); edit schema.sql and run\n"
        "-- `deploy/clickhouse/cluster.py > deploy/clickhouse/schema.cluster.sql`.\n"
        "-- The exporter's table DDL in it comes from the OpenTelemetry Collector\n"
        "-- contrib (Apache License 2.0); see schema.sql.\n"
        "-- Needs the macros {shard} and {replica} on every server, and the\n"
        "-- cluster's shards with internal_replication = true (the replicated\n"
        "-- tables copy each insert; the Distributed ones must not as well).\n\n"
    )
    return header + "\n\n".join(out) + "\n"


def check(schema, cluster):
    from chdb import session as chdb_session

    generated = convert(schema.read_text(), cluster)
    shipped = (HERE / "schema.cluster.sql").read_text()
    if generated != shipped:
        sys.exit("schema.cluster.sql is not what cluster.py makes of schema.sql; regenerate it")
    s = chdb_session.Session()
    count = 0
    for statement in statements(shipped):
        literal = code(statement).replace("\\", "\\\\").replace("'", "\\'")
        s.query(f"SELECT formatQuery('{literal}')", "TSV")
        count += 1
    print(f"{count} statements parse")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", default="survey", help="the cluster's name (default: survey)")
    parser.add_argument("--check", action="store_true",
                        help="check that schema.cluster.sql is up to date and parses")
    parser.add_argument("schema", nargs="?", type=pathlib.Path, default=HERE / "schema.sql")
    args = parser.parse_args()
    if not re.fullmatch(r"\w+", args.cluster):
        sys.exit(f"--cluster: expected a name of letters, digits and _, got {args.cluster!r}")
    if args.check:
        check(args.schema, args.cluster)
    else:
        sys.stdout.write(convert(args.schema.read_text(), args.cluster))


if __name__ == "__main__":
    main()
