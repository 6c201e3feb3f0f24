"""A sequential chain of SQLMesh models, each a query that takes a noticeable moment, whose
table records when SQLMesh evaluated it: what a live run is measured against."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
import yaml

from helpers.harness import plan_project, query

WORK_ROWS = 50_000_000  # about 0.4 s of DuckDB work per model on a quiet machine


def name(index: int) -> str:
    return f"chain.m{index:02d}"


def key(index: int) -> str:
    return f"db/chain/m{index:02d}"


PARTITION_ROWS = 3  # rows of each day of the partitioned head


def chain_project(
    root: Path,
    length: int,
    *,
    failing_audit_at: int | None = None,
    partitioned_head_from: str | None = None,
) -> Path:
    """``length`` FULL models, each reading the one before; ``failing_audit_at``: that
    model's blocking audit fails (its rows are all NULL in the audited column).
    ``partitioned_head_from``: a daily partitioned model beside the chain (``chain.daily``,
    INCREMENTAL_BY_TIME_RANGE from that day, :data:`PARTITION_ROWS` rows a day), which
    SQLMesh evaluates with the chain's first model, long before its last."""
    (root / "models").mkdir(parents=True)
    (root / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "gateways": {"duckdb": {"connection": {"type": "duckdb", "database": "db.duckdb"}}},
                "default_gateway": "duckdb",
                "model_defaults": {"dialect": "duckdb", "start": "2024-01-01"},
            }
        )
    )
    if partitioned_head_from is not None:
        (root / "models" / "daily.sql").write_text(
            "MODEL (name chain.daily, kind INCREMENTAL_BY_TIME_RANGE (time_column ds),\n"
            f"  cron '@daily', start '{partitioned_head_from}',\n"
            "  audits (not_null(columns := (ds))));\n"
            "SELECT day::DATE AS ds, r AS v, now() AS evaluated_at\n"
            "FROM generate_series(@start_ds::DATE, @end_ds::DATE, INTERVAL 1 DAY) AS d(day),\n"
            f"  range({PARTITION_ROWS}) AS t(r)\n"
        )
    for index in range(1, length + 1):
        checked = "NULL::INT" if index == failing_audit_at else str(index)
        source = f" FROM {name(index - 1)}" if index > 1 else ""
        (root / "models" / f"m{index:02d}.sql").write_text(
            f"MODEL (name {name(index)}, kind FULL, cron '@daily',\n"
            "  audits (not_null(columns := (checked))));\n"
            f"SELECT {checked} AS checked, now() AS evaluated_at,\n"
            f"  (SELECT sum(hash(range)) FROM range({WORK_ROWS})) AS work{source}\n"
        )
    plan_project(root)
    return root


def evaluated_at(project: Path, index: int) -> float:
    """When SQLMesh began evaluating the model (its query's transaction start)."""
    (value,) = query(project / "db.duckdb", f"SELECT max(evaluated_at) FROM {name(index)}")[0]
    assert isinstance(value, datetime)
    return value.timestamp()


def materialized_at(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Asset key string -> when its materialization was recorded in the run."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {
        r.event_log_entry.dagster_event.asset_key.to_user_string(): r.event_log_entry.timestamp
        for r in records
    }


def add_idle_model(project: Path) -> str:
    """A cheap model reading nothing of the chain (planned again so the environment holds
    it); its step sorts before the chain's. Returns its asset key string."""
    (project / "models" / "idle.sql").write_text(
        "MODEL (name chain.idle, kind FULL, cron '@daily',\n"
        "  audits (not_null(columns := (checked))));\n"
        "SELECT 1 AS checked, now() AS evaluated_at\n"
    )
    plan_project(project)
    return "db/chain/idle"
