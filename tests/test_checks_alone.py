"""Checks executed without their asset ("Execute" on a check in the UI) run SQLMesh's
audits on the table as it is: nothing evaluated, nothing written, SQLMesh's state
untouched, and the audits' failing rows reported.

The runs select check keys only, as the UI launches them.
"""

from __future__ import annotations

import json
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
    step_failures,
)

from dg_sqlmesh import sqlmesh_definitions_factory
from dg_sqlmesh.metadata import AUDIT, DG

PROJECT = Path(__file__).parent / "projects" / "metadata"
ORDERS = "warehouse/shop/orders"
EVENTS = "warehouse/shop/daily_events"
CHECKS = [(ORDERS, "not_null"), (ORDERS, "accepted_range"), (EVENTS, "not_null")]


@pytest.fixture
def project(tmp_path) -> Path:
    root = copy_project(PROJECT, tmp_path / "metadata")
    plan_project(root)
    return root


def physical_table(db: Path, name: str) -> str:
    (table,) = query(
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'sqlmesh__shop' "
        f"AND table_name LIKE 'shop__{name}__%'",
    )
    return f'sqlmesh__shop."{table[0]}"'


def warehouse_and_state(db: Path) -> dict[str, list]:
    """Every row of the model tables and of SQLMesh's state that a run could change."""
    return {
        "orders": sorted(query(db, "SELECT * FROM shop.orders"), key=str),
        "events": query(db, "SELECT count(*) FROM shop.daily_events"),
        "intervals": sorted(query(db, "SELECT * FROM sqlmesh._intervals"), key=str),
        "snapshots": query(db, "SELECT count(*) FROM sqlmesh._snapshots"),
        "environments": sorted(query(db, "SELECT * FROM sqlmesh._environments"), key=str),
    }


def execute_checks(
    project: Path, instance: dg.DagsterInstance, checks: list[tuple[str, str]], executor: str
) -> dg.ExecutionResult:
    keys = [dg.AssetCheckKey(dg.AssetKey.from_user_string(a), c) for a, c in checks]
    if executor == "in_process":
        defs = sqlmesh_definitions_factory(project_dir=str(project))
        return dg.materialize(
            defs.assets,
            selection=dg.AssetSelection.checks(*keys),
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
        )
    # Dagster's default multiprocess executor: each step its own process, rebuilding the
    # job (check keys only) from the environment.
    from helpers.defs_from_env import checks_and_assets_job
    from helpers.reconstruct import reconstructable_job

    with pytest.MonkeyPatch.context() as env:
        env.setenv("DG_SQLMESH_TEST_PROJECT", str(project))
        env.setenv("DG_SQLMESH_TEST_CHECKS", json.dumps(checks))
        env.setenv("DG_SQLMESH_TEST_ASSETS", "[]")
        return dg.execute_job(
            reconstructable_job(checks_and_assets_job), instance=instance, raise_on_error=False
        )


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_checks_executed_alone_audit_the_table_as_it_is(project, instance, executor):
    db = project / "warehouse.duckdb"
    assert run_in_process(project, instance).success
    # Rows SQLMesh did not write: an evaluation of the FULL model would replace them.
    orders = physical_table(db, "orders")
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"INSERT INTO {orders} VALUES (NULL, 7), (6, 5000)")
    before = warehouse_and_state(db)

    result = execute_checks(project, instance, CHECKS, executor)

    assert warehouse_and_state(db) == before  # nothing written, state untouched
    assert materialized(instance, result.run_id) == {}
    checks = check_evaluations(instance, result.run_id)
    assert set(checks) == set(CHECKS)
    not_null = checks[(ORDERS, "not_null")]
    assert (not_null["passed"], not_null["severity"]) == (False, "ERROR")  # blocking
    assert not_null["metadata"][AUDIT.failing_rows] == 1
    assert "IS NULL" in not_null["metadata"][AUDIT.query]
    in_range = checks[(ORDERS, "accepted_range")]
    assert (in_range["passed"], in_range["severity"]) == (False, "WARN")  # non-blocking
    assert in_range["metadata"][AUDIT.failing_rows] == 1
    assert in_range["metadata"][DG.run_alone] is True
    assert checks[(EVENTS, "not_null")]["passed"] is True
    # Dagster fails the step of a failed blocking check, and only that one.
    assert set(step_failures(instance, result.run_id)) == {"warehouse__shop__orders"}


def test_a_check_of_a_model_never_materialized_says_so(project, instance):
    result = execute_checks(project, instance, [(EVENTS, "not_null")], "in_process")
    assert not result.success
    failure = step_failures(instance, result.run_id)["warehouse__shop__daily_events"]
    assert "no data in the environment yet: materialize it" in failure
    assert check_evaluations(instance, result.run_id) == {}


def test_a_standalone_audit_executed_alone_runs(tmp_path, instance):
    """A standalone audit's check (on the last model it reads) runs when executed alone,
    although a run's model selection leaves standalone audits out."""
    project = copy_project(PROJECT.parent / "standalone_audits", tmp_path / "standalone")
    db = project / "warehouse.duckdb"
    with duckdb.connect(str(db)) as conn:  # the external table: order 3 does not exist
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.payments (payment_id INT, order_id INT, amount INT)")
        conn.execute("INSERT INTO raw.payments VALUES (1, 1, 10), (2, 3, 5)")
    plan_project(project)
    assert run_in_process(project, instance).success
    before = query(db, "SELECT * FROM sqlmesh._intervals ORDER BY 1")

    check = ("warehouse/shop/orders", "payments_match_orders")
    result = execute_checks(project, instance, [check], "in_process")

    assert result.success  # SQLMesh never makes a standalone audit blocking
    evaluation = check_evaluations(instance, result.run_id)[check]
    assert (evaluation["passed"], evaluation["severity"]) == (False, "WARN")
    assert evaluation["metadata"][AUDIT.failing_rows] == 1
    assert query(db, "SELECT * FROM sqlmesh._intervals ORDER BY 1") == before


def test_checks_alone_in_a_dev_environment_audit_the_table_the_environment_reads(
    tmp_path, instance
):
    """A model indirectly changed by a non-breaking change keeps reading prod's table in the
    dev environment (SQLMesh calls it representative, though not deployable): its checks,
    executed alone, audit that table over the intervals it holds, as SQLMesh reads it.

    Regression: checks executed alone asked whether the snapshot was deployable, found no
    dev interval, and failed saying the model had no data."""
    from conftest import EXAMPLE

    project = copy_project(EXAMPLE, tmp_path / "shop")
    plan_project(project, skip_backfill=False)  # prod, with data
    model = project / "models" / "staging" / "stg_products.sql"
    model.write_text(model.read_text().replace("SELECT", "SELECT 1 AS new_col,", 1))
    plan_project(project, "dev", skip_backfill=False)  # marts.product_sales: indirect

    keys = [dg.AssetCheckKey(dg.AssetKey(["shop", "marts", "product_sales"]), "not_null")]
    defs = sqlmesh_definitions_factory(project_dir=str(project), environment="dev")
    result = dg.materialize(
        defs.assets,
        selection=dg.AssetSelection.checks(*keys),
        resources=defs.resources,
        instance=instance,
        raise_on_error=False,
    )

    assert result.success, step_failures(instance, result.run_id)
    (check,) = check_evaluations(instance, result.run_id).values()
    assert check["passed"] is True
    assert check["metadata"][DG.run_alone] is True
