"""What the Dagster UI shows after a run is what SQLMesh did: a run where nothing was due,
and each step's log."""

from __future__ import annotations

import logging

import dagster as dg
from helpers.harness import (
    check_evaluations,
    copy_project,
    materialized,
    plan_project,
    run_in_process,
)

from dg_sqlmesh.metadata import DG, RUN, TABLE


def _logs(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str | None, str]]:
    """(step key, message) of the run's log lines at INFO and above."""
    return [
        (r.step_key, r.user_message)
        for r in instance.all_logs(run_id)
        if r.user_message and r.level >= logging.INFO
    ]


def test_a_run_where_nothing_was_due_keeps_the_last_check_results_current(planned_shop, instance):
    first = run_in_process(planned_shop, instance)
    assert first.success
    again = run_in_process(planned_shop, instance)
    assert again.success

    shown = materialized(instance, again.run_id)
    assert shown and all(m[DG.no_op] is True for m in shown.values())
    # the partitioned model had nothing due: nothing recorded, and never unpartitioned
    assert "shop/marts/daily_revenue" not in shown
    for metadata in shown.values():
        assert metadata[DG.up_to_date] == (
            f"up to date: nothing was due, data unchanged since run {first.run_id}"
        )
    assert {m[RUN.state] for m in shown.values()} == {"up_to_date"}
    before = check_evaluations(instance, first.run_id)
    after = check_evaluations(instance, again.run_id)
    assert set(after) == set(before)  # every check still has a current result
    for key, result in after.items():
        assert result["passed"] == before[key]["passed"], key
        assert result["metadata"][DG.carried_over_from_run] == first.run_id, key
    # the latest completed execution of each check is this run's, so none shows grey
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey.from_user_string(a), c) for a, c in after]
    )
    assert {r.run_id for r in latest.values()} == {again.run_id}
    assert {r.status.value for r in latest.values()} == {"SUCCEEDED"}

    messages = [m for _, m in _logs(instance, again.run_id)]
    assert not [m for m in messages if "did not yield" in m or "emitted no result" in m]
    assert len([m for m in messages if m.startswith("Nothing was due")]) == 1
    assert not [m for m in messages if "No models are ready to run" in m]


def test_carried_over_results_name_the_run_that_audited_after_several_no_op_runs(
    planned_shop, instance
):
    first = run_in_process(planned_shop, instance)
    second = run_in_process(planned_shop, instance)
    third = run_in_process(planned_shop, instance)
    assert first.success and second.success and third.success
    carried = check_evaluations(instance, third.run_id)
    assert carried
    for key, result in carried.items():  # not the second run, where no audit ran
        assert result["metadata"][DG.carried_over_from_run] == first.run_id, key


def test_checks_of_an_environment_built_outside_dagster_get_real_results_on_a_no_op(
    tmp_path, instance
):
    from conftest import EXAMPLE

    project = copy_project(EXAMPLE, tmp_path / "shop")
    plan_project(project, skip_backfill=False)  # `sqlmesh plan`: everything built, no Dagster

    result = run_in_process(project, instance)

    assert result.success
    shown = materialized(instance, result.run_id)
    assert shown and {m[RUN.state] for m in shown.values()} == {"up_to_date"}
    planned = {
        (r.event_log_entry.dagster_event.event_specific_data.asset_check_key)
        for r in instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        ).records
    }
    evaluated = check_evaluations(instance, result.run_id)
    assert len(evaluated) == len(planned) > 0  # no check left skipped
    for key, check in evaluated.items():
        assert check["metadata"][DG.run_alone] is True, key
        assert check["passed"] is True, key


def test_each_step_log_shows_its_own_models_sqlmesh_lines(planned_shop, instance):
    result = run_in_process(planned_shop, instance)
    assert result.success
    by_step: dict[str | None, list[str]] = {}
    for step, message in _logs(instance, result.run_id):
        by_step.setdefault(step, []).append(message)
    (leader,) = [
        s for s, ms in by_step.items() if any(m.startswith("Executed SQLMesh") for m in ms)
    ]
    assert any("12 model(s) in" in m for m in by_step[leader])
    followers = [s for s in by_step if s and s != leader and s.startswith("shop__")]
    assert len(followers) == 11
    for step in followers:
        table = step.split("__")[-1]
        own = [m for m in by_step[step] if ": batch " in m]
        assert own, (step, by_step[step])
        assert all(f".{table}: batch " in m for m in own), own  # its own model's lines only
        assert all(f"in step '{leader}', which executed SQLMesh" in m for m in own)


def test_a_change_not_applied_is_not_recorded_as_what_ran(planned_shop, instance):
    from dg_sqlmesh import sqlmesh_definitions_factory

    key = dg.AssetKey(["shop", "staging", "stg_customers"])
    first = run_in_process(planned_shop, instance)
    assert first.success
    ran = instance.get_latest_materialization_event(key).asset_materialization
    old_version = ran.tags["dagster/code_version"]

    model = planned_shop / "models" / "staging" / "stg_customers.sql"
    model.write_text(
        model.read_text().replace("signed_up_at /*", "1 AS loyalty_tier, signed_up_at /*")
    )
    # definitions reloaded, as a code server would
    defs = sqlmesh_definitions_factory(project_dir=str(planned_shop))
    new_version = defs.resolve_assets_def(key).code_versions_by_key[key]
    assert new_version != old_version  # the definition shows the change on disk

    again = run_in_process(planned_shop, instance, select=[key.to_user_string()])
    assert again.success
    latest = instance.get_latest_materialization_event(key).asset_materialization
    # what ran is the environment's version: Dagster keeps the definition flagged as changed
    assert latest.tags["dagster/code_version"] == old_version != new_version
    columns = [c.name for c in latest.metadata[TABLE.column_schema].schema.columns]
    assert "loyalty_tier" not in columns and "email" in columns
    assert "not yet in the environment" in latest.metadata[RUN.unapplied_change].value
