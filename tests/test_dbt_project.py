"""A dbt project loaded by SQLMesh runs through Dagster with the data bare SQLMesh writes.

The project (``projects/dbt_shop``) has what dbt users have: ``dbt_project.yml`` and
``profiles.yml``, a package in ``dbt_packages/`` (as ``dbt deps`` installs it) whose macro
a model calls, a seed, an ephemeral model (SQLMesh: EMBEDDED, never written), a table, a
view, and schema tests (SQLMesh: audits; ``relationships`` is a standalone audit).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from helpers.harness import (
    check_evaluations,
    copy_project,
    materialized,
    plan_project,
    query,
    run_in_process,
    run_multiprocess,
    step_failures,
)

from dg_sqlmesh import sqlmesh_definitions_factory
from dg_sqlmesh.metadata import RUN

PROJECTS = Path(__file__).parent / "projects"
TABLES = ("main.raw_orders", "main.orders", "main.customer_totals")


def table_rows(project: Path) -> dict[str, list]:
    db = project / "warehouse.duckdb"
    return {table: query(db, f"SELECT * FROM {table} ORDER BY ALL") for table in TABLES}


@pytest.fixture
def bare(tmp_path) -> dict[str, list]:
    """What SQLMesh alone writes: its plan fills every interval."""
    project = copy_project(PROJECTS / "dbt_shop", tmp_path / "bare")
    plan_project(project, skip_backfill=False)
    return table_rows(project)


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_dbt_project_runs_with_the_data_of_bare_sqlmesh(tmp_path, instance, bare, executor):
    project = copy_project(PROJECTS / "dbt_shop", tmp_path / "ours")
    plan_project(project)  # the environment exists, every interval is left to the run
    run = run_in_process if executor == "in_process" else run_multiprocess

    result = run(project, instance)

    assert result.success, step_failures(instance, result.run_id)
    assert table_rows(project) == bare
    assert bare["main.customer_totals"] == [(1, 5000), (2, 2500)]  # the package's macro ran
    found = materialized(instance, result.run_id)
    assert {k: m[RUN.state] for k, m in found.items()} == {
        "warehouse/main/raw_orders": "materialized",
        "warehouse/main/orders": "materialized",
        "warehouse/main/customer_totals": "materialized",
    }
    checks = check_evaluations(instance, result.run_id)
    assert {(key, name.split("_")[0]) for key, name in checks} == {
        ("warehouse/main/orders", "unique"),
        ("warehouse/main/orders", "not"),
        ("warehouse/main/customer_totals", "not"),
        ("warehouse/main/customer_totals", "relationships"),  # SQLMesh: a standalone audit
    }
    assert all(c["passed"] for c in checks.values())


def test_the_ephemeral_model_is_lineage_only(tmp_path):
    project = copy_project(PROJECTS / "dbt_shop", tmp_path / "dbt")
    graph = sqlmesh_definitions_factory(project_dir=str(project)).resolve_asset_graph()
    ephemeral = dg.AssetKey(["warehouse", "main", "stg_orders"])
    assert not graph.get(ephemeral).is_executable
    assert graph.get(dg.AssetKey(["warehouse", "main", "orders"])).parent_keys == {ephemeral}


def test_loading_the_dbt_project_never_opens_the_warehouse(tmp_path):
    """SQLMesh's dbt loader reads ``profiles.yml``; describing the project must not connect
    (a second writer holds the DuckDB file during a cold load)."""
    from helpers.db_holder import can_write, hold, release

    project = copy_project(PROJECTS / "dbt_shop", tmp_path / "dbt")
    db = project / "warehouse.duckdb"
    duckdb.connect(str(db)).close()  # the file exists, as in a deployed warehouse
    holder = hold(db)
    try:
        defs = sqlmesh_definitions_factory(project_dir=str(project))
    finally:
        release(holder)
    assert (
        dg.AssetKey(["warehouse", "main", "orders"])
        in defs.resolve_asset_graph().get_all_asset_keys()
    )
    assert can_write(db) == ""
