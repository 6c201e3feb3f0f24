#!/usr/bin/env bash
# Set up everything the test suite needs (virtual environment, the package with its
# dev extras, PostgreSQL 15 server binaries) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
bash .ci/install-postgres.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile -q "$@"
