"""Partitions SQLMesh holds show in Dagster; the schedule and automation request partitions.

Real SQLMesh project (tests/projects/partitioned) on DuckDB, intervals filled by SQLMesh
itself outside Dagster, real Dagster instance.
"""

from __future__ import annotations

import os
import shutil
import threading
from datetime import UTC, datetime, time, timedelta

import dagster as dg
from helpers.harness import executions, step_failures
from helpers.partitioned import (
    CHAIN,
    RANGE_END,
    RANGE_START,
    day,
    db,
    key,
    make_project,
    materialized_partitions,
    state_days,
)

from dg_sqlmesh import sqlmesh_definitions_factory

SENSOR = "sqlmesh_partition_status_sensor"


def sqlmesh_run(project, models, first: str, last: str) -> None:
    """``sqlmesh run`` of ``models`` for the days ``first``..``last``, outside Dagster."""
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    from dg_sqlmesh.project.config import load_config

    set_console(NoopConsole())
    config, gateway = load_config(project, None)
    context = Context(paths=[project], config=config, gateway=gateway)
    try:
        context.run("prod", start=first, end=last, select_models=list(models), ignore_cron=True)
    finally:
        context.close()


def statuses(instance, defs, model: str) -> dict[str, str]:
    partitions_def = defs.resolve_assets_def(key(model)).partitions_def
    keys = partitions_def.get_partition_keys()
    found = instance.get_status_by_partition(key(model), keys, partitions_def) or {}
    return {k: s.value for k, s in found.items() if s is not None}


def test_intervals_filled_outside_dagster_show_as_materialized_partitions(tmp_path, instance):
    project = make_project(tmp_path)
    sqlmesh_run(project, CHAIN, day(2), day(6))
    before = executions(db(project))
    defs = sqlmesh_definitions_factory(project_dir=str(project), partitioned=True)
    sensor = defs.resolve_sensor_def(SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    result = sensor(dg.build_sensor_context(instance=instance))

    assert isinstance(result, dg.SensorResult)
    for event in result.asset_events:  # what the daemon does with a sensor's asset events
        instance.report_runless_asset_event(event)
    held = [day(n) for n in range(2, 7)]
    for model in CHAIN:
        assert state_days(project, model) == held
        assert statuses(instance, defs, model) == dict.fromkeys(held, "MATERIALIZED"), model
    assert executions(db(project)) == before  # nothing was run for it

    # Reported once: the next tick has nothing new, then only what SQLMesh added since.
    assert isinstance(sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)
    sqlmesh_run(project, ["part.events"], day(7), day(7))
    again = sensor(dg.build_sensor_context(instance=instance))
    assert [(e.asset_key, e.partition) for e in again.asset_events] == [
        (key("part.events"), day(7))
    ]


def test_the_schedule_requests_each_models_due_partitions(tmp_path, instance):
    project = make_project(tmp_path)
    sqlmesh_run(project, CHAIN, day(0), day(15))
    sqlmesh_run(project, ["part.events"], day(16), day(18))
    defs = sqlmesh_definitions_factory(
        project_dir=str(project), partitioned=True, enable_schedule=True
    )
    schedule = defs.resolve_schedule_def("sqlmesh_adaptive_schedule")
    midnight = datetime.combine(datetime.now(UTC).date(), time(0, 5), tzinfo=UTC)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=midnight)

    requests = schedule(context)

    yesterday = day(20)
    by_selection = {tuple(k.to_user_string() for k in r.asset_selection): r for r in requests}
    assert set(by_selection) == {
        ("warehouse/part/sizes",),
        ("warehouse/part/events",),
        ("warehouse/part/daily_totals", "warehouse/part/daily_report"),
    }
    events = by_selection[("warehouse/part/events",)]
    assert (events.tags[RANGE_START], events.tags[RANGE_END]) == (day(19), yesterday)
    chain = by_selection[("warehouse/part/daily_totals", "warehouse/part/daily_report")]
    assert (chain.tags[RANGE_START], chain.tags[RANGE_END]) == (day(16), yesterday)
    assert "dagster/partition" not in by_selection[("warehouse/part/sizes",)].tags
    assert len({r.run_key for r in requests}) == 3

    # A requested run fills exactly its partitions, through sqlmesh_job.
    job = defs.resolve_job_def("sqlmesh_job")
    tags = {**events.tags, "dagster/schedule_name": "sqlmesh_adaptive_schedule"}
    result = job.execute_in_process(
        instance=instance, asset_selection=events.asset_selection, tags=tags, raise_on_error=False
    )
    assert result.success, step_failures(instance, result.run_id)
    assert materialized_partitions(instance, "part.events", result.run_id) == [day(19), day(20)]
    assert state_days(project, "part.events") == [day(n) for n in range(21)]


def test_automation_requests_the_latest_partition_after_the_cron_tick(tmp_path, instance):
    project = make_project(tmp_path, plan=False)
    defs = sqlmesh_definitions_factory(
        project_dir=str(project), partitioned=True, automation_from_cron=True
    )
    today = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
    first = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=today - timedelta(hours=1)
    )
    after = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        evaluation_time=today + timedelta(minutes=5),
        cursor=first.cursor,
    )
    requested = {r.key: r.true_subset for r in after.results if r.true_subset.size}
    for model in CHAIN:
        subset = requested[key(model)]
        assert list(subset.expensively_compute_partition_keys()) == [day(20)], model
    assert requested[key("part.sizes")].size == 1  # unpartitioned: the asset itself


_FORKS: list[int] = []
_COUNTING = threading.Event()
os.register_at_fork(before=lambda: _FORKS.append(1) if _COUNTING.is_set() else None)


def test_the_first_tick_on_a_cold_cache_forks_no_worker_from_the_daemons_thread(tmp_path):
    """Regression: the daemon evaluates sensors in threads of a gRPC code server, where a
    forked worker dies; SQLMesh forked workers to load snapshots its cache did not hold,
    so the sensor's first tick after a deploy crashed with ``BrokenProcessPool``."""
    project = make_project(tmp_path)
    sqlmesh_run(project, CHAIN, day(2), day(3))
    shutil.rmtree(project / ".cache", ignore_errors=True)  # SQLMesh's caches: cold
    defs = sqlmesh_definitions_factory(project_dir=str(project), partitioned=True)
    sensor = defs.resolve_sensor_def(SENSOR)
    shutil.rmtree(project / ".cache" / "snapshot", ignore_errors=True)
    found: dict[str, object] = {}

    def tick() -> None:
        try:
            with dg.instance_for_test() as instance:
                found["result"] = sensor(dg.build_sensor_context(instance=instance))
        except BaseException as exc:  # noqa: BLE001 - reported below
            found["error"] = exc

    _FORKS.clear()
    _COUNTING.set()
    try:
        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        thread.join(timeout=300)
    finally:
        _COUNTING.clear()
    assert "error" not in found, found.get("error")
    assert isinstance(found.get("result"), dg.SensorResult)
    assert _FORKS == [], "reading SQLMesh's state forked worker processes"
