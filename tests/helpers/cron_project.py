"""Small SQLMesh projects of FULL models with the crons a test needs."""

from __future__ import annotations

import json
from pathlib import Path

from projects.generate import BEFORE_ALL


def write_cron_project(
    root: Path,
    models: dict[str, tuple],
    *,
    start: str = "2026-01-01",
    externals: dict[str, dict[str, str]] | None = None,
) -> Path:
    """A DuckDB SQLMesh project of FULL models with the given crons; counts executions."""
    q = json.dumps
    (root / "models").mkdir(parents=True)
    lines = [
        "gateways:",
        "  duckdb:",
        "    connection:",
        "      type: duckdb",
        f"      database: {q(str(root / 'db.duckdb'))}",
        "default_gateway: duckdb",
        "model_defaults:",
        "  dialect: duckdb",
        f"  start: {q(start)}",
        "disable_anonymized_analytics: true",
        "before_all:",
        *[f"  - {q(statement)}" for statement in BEFORE_ALL],
    ]
    (root / "config.yaml").write_text("\n".join(lines) + "\n")
    for name, (cron, query, *extra) in models.items():
        props = ", ".join([f"name {name}", "kind FULL", f"cron '{cron}'", *extra])
        (root / "models" / f"{name.replace('.', '_')}.sql").write_text(
            f"MODEL ({props});\n{query}\n"
        )
    if externals:
        text = "".join(
            f"- name: {name}\n  columns:\n"
            + "".join(f"    {col}: {typ}\n" for col, typ in columns.items())
            for name, columns in externals.items()
        )
        (root / "external_models.yaml").write_text(text)
    return root
