"""The documentation site builds with every warning an error (broken links and anchors,
docstrings the API reference cannot read), and its API reference covers the public API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dg_sqlmesh

ROOT = Path(__file__).parent.parent


def test_the_docs_build_strictly_and_document_every_public_name(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    api = (site / "reference" / "api" / "index.html").read_text()
    missing = [name for name in dg_sqlmesh.__all__ if f"dg_sqlmesh.{name}" not in api]
    assert not missing, f"public names missing from docs/reference/api.md: {missing}"
