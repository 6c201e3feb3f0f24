"""Faults in the middle of a run: the run's processes killed, the database gone for a few
seconds, the database gone for good.

Each test reads back SQLMesh's interval state and the warehouse tables, so "no interval lost
or evaluated twice" and "nothing shown materialized that was not written" are checked against
the data, not against what the run reported.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from helpers.harness import materialized, plan_project
from helpers.pg_server import PostgresServer, postgres_available
from helpers.reliability import (
    BATCH_SECONDS_ENV,
    MARKER_DIR_ENV,
    ROWS_PER_DAY,
    SLOW_SECONDS_ENV,
    coordinator_runs,
    duckdb_connection,
    executions_of,
    launch,
    merged,
    postgres_connection,
    run_in_process,
    state_intervals,
    wait_for,
    write_slow_project,
)

from dg_sqlmesh.metadata import RUN

DAY_MS = 86_400_000
DAYS = 10


def start_date(days: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def day_counts(rows) -> dict[str, int]:
    return {str(ds)[:10]: n for ds, n in rows}


def days_of(intervals: list[tuple[int, int]]) -> set[str]:
    found = set()
    for start, end in intervals:
        for ms in range(start, end, DAY_MS):
            found.add(datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat())
    return found


# --- (a) the run killed in the middle of SQLMesh's execution -----------------------------------


def test_killed_run_is_completed_by_the_next_run(tmp_path, instance, monkeypatch):
    db = tmp_path / "db.duckdb"
    start = start_date(DAYS)
    project = write_slow_project(
        tmp_path / "p", duckdb_connection(db), start=start.date().isoformat()
    )
    plan_project(project)
    markers = tmp_path / "markers"
    markers.mkdir()

    run = launch(
        instance,
        {"project_dir": str(project)},
        tmp_path / "work",
        env={BATCH_SECONDS_ENV: "0.8", MARKER_DIR_ENV: str(markers)},
    )
    try:
        # src.events_a evaluates one day per batch, 0.8 s each: kill while its 3rd day runs.
        wait_for(
            lambda: (
                len(list(markers.glob("events_a-*.started"))) >= 3 or run.process.poll() is not None
            ),
            timeout=180,
            what="the third batch of src.events_a",
        )
        assert run.process.poll() is None, f"run ended before the kill:\n{run.log_tail()}"
        (leader,) = coordinator_runs(instance)
        run_id, leader_pid = leader["run_id"], leader["pid"]
        assert executions_of(instance, run_id) == 1  # SQLMesh was executing
    finally:
        run.kill()
    wait_for(lambda: not _alive(leader_pid), timeout=10, what="the leader step to die")

    # Dagster shows nothing of the killed run as materialized
    killed = instance.get_run_by_id(run_id)
    assert killed.status != dg.DagsterRunStatus.SUCCESS
    assert materialized(instance, run_id) == {}
    keys = [dg.AssetKey(["db", *m.split(".")]) for m in ("src.events_a", "src.events_b")]
    assert all(instance.get_latest_materialization_event(k) is None for k in keys)

    # SQLMesh recorded part of the work; each recorded day holds its rows exactly once
    before = state_intervals(project)["src.events_a"]
    recorded = days_of(before)
    assert 0 < len(recorded) < DAYS, before
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = day_counts(
            conn.execute("SELECT ds, COUNT(*) FROM src.events_a GROUP BY ds").fetchall()
        )
    assert all(rows.get(day) == ROWS_PER_DAY for day in recorded), rows
    assert max(rows.values()) == ROWS_PER_DAY  # nothing twice, even uncommitted to state

    # The next run completes the work: every day once, SQLMesh's intervals contiguous
    monkeypatch.setenv(BATCH_SECONDS_ENV, "0")
    result = run_in_process({"project_dir": str(project)}, instance)
    assert result.success
    shown = materialized(instance, result.run_id)
    assert set(shown) == {"db/src/events_a", "db/src/events_b", "db/src/slow", "db/mart/daily"}
    assert all(m[RUN.state] == "materialized" for m in shown.values())
    redone = set()
    for interval in shown["db/src/events_a"][RUN.intervals]:
        lo, hi = (datetime.fromisoformat(t) for t in interval.strip("[)").split(", "))
        redone |= days_of([(int(lo.timestamp() * 1000), int(hi.timestamp() * 1000))])
    assert not redone & recorded  # what was recorded before the kill is not evaluated again
    after = state_intervals(project)
    end = int((start + timedelta(days=DAYS)).timestamp() * 1000)
    for model in ("src.events_a", "src.events_b", "mart.daily"):
        assert merged(after[model]) == [(int(start.timestamp() * 1000), end)], model
    with duckdb.connect(str(db), read_only=True) as conn:
        for table in ("src.events_a", "src.events_b"):
            counts = day_counts(
                conn.execute(f"SELECT ds, COUNT(*) FROM {table} GROUP BY ds").fetchall()
            )
            assert counts == {d: ROWS_PER_DAY for d in days_of(after["src.events_a"])}, table
            dupes = conn.execute(
                f"SELECT COUNT(*) FROM (SELECT id, ds FROM {table} GROUP BY ALL "
                "HAVING COUNT(*) > 1)"
            ).fetchone()[0]
            assert dupes == 0
        daily = conn.execute("SELECT COUNT(*), MIN(n), MAX(n) FROM mart.daily").fetchone()
    assert daily == (DAYS, ROWS_PER_DAY, ROWS_PER_DAY)
    for key in keys:
        assert instance.get_latest_materialization_event(key).run_id == result.run_id


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# --- (b), (c) the PostgreSQL warehouse goes away -------------------------------------------------

_reason = postgres_available()
needs_pg = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def pg():
    if _reason:
        pytest.skip(_reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_project(pg, tmp_path, request, monkeypatch):
    """The slow project on its own database of ``pg`` (SQLMesh state there too), planned."""
    database = "faults_" + request.node.name.split("[")[0][-40:].lower()
    pg.drop_database(database)
    pg.create_database(database)
    project = write_slow_project(
        tmp_path / "p",
        postgres_connection(pg, database),
        start=start_date(3).date().isoformat(),
    )
    plan_project(project)
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(MARKER_DIR_ENV, str(markers))
    yield project, database, markers
    if not pg.is_running():
        pg.start()


def _logs(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [r.user_message for r in instance.all_logs(run_id) if r.user_message]


def _in_background(action) -> threading.Thread:
    """Start ``action`` in a thread; its exception, if any, is left in ``thread.error``."""

    def target() -> None:
        try:
            action()
        except BaseException as exc:  # surfaced by the test
            thread.error = exc  # type: ignore[attr-defined]

    thread = threading.Thread(target=target, daemon=True)
    thread.error = None  # type: ignore[attr-defined]
    thread.start()
    return thread


@needs_pg
def test_database_outage_of_a_few_seconds_is_retried(pg, pg_project, instance, monkeypatch):
    project, database, markers = pg_project
    monkeypatch.setenv(SLOW_SECONDS_ENV, "2")

    def outage() -> None:  # while src.slow is being evaluated: connections die, 3 s down
        wait_for(lambda: (markers / "slow.started").exists(), 120, "src.slow to start")
        time.sleep(0.3)
        pg.restart(down_seconds=3)

    thread = _in_background(outage)
    resource = {
        "project_dir": str(project),
        "max_transient_retries": 4,
        "retry_backoff_seconds": 1.0,
    }
    result = run_in_process(resource, instance)
    thread.join(timeout=60)
    assert thread.error is None

    assert result.success
    logs = _logs(instance, result.run_id)
    retries = [m for m in logs if m.startswith("Transient failure of")]
    assert retries, logs
    executions = executions_of(instance, result.run_id)
    assert executions == 1 + len(retries)
    shown = materialized(instance, result.run_id)
    assert set(shown) == {f"{database}/src/{t}" for t in ("events_a", "events_b", "slow")} | {
        f"{database}/mart/daily"
    }
    for key in shown:
        _, schema, table = key.split("/")
        assert pg.execute(f"SELECT COUNT(*) FROM {schema}.{table}", dbname=database)[0][0] > 0
    for table in ("src.events_a", "src.events_b"):
        dupes = pg.execute(
            f"SELECT COUNT(*) FROM (SELECT id, ds FROM {table} GROUP BY id, ds "
            "HAVING COUNT(*) > 1) AS d",
            dbname=database,
        )[0][0]
        assert dupes == 0
    intervals = state_intervals(project)
    assert all(len(merged(intervals[m])) == 1 for m in ("src.events_a", "mart.daily"))


@needs_pg
@pytest.mark.parametrize("when", ["before_the_run", "mid_run"])
def test_database_down_for_good_fails_clearly_after_bounded_retries(
    pg, pg_project, instance, monkeypatch, when
):
    project, database, markers = pg_project
    retries = 2
    resource = {
        "project_dir": str(project),
        "max_transient_retries": retries,
        "retry_backoff_seconds": 0.5,
    }
    if when == "before_the_run":
        pg.stop()
        thread = None
    else:
        monkeypatch.setenv(SLOW_SECONDS_ENV, "1.5")

        def stop() -> None:
            wait_for(lambda: (markers / "slow.started").exists(), 120, "src.slow to start")
            time.sleep(0.3)
            pg.stop()

        thread = _in_background(stop)
    started = time.monotonic()
    result = run_in_process(resource, instance)
    elapsed = time.monotonic() - started
    if thread is not None:
        thread.join(timeout=60)
        assert thread.error is None
    assert not pg.is_running()
    assert not result.success

    # bounded: exactly max_transient_retries retries, with backoff, then a clear failure
    logs = _logs(instance, result.run_id)
    assert len([m for m in logs if m.startswith("Transient failure of")]) == retries
    assert elapsed < 120
    # SQLMesh never started with the database down from the start; stopped mid-run, it
    # started once per attempt
    expected = {"before_the_run": 0, "mid_run": retries + 1}[when]
    assert executions_of(instance, result.run_id) == expected
    connection = f'connection to server at "{pg.host}", port {pg.port} failed: Connection refused'
    failures = {}
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data.user_failure_data
            failures[event.step_key] = (
                data.description,
                {k: v.value for k, v in data.metadata.items()},
            )
    assert failures
    described = [(d, m) for d, m in failures.values() if m]  # the ones with classification
    assert described
    for description, metadata in described:
        assert connection in description, description
        assert f"still failing after {retries + 1} attempt(s)" in description
        assert metadata[RUN.error_class] == "transient"
        assert metadata[RUN.error_reason].startswith("OperationalError: " + connection)
    for description, _ in failures.values():
        assert connection in description, description
    if when == "before_the_run":
        (leader,) = described
        assert leader[0].startswith(
            f"SQLMesh could not start for SQLMesh environment 'prod' of {project} "
            f"(gateway main) (transient, still failing after {retries + 1} attempt(s)): "
            f"OperationalError: {connection}"
        )
        assert leader[1][RUN.attempts] == retries + 1

    # nothing is shown materialized that is not in the warehouse
    pg.start()
    for key in materialized(instance, result.run_id):
        _, schema, table = key.split("/")
        assert pg.execute(f"SELECT COUNT(*) FROM {schema}.{table}", dbname=database)[0][0] > 0
    assert f"{database}/src/slow" not in materialized(instance, result.run_id)
