"""The run's leader is elected atomically in the instance's storage: exactly one step of a
run leads, whatever order PostgreSQL commits the steps' events in, however many steps
elect at once, and on every executor (Celery and Dask write no "step worker starting"
event, so before this their steps were ordered by start events, which PostgreSQL can
commit out of order)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from helpers.elect import start_step
from helpers.other_process import instance_ref_file
from helpers.pg_server import PostgresServer, postgres_available

from dg_sqlmesh.execution.coordinator import RunCoordinator, claimant_numbers

_reason = postgres_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


def _instance(pg, tmp_path):  # noqa: ANN202
    pg.drop_database("dagster_election")
    pg.create_database("dagster_election")
    home = tmp_path / "dagster_home"
    home.mkdir()
    return dg.instance_for_test(
        temp_dir=str(home), overrides={"storage": pg.dagster_storage("dagster_election")}
    )


@pytest.fixture
def pg_instance(pg, tmp_path):
    with _instance(pg, tmp_path) as instance:
        yield instance


def _run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    run = dg.DagsterRun(job_name="sqlmesh_job", run_id=str(uuid.uuid4()))
    instance.add_run(run)
    return run


def _uncommitted_start(pg, run: dg.DagsterRun, step: str):  # noqa: ANN202
    """Step ``step``'s start event inserted in a transaction left open: PostgreSQL gives it
    its id now and shows it to others only at commit, as when the inserting process is
    descheduled between the two. Returns the open connection."""
    from dagster._serdes import serialize_value

    entry = dg.EventLogEntry(
        error_info=None,
        level=20,
        user_message="",
        run_id=run.run_id,
        timestamp=time.time(),
        step_key=step,
        job_name=run.job_name,
        dagster_event=dg.DagsterEvent(
            event_type_value="STEP_START", job_name=run.job_name, step_key=step
        ),
    )
    conn = pg.connect("dagster_election", autocommit=False)
    with conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key) "
            "VALUES (%s, %s, %s, %s, %s)",
            (
                run.run_id,
                serialize_value(entry),
                "STEP_START",
                datetime.fromtimestamp(entry.timestamp, UTC).replace(tzinfo=None),
                step,
            ),
        )
    return conn


def test_start_events_committed_out_of_order_still_elect_one_leader(pg, pg_instance):
    run = _run(pg_instance)
    steps = ["a", "b"]
    held = _uncommitted_start(pg, run, "a")  # a starts first; its event commits last
    start_step(pg_instance, run, "b")
    b_says = RunCoordinator(pg_instance, run, steps).leader("b")
    held.commit()
    held.close()
    a_says = RunCoordinator(pg_instance, run, steps).leader("a")
    assert a_says == b_says  # the start events' order would make both lead


def test_a_claim_not_yet_committed_makes_the_next_step_wait_for_it_not_lead(pg, pg_instance):
    run = _run(pg_instance)
    steps = ["a", "b"]
    held = pg.connect("dagster_election", autocommit=False)
    with held.cursor() as cursor:  # a's claim, as the storage inserts it, not yet committed
        cursor.execute(
            "INSERT INTO pending_steps (concurrency_key, run_id, step_key, priority) "
            "VALUES ('dg_sqlmesh/leader', %s, 'dg_sqlmesh:leader', %s)",
            (run.run_id, claimant_numbers(steps)["a"]),
        )
    said: dict[str, str] = {}
    electing = threading.Thread(
        target=lambda: said.update(b=RunCoordinator(pg_instance, run, steps).leader("b"))
    )
    electing.start()
    time.sleep(1.0)
    assert electing.is_alive()  # b waits for the storage to decide
    held.commit()
    held.close()
    electing.join(timeout=30)
    assert said == {"b": "a"}
    assert RunCoordinator(pg_instance, run, steps).leader("a") == "a"


# A busy server: the session inserting a step's start event stalls for up to 50 ms after
# PostgreSQL gave the event its id and before the event is visible to anyone.
_STALLING_STARTS = """
CREATE FUNCTION stall_start() RETURNS trigger AS $$
BEGIN
  IF NEW.dagster_event_type = 'STEP_START' THEN PERFORM pg_sleep(random() * 0.05); END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER stall_start BEFORE INSERT ON event_logs
  FOR EACH ROW EXECUTE FUNCTION stall_start();
"""


def test_many_steps_electing_at_once_in_many_runs_agree_on_one_leader(pg, pg_instance, tmp_path):
    # Eight processes start their step and elect at the same moment in each of 40 runs, on
    # a server whose start events become visible out of their id order (electing by the
    # start events' order made several leaders in 9 of these 40 runs), and insert their
    # claims concurrently: the unique index lets one in.
    pg.execute(_STALLING_STARTS, dbname="dagster_election")
    steps = [f"model_{i}" for i in range(8)]
    runs = [_run(pg_instance).run_id for _ in range(40)]
    ref = instance_ref_file(pg_instance, tmp_path)
    start = time.time() + 20  # every process imported and connected by then
    electors = [
        subprocess.Popen(
            [sys.executable, "-m", "helpers.elect", str(ref), step, ",".join(steps)]
            + [str(start), "0.25", *runs],
            cwd=TESTS,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for step in steps
    ]
    said = []
    for elector in electors:
        out, err = elector.communicate(timeout=180)
        assert elector.returncode == 0, err
        said.append(json.loads(out.strip().splitlines()[-1]))
    leaders = [{step_says[i] for step_says in said} for i in range(len(runs))]
    several = [sorted(found) for found in leaders if len(found) > 1]
    assert not several, f"{len(several)} of {len(runs)} runs had several leaders: {several}"
    assert set().union(*leaders) <= set(steps)
