"""A model in another dialect than the project's, with a quoted mixed-case name.

The project's default dialect is DuckDB, whose names are case-insensitive; its
Snowflake model ``sales."DailyTotals"`` is ``"DB"."SALES"."DailyTotals"`` to SQLMesh.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.harness import copy_project, materialized, plan_project, query, run_in_process

from dg_sqlmesh.metadata import RUN

PROJECT = Path(__file__).parent / "projects" / "mixed_dialects"
TOTALS = "DB/SALES/DailyTotals"
ORDERS = "db/sales/orders"


@pytest.fixture
def project(tmp_path) -> Path:
    project = copy_project(PROJECT, tmp_path / "mixed_dialects")
    plan_project(project)
    return project


@pytest.mark.parametrize("select", [None, [TOTALS]], ids=["all", "alone"])
def test_a_model_named_in_another_dialect_is_run_and_reported(project, instance, select):
    result = run_in_process(project, instance, select=select)
    assert result.success
    shown = materialized(instance, result.run_id)
    assert set(shown) == ({TOTALS, ORDERS} if select is None else {TOTALS})
    assert {m[RUN.state] for m in shown.values()} == {"materialized"}
    assert query(project / "db.duckdb", 'SELECT COUNT(*) FROM sales."DailyTotals"') == [(2,)]

    again = run_in_process(project, instance, select=select)  # nothing due now
    assert again.success
    assert {m[RUN.state] for m in materialized(instance, again.run_id).values()} == {"up_to_date"}
