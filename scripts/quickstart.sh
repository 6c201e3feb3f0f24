#!/usr/bin/env bash
# Set up a virtual environment, install dg-sqlmesh, and materialize the bundled
# example SQLMesh project (examples/shop) through Dagster on DuckDB, printing what
# happened to each model. Safe to run again: later runs report what was due.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh ".[postgres]"  # the example also declares a postgres gateway
exec .venv/bin/python examples/shop/materialize.py "$@"
