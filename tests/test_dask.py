"""Dagster's Dask executor (dagster-dask), with a local cluster of worker processes, each
process with its own storage folder and all of them sharing one PostgreSQL instance: a
user who sets ``executor=dask_executor`` and changes nothing else gets runs that execute
SQLMesh once and report every model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from helpers.generated_models import key, pick_with_children, step
from helpers.harness import _env, executions, materialized, plan_project, step_failures
from helpers.pg_server import PostgresServer, postgres_available
from helpers.reconstruct import reconstructable_job
from helpers.reliability import (
    BATCH_SECONDS_ENV,
    MARKER_DIR_ENV,
    assert_the_next_run_completes,
    coordinator_runs,
    duckdb_connection,
    executions_of,
    kill_the_leader,
    launch,
    write_slow_project,
)
from helpers.split_storage import split_pg_instance
from projects.generate import project_models

from dg_sqlmesh import sqlmesh_definitions_factory
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.metadata import RUN

dagster_dask = pytest.importorskip("dagster_dask")
_reason = postgres_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

CLUSTER = {"local": {"n_workers": 2, "threads_per_worker": 1, "processes": True}}


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def split_instance(pg, tmp_path):
    with split_pg_instance(pg, tmp_path, "dagster_dask") as found:
        yield found


def _run_on_dask(project, instance: dg.DagsterInstance) -> dg.ExecuteJobResult:  # noqa: ANN001
    """``sqlmesh_job`` of the definitions over ``project`` with ``executor=dask_executor``
    (and nothing else changed), on a local cluster of worker processes."""
    from helpers.defs_from_env import sqlmesh_job

    with _env(project, {"executor": "dask"}):
        return dg.execute_job(
            reconstructable_job(sqlmesh_job),
            instance=instance,
            run_config={"execution": {"config": {"cluster": CLUSTER}}},
            raise_on_error=False,
        )


def test_the_default_definitions_run_on_dask_executing_sqlmesh_once(generated, split_instance):
    instance, local = split_instance
    project = generated(6)
    before = executions(project / "db.duckdb")
    result = _run_on_dask(project, instance)
    assert result.success, step_failures(instance, result.run_id)
    assert executions(project / "db.duckdb") - before == 1  # counted by SQLMesh itself
    assert executions_of(instance, result.run_id) == 1
    shown = materialized(instance, result.run_id)
    assert len(shown) == 6 and {m[RUN.state] for m in shown.values()} == {"materialized"}
    assert len(list(local.iterdir())) >= 2  # the workers really had folders of their own


def test_the_default_pool_steps_aside_on_dask_and_a_named_one_is_refused(generated):
    from dagster_dask import dask_executor

    project = generated(2, plan=False)
    defs = sqlmesh_definitions_factory(project_dir=str(project), executor=dask_executor)
    assert {a.op.pool for a in defs.assets if a.is_executable} == {None}
    with pytest.raises(SQLMeshDefinitionError, match="pool='warehouse'.*dask"):
        sqlmesh_definitions_factory(
            project_dir=str(project), executor=dask_executor, pool="warehouse"
        )


def test_the_example_runs_on_dask(planned_shop, split_instance):
    instance, _ = split_instance
    result = _run_on_dask(planned_shop, instance)
    assert result.success, step_failures(instance, result.run_id)
    assert executions_of(instance, result.run_id) == 1
    shown = materialized(instance, result.run_id)
    assert len(shown) == 12 and {m[RUN.state] for m in shown.values()} == {"materialized"}


def test_a_failing_model_on_dask_fails_its_step_and_downstream_only(generated, split_instance):
    instance, _ = split_instance
    failing, below, others = pick_with_children(project_models(12))
    project = generated(12, failing={failing: "runtime_error"})
    before = executions(project / "db.duckdb")
    result = _run_on_dask(project, instance)
    assert not result.success
    assert executions(project / "db.duckdb") - before == 1
    assert "dg_sqlmesh generated failure" in step_failures(instance, result.run_id)[step(failing)]
    shown = materialized(instance, result.run_id)
    assert key(failing) not in shown and not {key(n) for n in below} & set(shown)
    assert {key(n) for n in others} <= set(shown)
    assert {m[RUN.state] for m in shown.values()} == {"materialized"}


def test_a_killed_leader_worker_on_dask_fails_the_run_and_the_next_run_completes(
    split_instance, tmp_path, monkeypatch
):
    instance, _ = split_instance
    db = tmp_path / "db.duckdb"
    start = (datetime.now(UTC).date() - timedelta(days=10)).isoformat()
    project = write_slow_project(tmp_path / "p", duckdb_connection(db), start=start)
    plan_project(project)
    markers = tmp_path / "markers"
    markers.mkdir()
    run = launch(
        instance,
        {"project_dir": str(project)},
        tmp_path / "work",
        executor="dask",
        executor_config={"cluster": {"local": {**CLUSTER["local"], "n_workers": 3}}},
        env={BATCH_SECONDS_ENV: "1", MARKER_DIR_ENV: str(markers)},
    )
    leader, result, ended = kill_the_leader(instance, run, markers, timeout=180)
    assert ended < 45, run.log_tail()  # nobody waited long for a dead leader
    assert not result["success"]
    # Dask started the leader's step again on another worker: it refused to execute SQLMesh
    # a second time in the run, and the followers failed naming it
    assert [e["pid"] for e in coordinator_runs(instance)] == [leader["pid"]]
    failures = step_failures(instance, leader["run_id"])
    assert "A run executes SQLMesh once" in failures[leader["step"]], failures
    for follower, message in failures.items():
        if follower != leader["step"]:
            assert f"'{leader['step']}'" in message, message
    assert materialized(instance, leader["run_id"]) == {}  # nothing false shown
    assert_the_next_run_completes(instance, project, db, 10, monkeypatch)
