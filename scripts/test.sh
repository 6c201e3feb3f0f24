#!/usr/bin/env bash
# Set up everything the test suite needs (virtual environment, the package with its
# dev extras, PostgreSQL 15 server binaries, a Redis server binary) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh ".[dev]"
bash .ci/install-postgres.sh
bash .ci/install-redis.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile -q "$@"
