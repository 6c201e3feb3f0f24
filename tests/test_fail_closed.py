"""Where the library cannot know, it refuses rather than guesses; its errors share one root
and the run failures no retry can fix are not retried."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import copy_project, materialized, plan_project, query, run_in_process

from dg_sqlmesh import DagsterSQLMeshError, SQLMeshDefinitionError, SQLMeshRunFailure
from dg_sqlmesh.errors import EnvironmentBusy, LeaderLost, SQLMeshEnvironmentError


@pytest.mark.parametrize(
    "error",
    [
        SQLMeshDefinitionError("x"),
        SQLMeshRunFailure(description="x"),
        SQLMeshEnvironmentError(description="x"),
        EnvironmentBusy("x"),
        LeaderLost("x"),
    ],
)
def test_every_error_has_one_root(error):
    assert isinstance(error, DagsterSQLMeshError)


@pytest.mark.parametrize("error", [EnvironmentBusy("busy"), LeaderLost("lost")])
def test_lock_and_leader_errors_are_run_failures_never_retried(error):
    assert isinstance(error, dg.Failure)
    assert error.allow_retries is False
    assert error.description in {"busy", "lost"}


def test_a_run_whose_steps_cannot_be_read_runs_nothing(tmp_path, instance, monkeypatch):
    """Fails closed: when Dagster's stored execution plan cannot be read, the leader does
    not guess (running every model would write models the run did not select)."""
    project = copy_project(Path(__file__).parent / "projects" / "plans", tmp_path / "p")
    plan_project(project)

    def unreadable(self, snapshot_id):  # a Dagster that stores plans another way
        raise KeyError(snapshot_id)

    monkeypatch.setattr(dg.DagsterInstance, "get_execution_plan_snapshot", unreadable)
    result = run_in_process(project, instance, select=["warehouse/shop/customers"])

    assert not result.success
    assert materialized(instance, result.run_id) == {}
    failure = next(e for e in result.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("Cannot tell which steps this run executes")
    assert failure.step_failure_data.error.cls_name == "SQLMeshRunFailure"
    # Nothing was written: the seed's table does not exist yet.
    tables = query(project / "warehouse.duckdb", "SELECT table_name FROM duckdb_tables()")
    assert ("customers",) not in tables
