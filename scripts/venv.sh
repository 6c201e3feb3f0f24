# Sourced by the scripts here: create .venv if needed and install the project into it.
# Usage: . scripts/venv.sh [pip install target, default "."]
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e "${1:-.}"
