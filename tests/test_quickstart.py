"""The quickstart's main job as a user runs it: examples/shop/materialize.py, twice, and
what it prints for each model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop"


def _materialize(root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "shop" / "materialize.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_quickstart_prints_what_happened_to_each_model(tmp_path):
    shutil.copytree(
        EXAMPLE,
        tmp_path / "examples" / "shop",
        ignore=shutil.ignore_patterns(".cache", "logs", "*.duckdb", "*.wal"),
    )
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()

    first = _materialize(tmp_path).splitlines()
    lines = {line.split()[0]: line for line in first if line.startswith("  shop/")}
    assert len(lines) == 12
    # Ranges end on the last day evaluated (the last partition the UI shows), inclusive.
    assert f"materialized 2026-11-20..{yesterday}, audits" in lines["shop/raw/customers"]
    days = (datetime.now(UTC).date() - datetime(2026, 11, 20).date()).days
    assert (
        f"materialized {days} partition(s) 2026-11-20..{yesterday}"
        in (lines["shop/marts/daily_revenue"])
    )
    assert (tmp_path / ".dagster_home" / "dagster.yaml").read_text().count("default_limit: 1")

    again = _materialize(tmp_path).splitlines()
    lines = {line.split()[0]: line for line in again if line.startswith("  shop/")}
    assert len(lines) == 12
    for name, line in lines.items():
        assert "up to date (no interval due, nothing executed)" in line, name
