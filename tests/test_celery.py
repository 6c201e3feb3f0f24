"""Dagster's Celery executor (dagster-celery) with a real Redis broker and two worker
processes, each in a folder of its own with its own local storage, all sharing one
PostgreSQL instance (``helpers.celery_cluster``). A user who sets
``executor=celery_executor`` and changes nothing else gets runs that execute SQLMesh once
and report every model honestly, including when the leader's worker process is killed,
when the broker restarts mid-run, and when two runs of one environment meet."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from helpers.celery_cluster import CeleryCluster, redis_available
from helpers.generated_models import key, pick_with_children, step
from helpers.harness import _env, executions, materialized, step_failures
from helpers.pg_server import PostgresServer, postgres_available
from helpers.reconstruct import reconstructable_job
from helpers.reliability import (
    BATCH_SECONDS_ENV,
    MARKER_DIR_ENV,
    SPEC_ENV,
    assert_the_next_run_completes,
    duckdb_connection,
    evaluating,
    events_a_days,
    execution_marks,
    executions_of,
    kill_the_leader,
    launch,
    run_together,
    wait_for,
    waits_for_other_runs,
    write_slow_project,
)
from helpers.split_storage import split_pg_instance
from projects.generate import project_models

from dg_sqlmesh.metadata import RUN

_reason = postgres_available() or redis_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def split_instance(pg, tmp_path):
    with split_pg_instance(pg, tmp_path, "dagster_celery") as found:
        yield found


def _start(days: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days)).isoformat()


def _step_processes(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return {r.event_log_entry.dagster_event.pid for r in records}


def _run_on_celery(project: Path, instance, cluster: CeleryCluster) -> dg.ExecuteJobResult:
    from helpers.defs_from_env import sqlmesh_job

    with _env(project, {"executor": "celery"}):
        return dg.execute_job(
            reconstructable_job(sqlmesh_job),
            instance=instance,
            run_config={"execution": {"config": cluster.executor_config()}},
            raise_on_error=False,
        )


def _cluster(tmp_path: Path, project: Path, **env: str) -> CeleryCluster:
    env = {
        "DG_SQLMESH_TEST_PROJECT": str(project),
        "DG_SQLMESH_TEST_OPTIONS": '{"executor": "celery"}',
        **env,
    }
    return CeleryCluster(tmp_path / "celery", env=env)


def test_the_example_runs_on_celery_workers_executing_sqlmesh_once(
    planned_shop, split_instance, tmp_path
):
    instance, local = split_instance
    with _cluster(tmp_path, planned_shop) as cluster:
        result = _run_on_celery(planned_shop, instance, cluster)
        assert result.success, (step_failures(instance, result.run_id), cluster.logs())
    assert executions_of(instance, result.run_id) == 1
    shown = materialized(instance, result.run_id)
    assert len(shown) == 12 and {m[RUN.state] for m in shown.values()} == {"materialized"}
    assert len(_step_processes(instance, result.run_id)) >= 2  # steps spread over workers
    assert len(list(local.iterdir())) >= 3  # the run and each worker: folders of their own


def test_a_failing_model_on_celery_fails_its_step_and_downstream_only(
    generated, split_instance, tmp_path
):
    instance, _ = split_instance
    failing, below, others = pick_with_children(project_models(12))
    project = generated(12, failing={failing: "runtime_error"})
    before = executions(project / "db.duckdb")
    with _cluster(tmp_path, project) as cluster:
        result = _run_on_celery(project, instance, cluster)
    assert not result.success
    assert executions(project / "db.duckdb") - before == 1  # counted by SQLMesh itself
    failures = step_failures(instance, result.run_id)
    assert "dg_sqlmesh generated failure" in failures[step(failing)]
    shown = materialized(instance, result.run_id)
    assert key(failing) not in shown and not {key(n) for n in below} & set(shown)
    assert {key(n) for n in others} <= set(shown)  # every model away from the failure
    assert {m[RUN.state] for m in shown.values()} == {"materialized"}


def _slow_run(tmp_path: Path, days: int, batch_seconds: str):  # noqa: ANN202
    """The slow project on ``days`` days, planned, and its workers' environment."""
    from helpers.harness import plan_project

    db = tmp_path / "db.duckdb"
    project = write_slow_project(tmp_path / "p", duckdb_connection(db), start=_start(days))
    plan_project(project)
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    spec = {"resource": {"project_dir": str(project)}, "executor": "celery"}
    env = {
        SPEC_ENV: json.dumps(spec),
        BATCH_SECONDS_ENV: batch_seconds,
        MARKER_DIR_ENV: str(markers),
    }
    return project, db, markers, env


def _launch_on(cluster: CeleryCluster, instance, project: Path, env: dict, **kw):  # noqa: ANN001, ANN202
    """``sqlmesh_job`` of the slow project, its steps on ``cluster``'s workers."""
    return launch(
        instance,
        {"project_dir": str(project)},
        cluster.root.parent / "work",
        executor="celery",
        executor_config=cluster.executor_config(),
        env=env,
        **kw,
    )


def test_a_killed_leader_worker_fails_the_run_promptly_and_the_next_run_completes(
    split_instance, tmp_path, monkeypatch
):
    instance, _ = split_instance
    project, db, markers, env = _slow_run(tmp_path, 10, "1")
    with CeleryCluster(tmp_path / "celery", env=env) as cluster:
        run = _launch_on(cluster, instance, project, env)
        leader, result, ended = kill_the_leader(instance, run, markers)
        # followers already running on the other worker notice the run's end
        wait_for(lambda: instance.get_run_by_id(leader["run_id"]).is_finished, 30, "run end")
        time.sleep(4)  # a follower checks the run's status every 2 s
    assert ended < 45, run.log_tail()  # nobody waited for a dead leader
    assert not result["success"]
    failures = step_failures(instance, leader["run_id"])
    for follower, message in failures.items():
        if follower != leader["step"]:
            assert f"'{leader['step']}'" in message, message
    assert materialized(instance, leader["run_id"]) == {}  # nothing false shown

    assert_the_next_run_completes(instance, project, db, 10, monkeypatch)


def test_a_broker_restarted_mid_run_loses_nothing(split_instance, tmp_path):
    instance, _ = split_instance
    project, db, markers, env = _slow_run(tmp_path, 6, "1")
    with CeleryCluster(tmp_path / "celery", env=env) as cluster:
        run = _launch_on(cluster, instance, project, env)
        try:
            evaluating(run, markers)
            cluster.restart_broker(down_seconds=3)
            result = run.wait(timeout=240)
        finally:
            run.kill()
        assert result["success"], (run.log_tail(), cluster.logs())
    assert executions_of(instance, result["run_id"]) == 1
    shown = materialized(instance, result["run_id"])
    assert len(shown) == 4 and {m[RUN.state] for m in shown.values()} == {"materialized"}
    assert events_a_days(db) == (0, 6)


def test_two_runs_of_one_environment_on_celery_workers_never_execute_together(
    split_instance, tmp_path
):
    instance, _ = split_instance
    project, db, _, env = _slow_run(tmp_path, 3, "0.3")
    planned = len(execution_marks(db))
    go = tmp_path / "go"
    selections = {"a": ["db/src/events_a", "db/src/slow"], "b": ["db/src/slow", "db/src/events_b"]}
    with CeleryCluster(tmp_path / "celery", env=env) as cluster:
        runs = {
            name: _launch_on(cluster, instance, project, env, select=select, go_file=go, name=name)
            for name, select in selections.items()
        }
        results = run_together(runs, go)
    assert execution_marks(db)[planned:] == ["start", "end"] * 2  # never interleaved
    run_ids = [r["run_id"] for r in results.values()]
    assert all(executions_of(instance, run_id) == 1 for run_id in run_ids)
    waits = waits_for_other_runs(instance, run_ids)
    assert waits and all(any(other in w for other in run_ids) for w in waits), waits
