#!/usr/bin/env bash
# Install the OLDEST dagster and sqlmesh that pyproject.toml declares (its ">=" floors,
# pinned in .ci/oldest-constraints.txt) into a scratch virtual environment together with
# dg-sqlmesh, and run the core tests there: execution in process and the asset graph.
#
# Usage: scripts/check_oldest_versions.sh [extra pytest arguments]
# Environment: PYTHON (interpreter for the venv, default python3; needs >= 3.11),
#              OLDEST_VENV (venv folder; default a temporary one, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CONSTRAINTS=.ci/oldest-constraints.txt

# The floors in pyproject.toml and the pins in the constraints file must agree.
"$PYTHON" - "$CONSTRAINTS" <<'PY'
import re
import sys
import tomllib

deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
floors = {}
for dep in deps:
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)[^>]*>=\s*([0-9][0-9.]*)", dep)
    if match and match.group(1).lower() in ("dagster", "sqlmesh"):
        parts = match.group(2).split(".")
        floors[match.group(1).lower()] = ".".join(parts + ["0"] * (3 - len(parts)))
pins = dict(
    line.split("==")
    for line in (l.split("#")[0].strip() for l in open(sys.argv[1]))
    if "==" in line
)
bad = {n: (f, pins.get(n)) for n, f in floors.items() if pins.get(n) != f}
if len(floors) != 2 or bad:
    sys.exit(f"pyproject.toml floors {floors} do not match the pins in {sys.argv[1]}: {bad}")
print("oldest declared versions:", ", ".join(f"{n}=={v}" for n, v in sorted(floors.items())))
PY

if [ -n "${OLDEST_VENV:-}" ]; then
  VENV=$OLDEST_VENV
else
  VENV=$(mktemp -d "${TMPDIR:-/tmp}/dg-sqlmesh-oldest-XXXXXX")
  trap 'rm -rf "$VENV"' EXIT
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The package (not editable: the tests must import what was installed) with its test needs.
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" ".[postgres]" "pytest>=8" "time-machine>=2.13"
echo "installed:"
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(dagster|dagster-shared|dagster-pipes|sqlmesh|sqlglot|duckdb|pandas|pydantic|sqlalchemy) ' \
  | sed 's/^/  /'

# src/ layout: the tests import the installed package, not the source tree.
"$VENV/bin/python" -c 'import dg_sqlmesh, sys; assert sys.prefix in dg_sqlmesh.__file__, dg_sqlmesh.__file__'
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_execution.py tests/test_asset_graph.py -k "in_process or test_asset_graph" \
  "$@"
