"""A second process holding a DuckDB file for writing (DuckDB admits one writer process):
what proves that loading definitions never opens the warehouse."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1])  # a second writer: DuckDB admits only one process
    conn.execute("SELECT 1").fetchall()
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


def hold(db: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.stdin.close()
    holder.wait(timeout=30)


def can_write(db: Path) -> str:
    """'' if another process can open the DuckDB file for writing, else its error."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1]).close()", str(db)],
        capture_output=True,
        text=True,
    )
    return done.stderr.strip()
