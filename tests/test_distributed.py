"""Runs whose steps share nothing but the Dagster instance's PostgreSQL database.

Every process that opens the instance gets a local storage folder of its own
(``helpers.split_storage``), as the step pods of the Kubernetes job executor do, and the
runs of the concurrency test also get host lock folders of their own, as runs on different
hosts do. What is counted comes from the warehouse (``before_all``/``after_all`` stamps
SQLMesh writes itself), not from what the runs report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import _env, executions, materialized, plan_project, step_failures
from helpers.pg_server import PostgresServer, postgres_available
from helpers.reliability import (
    BATCH_SECONDS_ENV,
    MARKER_DIR_ENV,
    assert_the_next_run_completes,
    duckdb_connection,
    execution_marks,
    executions_of,
    kill_the_leader,
    launch,
    run_together,
    waits_for_other_runs,
    write_slow_project,
)
from helpers.split_storage import files_under, split_pg_instance

from dg_sqlmesh.execution.guard import LOCK_DIR_ENV
from dg_sqlmesh.metadata import RUN

_reason = postgres_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def split_instance(pg, tmp_path, request):
    """A Dagster instance on ``pg`` whose every process has its own local storage folder."""
    dbname = "dagster_" + request.node.name.split("[")[-1].strip("]").replace("-", "_")[-30:]
    with split_pg_instance(pg, tmp_path, dbname.lower()) as found:
        yield found


def _no_coordination_files(local: Path) -> None:
    written = files_under(local)
    assert not [f for f in written if "dg_sqlmesh" in f or f.endswith((".sqlite", ".lock"))], (
        written
    )


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_steps_sharing_only_the_instance_execute_sqlmesh_once(
    generated, split_instance, start_method
):
    instance, local = split_instance
    project = generated(8)
    before = executions(project / "db.duckdb")  # planning ran before_all too
    from helpers.defs_from_env import sqlmesh_job

    multiprocess: dict = {"max_concurrent": 4}
    if start_method == "forkserver":
        multiprocess["start_method"] = {
            "forkserver": {"preload_modules": ["dagster", "dg_sqlmesh", "helpers.defs_from_env"]}
        }
    from helpers.reconstruct import reconstructable_job

    with _env(project, {}):
        result = dg.execute_job(
            reconstructable_job(sqlmesh_job),
            instance=instance,
            run_config={"execution": {"config": {"multiprocess": multiprocess}}},
            raise_on_error=False,
        )
    assert result.success, step_failures(instance, result.run_id)
    assert executions(project / "db.duckdb") - before == 1  # counted by SQLMesh in the warehouse
    assert executions_of(instance, result.run_id) == 1
    shown = materialized(instance, result.run_id)
    assert len(shown) == 8 and {m[RUN.state] for m in shown.values()} == {"materialized"}
    # the steps really had separate folders, and nothing of ours was written to any of them
    assert len(list(local.iterdir())) >= 8
    _no_coordination_files(local)


def _start(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).date().isoformat()


def test_concurrent_runs_on_separate_hosts_execute_one_at_a_time(
    split_instance, tmp_path, monkeypatch
):
    instance, local = split_instance
    db = tmp_path / "db.duckdb"
    project = write_slow_project(tmp_path / "p", duckdb_connection(db), start=_start(3))
    plan_project(project)
    planned = len(execution_marks(db))

    go = tmp_path / "go"
    # all three share src.slow, and each has a model of its own, so every run has work
    # whatever order they end up in (a run with nothing due stamps nothing)
    selections = {
        "a": ["db/src/events_a", "db/src/slow"],
        "b": ["db/src/slow", "db/src/events_b"],
        "c": ["db/src/slow", "db/mart/daily"],
    }
    runs = {
        name: launch(
            instance,
            {"project_dir": str(project)},
            tmp_path / "work",
            select=select,
            max_concurrent=2,
            go_file=go,
            env={LOCK_DIR_ENV: str(tmp_path / f"host_{name}"), BATCH_SECONDS_ENV: "0.3"},
            name=name,
        )
        for name, select in selections.items()
    }
    results = run_together(runs, go)
    # SQLMesh's own start/end stamps never interleave: one execution at a time
    assert execution_marks(db)[planned:] == ["start", "end"] * 3
    run_ids = [r["run_id"] for r in results.values()]
    assert all(executions_of(instance, run_id) == 1 for run_id in run_ids)
    # the runs that waited said whom they waited for (no host lock could tell them)
    waits = waits_for_other_runs(instance, run_ids)
    assert len(waits) >= 2, waits
    assert all(any(other in w for other in run_ids) for w in waits), waits
    _no_coordination_files(local)


def test_a_killed_leader_fails_its_followers_promptly_and_the_next_run_completes(
    split_instance, tmp_path, monkeypatch
):
    instance, local = split_instance
    db = tmp_path / "db.duckdb"
    project = write_slow_project(tmp_path / "p", duckdb_connection(db), start=_start(10))
    plan_project(project)
    markers = tmp_path / "markers"
    markers.mkdir()
    run = launch(
        instance,
        {"project_dir": str(project)},
        tmp_path / "work",
        max_concurrent=4,
        env={BATCH_SECONDS_ENV: "1", MARKER_DIR_ENV: str(markers)},
    )
    leader, result, ended = kill_the_leader(instance, run, markers)
    assert ended < 30  # followers did not wait for a dead leader
    assert not result["success"]
    failures = step_failures(instance, leader["run_id"])
    followers = {k: v for k, v in failures.items() if k != leader["step"]}
    assert leader["step"] in failures and followers, failures
    for message in followers.values():
        assert f"Step '{leader['step']}' was executing SQLMesh for this run and failed" in message
    assert materialized(instance, leader["run_id"]) == {}  # nothing false shown

    assert_the_next_run_completes(instance, project, db, 10, monkeypatch)
    _no_coordination_files(local)
