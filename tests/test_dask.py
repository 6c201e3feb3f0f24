"""Dagster's Dask executor (dagster-dask), with a local cluster of worker processes, each
process with its own storage folder and all of them sharing one PostgreSQL instance: a
user who sets ``executor=dask_executor`` and changes nothing else gets runs that execute
SQLMesh once and report every model."""

from __future__ import annotations

import dagster as dg
import pytest
from helpers.harness import _env, executions, materialized, step_failures
from helpers.pg_server import PostgresServer, postgres_available
from helpers.reconstruct import reconstructable_job
from helpers.reliability import executions_of
from helpers.split_storage import split_pg_instance

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


def test_the_default_definitions_run_on_dask_executing_sqlmesh_once(generated, split_instance):
    instance, local = split_instance
    project = generated(6)
    before = executions(project / "db.duckdb")
    from helpers.defs_from_env import sqlmesh_job

    with _env(project, {"executor": "dask"}):
        result = dg.execute_job(
            reconstructable_job(sqlmesh_job),
            instance=instance,
            run_config={"execution": {"config": {"cluster": CLUSTER}}},
            raise_on_error=False,
        )
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
