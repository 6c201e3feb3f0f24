"""Runs that apply a plan (``apply_plan=True``): Dagster records everything the plan did.

A plan evaluates every model it must, selected in the run or not; a plan that fails on a
model is reported per model, exactly as a run that fails on it.
"""

from __future__ import annotations

from pathlib import Path

from helpers.harness import (
    check_evaluations,
    copy_project,
    materialized,
    observed,
    plan_project,
    query,
    run_in_process,
    step_failures,
)

from dg_sqlmesh.metadata import AUDIT, DG, RUN

PROJECTS = Path(__file__).parent / "projects"
BY_PLAN = DG.evaluated_by_plan_of_run
PLAN_OPTIONS = {"apply_plan": True, "allow_prod_plan": True}


def planned_project(tmp_path: Path) -> Path:
    """The project, with prod planned and every interval filled by SQLMesh itself."""
    project = copy_project(PROJECTS / "plans", tmp_path / "plans")
    plan_project(project, skip_backfill=False)
    return project


def edit(project: Path, model: str, old: str, new: str) -> None:
    path = project / "models" / f"{model}.sql"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_plan_evaluating_unselected_models_records_them(tmp_path, instance):
    project = planned_project(tmp_path)
    edit(project, "orders", "(2, 2)", "(2, 2), (3, 1)")  # selected
    edit(project, "regions", "('south')", "('south'), ('east')")  # changed, not selected

    result = run_in_process(project, instance, select=["warehouse/shop/orders"], **PLAN_OPTIONS)

    assert result.success, step_failures(instance, result.run_id)
    # The plan applied every change on disk, the unselected model's included ...
    assert query(project / "warehouse.duckdb", "SELECT count(*) FROM shop.regions") == [(3,)]
    # ... and evaluated the selected model's downstream: Dagster records both, marked.
    found = materialized(instance, result.run_id)
    assert set(found) == {
        "warehouse/shop/orders",
        "warehouse/shop/order_names",
        "warehouse/shop/regions",
    }
    assert BY_PLAN not in found["warehouse/shop/orders"]
    for key in ("warehouse/shop/order_names", "warehouse/shop/regions"):
        assert found[key][BY_PLAN] == result.run_id
        assert found[key][RUN.state] == "materialized"
    checks = check_evaluations(instance, result.run_id)
    regions_check = checks[("warehouse/shop/regions", "not_null")]
    assert regions_check["passed"] is True
    assert regions_check["metadata"][BY_PLAN] == result.run_id
    # The untouched seed was not evaluated, so nothing claims it was.
    assert "warehouse/shop/customers" not in found


def test_a_blocking_audit_failing_in_the_plan_is_reported_per_model(tmp_path, instance):
    project = planned_project(tmp_path)
    edit(project, "orders", "(2, 2)", "(2, NULL), (3, NULL)")  # fails not_null, blocking

    result = run_in_process(project, instance, **PLAN_OPTIONS)

    assert not result.success
    failures = step_failures(instance, result.run_id)
    assert set(failures) == {"warehouse__shop__orders"}
    assert "blocking audit(s) not_null failed" in failures["warehouse__shop__orders"]
    # Dagster does not start the downstream step of a failed one, as after a failing run.
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "warehouse__shop__order_names" not in started
    assert "warehouse__shop__customers" in started
    check = check_evaluations(instance, result.run_id)[("warehouse/shop/orders", "not_null")]
    assert (check["passed"], check["severity"]) == (False, "ERROR")
    assert check["metadata"][AUDIT.failing_rows] == 2
    # The models the plan did not need to touch are up to date, not failed.
    found = materialized(instance, result.run_id)
    assert set(found) == {"warehouse/shop/customers", "warehouse/shop/regions"}
    for key in found:
        assert found[key][RUN.state] == "up_to_date"
        assert "the plan this run applied failed" in found[key][RUN.detail]


def test_a_failed_plan_promotes_nothing_so_nothing_it_wrote_is_materialized(tmp_path, instance):
    project = planned_project(tmp_path)
    edit(project, "regions", "('south')", "('south'), ('east')")  # written before the failure
    edit(project, "orders", "(2, 2)", "(2, NULL), (3, NULL)")  # fails not_null, blocking

    result = run_in_process(project, instance, **PLAN_OPTIONS)

    assert not result.success
    # The environment still serves the old regions: the plan was not promoted.
    assert query(project / "warehouse.duckdb", "SELECT count(*) FROM shop.regions") == [(2,)]
    found = materialized(instance, result.run_id)
    assert "warehouse/shop/regions" not in found
    seen = observed(instance, result.run_id)["warehouse/shop/regions"]
    assert seen[RUN.state] == "written_not_promoted"
    assert "does not serve this version" in seen[RUN.detail]
    failures = step_failures(instance, result.run_id)
    assert "does not serve this version" in failures["warehouse__shop__regions"]
    # One reason, said once.
    reason = failures["warehouse__shop__orders"].splitlines()[0]
    assert reason.count("not_null") == 1 and "failing row" in reason
