"""Live runs: each model reaches Dagster the moment SQLMesh has written and audited it.

A sequential chain of real SQLMesh models on DuckDB, each about half a second of work,
each table recording when SQLMesh evaluated it. Under the default executor and under
the multiprocess executor, a model's materialization is recorded while SQLMesh is still
working on the models after it, never before its own data is written and audited, and a
blocking audit failing in the middle of the chain still fails that model and skips the
rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from helpers.chain import (
    PARTITION_ROWS,
    add_idle_model,
    chain_project,
    evaluated_at,
    key,
    materialized_at,
    name,
)
from helpers.harness import query, run_in_process, run_multiprocess, step_failures, step_states

from dg_sqlmesh.execution.coordinator import recorded_executions

LENGTH = 8


def run(project, instance, executor, **options):  # noqa: ANN001, ANN003, ANN201
    if executor == "in_process":
        return run_in_process(project, instance, **options)
    return run_multiprocess(project, instance, max_concurrent=2, **options)


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_each_model_is_materialized_while_sqlmesh_works_on_the_next(tmp_path, instance, executor):
    project = chain_project(tmp_path / "chain", LENGTH)
    result = run(project, instance, executor)
    assert result.success
    assert len(recorded_executions(instance, result.run_id)) == 1
    recorded = materialized_at(instance, result.run_id)
    assert set(recorded) == {key(i) for i in range(1, LENGTH + 1)}
    for index in range(1, LENGTH + 1):
        # never before SQLMesh evaluated it (and so before it was written and audited)
        assert recorded[key(index)] > evaluated_at(project, index)
    # recorded before SQLMesh began the last model: most of the chain in one process; in
    # separate processes the leader's own model (its step lasts until SQLMesh ends, and
    # Dagster starts a step once the steps it depends on have ended)
    last = evaluated_at(project, LENGTH)
    early = [i for i in range(1, LENGTH) if recorded[key(i)] < last]
    expected = LENGTH // 2 if executor == "in_process" else 1
    assert len(early) >= expected, (early, recorded, last)


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_blocking_audit_failing_mid_chain_fails_that_model_and_skips_the_rest(
    tmp_path, instance, executor
):
    failing = 4
    project = chain_project(tmp_path / "chain", LENGTH, failing_audit_at=failing)
    result = run(project, instance, executor)
    assert not result.success
    recorded = materialized_at(instance, result.run_id)
    assert set(recorded) == {key(i) for i in range(1, failing)}
    # the models before it were live: recorded before SQLMesh began the one before it
    assert recorded[key(1)] < evaluated_at(project, failing - 1)
    assert "audit" in step_failures(instance, result.run_id)["db__chain__m04"].lower()
    states = step_states(instance, result.run_id)
    downstream = [f"db__chain__m{i:02d}" for i in range(failing + 1, LENGTH + 1)]
    assert all(states.get(step) in (None, "SKIPPED") for step in downstream), states


STOPPED_RUN = """
import sys

import dagster as dg
from helpers.defs_from_env import sqlmesh_job
from helpers.other_process import open_instance
from helpers.reconstruct import reconstructable_job

with open_instance(sys.argv[1]) as instance:
    result = dg.execute_job(
        reconstructable_job(sqlmesh_job),
        instance=instance,
        run_config={"execution": {"config": {"in_process": {}}}},
        raise_on_error=False,
    )
    print("RUN", result.run_id, flush=True)
"""


def test_a_stopped_run_stops_sqlmesh_at_its_next_model_and_releases_the_environment(
    tmp_path, instance
):
    """Terminated while SQLMesh works on the chain: SQLMesh evaluates no model after the
    one in progress (within the cancellation check's second), the unfinished models are
    not materialized, and the environment is released."""
    from helpers.other_process import instance_ref_file

    project = chain_project(tmp_path / "chain", LENGTH)
    ref = instance_ref_file(instance, tmp_path)
    env = {
        **os.environ,
        "DG_SQLMESH_TEST_PROJECT": str(project),
        "DG_SQLMESH_TEST_OPTIONS": "{}",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", STOPPED_RUN, str(ref)], env=env, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not _materialized_keys(instance) >= {key(1), key(2)}:
        assert time.monotonic() < deadline and process.poll() is None, "the run did not start"
        time.sleep(0.05)
    # as Dagster terminates a run: marked canceling, then its process interrupted
    (run,) = instance.get_runs()
    instance.report_run_canceling(run)
    process.send_signal(signal.SIGINT)
    stopped_at = time.time()
    output, _ = process.communicate(timeout=120)
    (run_id,) = [line.split()[1] for line in output.splitlines() if line.startswith("RUN ")]

    done = _materialized_keys(instance)
    evaluated = [i for i in range(1, LENGTH + 1) if _has_rows(project, i)]
    # at most the model in progress when the run stopped was finished after the stop
    late = [i for i in evaluated if evaluated_at(project, i) > stopped_at + 1.5]
    assert len(late) <= 1, late
    assert LENGTH not in evaluated and key(LENGTH) not in done
    assert done <= {key(i) for i in evaluated}  # nothing unfinished is materialized
    assert instance.get_run_by_id(run_id).tags["dg_sqlmesh/executing"] == "released"


def _materialized_keys(instance) -> set[str]:  # noqa: ANN001
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    )
    return {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records}


def _has_rows(project: Path, index: int) -> bool:
    """Whether SQLMesh evaluated the model (a planned, never evaluated one is empty)."""
    return bool(query(project / "db.duckdb", f"SELECT count(*) FROM {name(index)}")[0][0])


def test_an_up_to_date_model_is_reported_as_soon_as_sqlmesh_has_planned_its_run(tmp_path, instance):
    """A run where one model is up to date and a chain is due: the up-to-date model (whose
    step comes first, and leads) is reported as soon as SQLMesh has planned its run, not
    when SQLMesh has finished the chain, and the chain is live after it."""
    project = chain_project(tmp_path / "chain", 4)
    idle = add_idle_model(project)
    # the idle model written and audited once; the chain still due
    assert run_in_process(project, instance, select=[idle]).success
    result = run_in_process(project, instance)
    assert result.success
    recorded = materialized_at(instance, result.run_id)
    assert set(recorded) == {idle, *(key(i) for i in range(1, 5))}
    last = evaluated_at(project, 4)
    assert recorded[idle] < evaluated_at(project, 2)
    assert recorded[key(1)] < last


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_partitioned_model_is_reported_per_partition_as_soon_as_sqlmesh_finishes_it(
    tmp_path, instance, executor
):
    """A daily partitioned model beside a chain: each of its partitions is materialized,
    with that partition's rows, before SQLMesh begins the chain's last model."""
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(5, 0, -1)]
    project = chain_project(tmp_path / "chain", 4, partitioned_head_from=days[0])
    result = run(project, instance, executor, partitioned=True)
    assert result.success
    daily = dg.AssetKey(["db", "chain", "daily"])
    records = [
        r.event_log_entry
        for r in instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        if r.event_log_entry.dagster_event.asset_key == daily
    ]
    materializations = {e.dagster_event.partition: e for e in records}
    assert sorted(materializations) == days
    last = evaluated_at(project, 4)
    (written,) = query(project / "db.duckdb", "SELECT max(evaluated_at) FROM chain.daily")[0]
    for day, entry in materializations.items():
        assert written.timestamp() < entry.timestamp < last, (day, entry.timestamp, last)
        metadata = entry.dagster_event.event_specific_data.materialization.metadata
        assert metadata["dagster/row_count"].value == PARTITION_ROWS, (day, metadata)
