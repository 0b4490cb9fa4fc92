#!/bin/sh
# Creates (once) a Python virtual environment with the pinned chdb of
# requirements.txt, for the ClickHouse tests and report.py.
#   deploy/clickhouse/venv.sh DIR    -> DIR/bin/python
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: venv.sh DIR}
stamp="$dir/.survey-requirements"
if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$here/requirements.txt"; then
    exit 0
fi
python3 -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
