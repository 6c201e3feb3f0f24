"""Two Dagster runs of the same SQLMesh environment at the same time: one SQLMesh execution
at a time, proven from the timestamps SQLMesh itself writes at the start (``before_all``) and
the end (``after_all``) of each execution; or a clear failure when the wait is too long.

The Dagster instance is the default one (SQLite storage, no special dagster.yaml).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
from helpers.harness import materialized, plan_project, step_failures
from helpers.reliability import (
    MARKER_DIR_ENV,
    SLOW_SECONDS_ENV,
    coordinator_runs,
    duckdb_connection,
    executions_of,
    launch,
    run_in_process,
    wait_for,
    write_slow_project,
)

from dg_sqlmesh.metadata import RUN


def start(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).date().isoformat()


def logs(instance, run_id: str) -> list[str]:
    return [r.user_message for r in instance.all_logs(run_id) if r.user_message]


def test_overlapping_runs_execute_sqlmesh_one_after_the_other(tmp_path, instance):
    db = tmp_path / "db.duckdb"
    project = write_slow_project(tmp_path / "p", duckdb_connection(db), start=start(3))
    plan_project(project)
    with duckdb.connect(str(db), read_only=True) as conn:
        (planned,) = conn.execute("SELECT COUNT(*) FROM _meta.marks").fetchone()

    go = tmp_path / "go"
    selections = {
        "a": ["db/src/events_a", "db/src/slow"],
        "b": ["db/src/slow", "db/src/events_b"],  # src.slow is in both
    }
    runs = {
        name: launch(
            instance,
            {"project_dir": str(project)},
            tmp_path / "work",
            select=select,
            max_concurrent=2,
            go_file=go,
            env={SLOW_SECONDS_ENV: "3"},
            name=name,
        )
        for name, select in selections.items()
    }
    wait_for(lambda: all(r.ready for r in runs.values()), 180, "both runs to be ready")
    go.touch()  # both execute_job calls start now
    results = {name: run.wait(timeout=300) for name, run in runs.items()}
    assert all(r["success"] for r in results.values()), {n: r.log_tail() for n, r in runs.items()}

    # SQLMesh's own start/end stamps of the two executions do not interleave
    with duckdb.connect(str(db), read_only=True) as conn:
        marks = conn.execute(
            "SELECT marked_at, what FROM _meta.marks ORDER BY marked_at, what DESC"
        ).fetchall()[planned:]
    assert [what for _, what in marks] == ["start", "end", "start", "end"], marks
    first_end, second_start = marks[1][0], marks[2][0]
    assert second_start >= first_end, marks

    # the later run said whom it waited for; each run executed SQLMesh once
    run_ids = {name: r["run_id"] for name, r in results.items()}
    waited = {
        name: [m for m in logs(instance, run_id) if m.startswith("Waiting for Dagster run ")]
        for name, run_id in run_ids.items()
    }
    assert sorted(len(w) for w in waited.values()) == [0, 1], waited
    later = next(name for name, w in waited.items() if w)
    earlier = "b" if later == "a" else "a"
    assert waited[later][0].startswith(f"Waiting for Dagster run {run_ids[earlier]} (pid ")
    assert (
        f"to finish with SQLMesh environment 'prod' of {project} (gateway main)" in waited[later][0]
    )
    assert all(executions_of(instance, run_id) == 1 for run_id in run_ids.values())

    # the model both selected was evaluated once: by the earlier run, a no-op for the later
    slow = {name: materialized(instance, rid)["db/src/slow"] for name, rid in run_ids.items()}
    assert slow[earlier][RUN.state] == "materialized"
    assert slow[later][RUN.state] == "up_to_date"
    with duckdb.connect(str(db), read_only=True) as conn:
        for table in ("src.events_a", "src.events_b", "src.slow"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] > 0, table


def test_a_run_that_cannot_wait_long_enough_fails_clearly(tmp_path, instance, monkeypatch):
    db = tmp_path / "db.duckdb"
    project = write_slow_project(tmp_path / "p", duckdb_connection(db), start=start(3))
    plan_project(project)
    markers = tmp_path / "markers"
    markers.mkdir()

    holder = launch(
        instance,
        {"project_dir": str(project)},
        tmp_path / "work",
        select=["db/src/slow"],
        executor="in_process",
        env={SLOW_SECONDS_ENV: "6", MARKER_DIR_ENV: str(markers)},
    )
    wait_for(
        lambda: (markers / "slow.started").exists() or holder.process.poll() is not None,
        180,
        "the first run to execute SQLMesh",
    )
    (holder_run,) = coordinator_runs(instance)
    holder_id = holder_run["run_id"]

    impatient = run_in_process(
        {"project_dir": str(project), "environment_lock_timeout": 1.0},
        instance,
        select=["db/src/events_b"],
    )
    assert holder.wait(timeout=120)["success"], holder.log_tail()

    assert not impatient.success
    (failure,) = step_failures(instance, impatient.run_id).values()
    assert (
        f"EnvironmentBusy: SQLMesh environment 'prod' of {project} (gateway main) is still being "
        f"run by Dagster run {holder_id} (pid "
    ) in failure
    assert (
        "after waiting 1 s. Wait for that run to finish, or raise "
        "SQLMeshResource(environment_lock_timeout=...)."
    ) in failure
    assert materialized(instance, impatient.run_id) == {}
    assert executions_of(instance, impatient.run_id) == 0
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM src.events_b").fetchone()[0] == 0
