"""Backfills from Dagster: a run of a partition range executes SQLMesh once for exactly its
intervals, restates what SQLMesh already holds, and records exactly the partitions SQLMesh
recorded. Real SQLMesh project (tests/projects/partitioned), real DuckDB, real Dagster runs
launched as the UI launches a single-run backfill."""

from __future__ import annotations

import pytest
from helpers.harness import check_evaluations, executions, query, step_failures
from helpers.partitioned import (
    CHAIN,
    day,
    db,
    key,
    launch,
    loaded_at,
    make_project,
    materialized_partitions,
    range_tags,
    state_days,
    warehouse_days,
)

from dg_sqlmesh.metadata import AUDIT

TEN_DAYS = [day(n) for n in range(2, 12)]


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_ten_day_backfill_runs_sqlmesh_once_and_fills_exactly_ten_intervals(
    tmp_path, instance, executor
):
    project = make_project(tmp_path)
    before = executions(db(project))
    result = launch(
        project, instance, CHAIN, range_tags(TEN_DAYS[0], TEN_DAYS[-1]), executor=executor
    )
    assert result.success, step_failures(instance, result.run_id)
    assert executions(db(project)) - before == 1
    for model in CHAIN:
        assert warehouse_days(project, model) == TEN_DAYS, model
        assert state_days(project, model) == TEN_DAYS, model
        assert materialized_partitions(instance, model, result.run_id) == TEN_DAYS, model
    # three rows a day, nothing outside the range
    assert query(db(project), "SELECT COUNT(*) FROM part.events")[0][0] == 30
    # the audit is a check of the run
    checks = check_evaluations(instance, result.run_id)
    assert checks[("warehouse/part/events", "not_null")]["passed"] is True
    assert checks[("warehouse/part/events", "not_null")]["metadata"][AUDIT.failing_rows] == 0


def test_restating_two_partitions_rewrites_exactly_those_rows(tmp_path, instance):
    project = make_project(tmp_path)
    first = launch(project, instance, CHAIN, range_tags(TEN_DAYS[0], TEN_DAYS[-1]))
    assert first.success, step_failures(instance, first.run_id)
    events_before = loaded_at(project, "part.events")
    totals_before = loaded_at(project, "part.daily_totals")
    restated = TEN_DAYS[3:5]

    again = launch(project, instance, ["part.events"], range_tags(restated[0], restated[-1]))

    assert again.success, step_failures(instance, again.run_id)
    events_after = loaded_at(project, "part.events")
    assert {d for d in TEN_DAYS if events_after[d] != events_before[d]} == set(restated)
    assert all(len(events_after[d]) == 1 for d in restated)  # every row of the day rewritten
    assert loaded_at(project, "part.daily_totals") == totals_before  # no cascade downstream
    assert query(db(project), "SELECT COUNT(*) FROM part.events")[0][0] == 30
    assert state_days(project, "part.events") == TEN_DAYS
    assert state_days(project, "part.daily_totals") == TEN_DAYS
    assert materialized_partitions(instance, "part.events", again.run_id) == restated
    warnings = [
        e.user_message for e in instance.all_logs(again.run_id) if "Restating" in e.user_message
    ]
    assert warnings and "part.events (2 partition(s))" in warnings[0]


def test_a_failing_interval_fails_only_its_partitions(tmp_path, instance):
    project = make_project(tmp_path)
    failing = TEN_DAYS[4]
    import duckdb

    with duckdb.connect(str(db(project))) as conn:
        conn.execute(f"INSERT INTO control.fail_days VALUES ('{failing}')")

    result = launch(project, instance, CHAIN, range_tags(TEN_DAYS[0], TEN_DAYS[-1]))

    assert not result.success
    others = [d for d in TEN_DAYS if d != failing]
    assert state_days(project, "part.events") == others
    assert materialized_partitions(instance, "part.events", result.run_id) == others
    failure = step_failures(instance, result.run_id)["warehouse__part__events"]
    assert f"1 of 10 partition(s) not materialized ({failing})" in failure
    assert "planned failure" in failure
    status = instance.get_status_by_partition(
        dg_key("part.events"), TEN_DAYS, _partitions_def(project)
    )
    assert {k for k, s in status.items() if s and s.value == "FAILED"} == {failing}
    # Nothing downstream is shown materialized for data SQLMesh did not record.
    for model in CHAIN[1:]:
        recorded = set(state_days(project, model))
        assert set(materialized_partitions(instance, model, result.run_id)) <= recorded


def dg_key(model: str):  # noqa: ANN201
    from helpers.partitioned import key

    return key(model)


def _partitions_def(project):  # noqa: ANN001, ANN202
    from dg_sqlmesh import sqlmesh_definitions_factory

    defs = sqlmesh_definitions_factory(project_dir=str(project), partitioned=True)
    return defs.resolve_assets_def(dg_key("part.events")).partitions_def


def test_a_run_naming_no_partitions_records_every_interval_sqlmesh_filled(tmp_path, instance):
    # sqlmesh_job without a partition, applying the plan that creates the environment (the
    # quickstart's first run): the plan's backfill fills every day, and each is a partition.
    project = make_project(tmp_path, plan=False)
    from dg_sqlmesh import sqlmesh_definitions_factory

    defs = sqlmesh_definitions_factory(
        project_dir=str(project), partitioned=True, apply_plan=True, allow_prod_plan=True
    )
    job = defs.resolve_job_def("sqlmesh_job")
    result = job.execute_in_process(
        instance=instance, asset_selection=[key("part.events")], raise_on_error=False
    )
    assert result.success, step_failures(instance, result.run_id)
    every_day = [day(n) for n in range(21)]
    assert state_days(project, "part.events") == every_day
    assert materialized_partitions(instance, "part.events", result.run_id) == every_day

    # Nothing is due afterwards: no partition is claimed again.
    again = job.execute_in_process(instance=instance, asset_selection=[key("part.events")])
    assert materialized_partitions(instance, "part.events", again.run_id) == []

    # A partitioned model reading a partitioned model needs a partition in Dagster: said so.
    refused = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not refused.success
    failure = step_failures(instance, refused.run_id)["warehouse__part__events"]
    assert "names no partition" in failure and "part.daily_totals reads part.events" in failure


def test_one_partition_as_dg_materialize_launches_it(tmp_path, instance):
    project = make_project(tmp_path)
    from dg_sqlmesh import sqlmesh_definitions_factory

    defs = sqlmesh_definitions_factory(project_dir=str(project), partitioned=True)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance, asset_selection=[key(m) for m in CHAIN], partition_key=day(5)
    )
    assert result.success
    for model in CHAIN:
        assert state_days(project, model) == [day(5)], model
        assert materialized_partitions(instance, model, result.run_id) == [day(5)], model
