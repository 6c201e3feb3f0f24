"""Coordination through the Dagster instance alone, across real processes: outcomes
published in one process and read in another, a stopped run detected, and the
environment held by one run at a time even when the runs share no lock folder (as runs on
different hosts do)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from helpers.other_process import OUTCOME, instance_ref_file, open_instance

from dg_sqlmesh.errors import EnvironmentBusy, LeaderLost
from dg_sqlmesh.execution.coordinator import RunCoordinator
from dg_sqlmesh.execution.guard import LOCK_DIR_ENV, hold_environment, host_lock


def _started_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    run = dg.DagsterRun(job_name="sqlmesh_job", run_id=str(uuid.uuid4()))
    instance.add_run(run)
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(event_type_value="PIPELINE_START", job_name="sqlmesh_job"),
    )
    return instance.get_run_by_id(run.run_id)


def test_a_follower_reads_what_a_leader_in_another_process_published(instance, tmp_path):
    run = _started_run(instance)
    ref = instance_ref_file(instance, tmp_path)
    publish = (
        "import json, sys\n"
        "from helpers.other_process import OUTCOME, open_instance\n"
        "from dg_sqlmesh.execution.coordinator import RunCoordinator\n"
        "instance = open_instance(sys.argv[1])\n"
        "run = instance.get_run_by_id(sys.argv[2])\n"
        "RunCoordinator(instance, run, ['a', 'b']).publish('a', {OUTCOME.fqn: OUTCOME})\n"
    )
    follower = RunCoordinator(instance, run, ["a", "b"])
    assert follower.local() is None  # nothing in this process's memory
    done = subprocess.run(
        [sys.executable, "-c", publish, str(ref), run.run_id],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    published = follower.wait_for("a")
    assert published.leader_step == "a" and published.error is None
    assert published.outcomes == {OUTCOME.fqn: OUTCOME}


def test_a_follower_stops_waiting_when_the_run_is_stopped(instance):
    run = _started_run(instance)
    coordinator = RunCoordinator(instance, run, ["a", "b"])
    started = time.monotonic()
    instance.report_run_canceled(instance.get_run_by_id(run.run_id))
    with pytest.raises(LeaderLost, match="canceled and step 'a'"):
        coordinator.wait_for("a", poll_seconds=0.05)
    assert time.monotonic() - started < 10


def test_host_lock_waits_then_names_the_holder(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    code = (
        "import sys, time; from dg_sqlmesh.execution.guard import host_lock\n"
        "with host_lock('env prod', holder='Dagster run AAA', deadline=time.monotonic() + 5, "
        "describe='env prod', waited=5):\n    print('held', flush=True); time.sleep(3)\n"
        "    open(sys.argv[1], 'w').close()"
    )
    letting_go = tmp_path / "letting_go"  # written by the holder just before it lets go
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(letting_go)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    waited: list[str] = []
    with pytest.raises(EnvironmentBusy, match="still being run by Dagster run AAA after waiting"):
        with host_lock(
            "env prod", holder="B", deadline=time.monotonic() + 0.5, describe="env prod", waited=0.5
        ):
            pass
    with host_lock(
        "env prod",
        holder="B",
        deadline=time.monotonic() + 30,
        describe="env prod",
        waited=30,
        on_wait=waited.append,
    ):
        assert letting_go.exists()  # held only once the holder let go
    holder.wait()
    assert waited == ["Dagster run AAA"]


def _hold(args: tuple[str, str, str, Any]) -> tuple[float, float, list[str]]:
    """One 'host': its own lock folder, the shared instance; once every host is ready
    (``ready``, a barrier), hold the environment 0.4 s."""
    import os

    ref_file, run_id, lock_dir, ready = args
    os.environ[LOCK_DIR_ENV] = lock_dir
    logs: list[str] = []
    with open_instance(ref_file) as instance:
        ready.wait(timeout=120)  # all four contend, however slowly their processes started
        with hold_environment(
            instance,
            run_id,
            "prod@main/p",
            description="SQLMesh environment 'prod' of p",
            timeout_seconds=60,
            log=lambda level, message: logs.append(message),
        ):
            start = time.time()
            time.sleep(0.4)
            end = time.time()
    return start, end, logs


def test_runs_on_different_hosts_hold_the_environment_one_at_a_time(instance, tmp_path):
    ref = instance_ref_file(instance, tmp_path)
    runs = [_started_run(instance) for _ in range(4)]
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, spawn.Pool(4) as pool:
        ready = manager.Barrier(4)
        jobs = [(str(ref), r.run_id, str(tmp_path / f"host{i}"), ready) for i, r in enumerate(runs)]
        held = pool.map(_hold, jobs)
    spans = sorted((start, end) for start, end, _ in held)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, spans  # never two at once
    waits = [m for _, _, logs in held for m in logs]
    assert waits and all(m.startswith("Waiting for Dagster run ") for m in waits), waits
    assert any("give the SQLMesh assets' pool a limit of 1" in m for m in waits)
    # the marks say so when the environment is released, and no run keeps an empty tag
    tags = [instance.get_run_by_id(r.run_id).tags for r in runs]
    assert all(t["dg_sqlmesh/executing"] == "released" for t in tags)
    assert not [(k, v) for t in tags for k, v in t.items() if v == ""]


def test_a_run_that_cannot_wait_fails_naming_the_holder(instance, tmp_path, monkeypatch):
    holder, impatient = _started_run(instance), _started_run(instance)
    instance.add_run_tags(
        holder.run_id,
        {
            "dg_sqlmesh/executing": "prod@main/p",
            "dg_sqlmesh/executing_holder": json.dumps({"pid": 1, "host": "elsewhere"}),
        },
    )
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    with pytest.raises(EnvironmentBusy) as failure:
        with hold_environment(
            instance,
            impatient.run_id,
            "prod@main/p",
            description="SQLMesh environment 'prod' of p",
            timeout_seconds=1,
            log=lambda level, message: None,
        ):
            pass
    assert str(failure.value).startswith(
        f"SQLMesh environment 'prod' of p is still being run by Dagster run {holder.run_id} "
        "(pid 1 on elsewhere) after waiting 1 s."
    )
    # a holder on this host whose process is gone does not hold anything
    instance.add_run_tags(
        holder.run_id,
        {"dg_sqlmesh/executing_holder": json.dumps({"pid": _dead_pid(), "host": _host()})},
    )
    with hold_environment(
        instance,
        impatient.run_id,
        "prod@main/p",
        description="SQLMesh environment 'prod' of p",
        timeout_seconds=1,
        log=lambda level, message: None,
    ):
        pass


def _host() -> str:
    import socket

    return socket.gethostname()


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_processes_running_different_code_read_one_claim_as_one_leader(instance):
    run = _started_run(instance)
    first = RunCoordinator(instance, run, ["b", "c"]).leader("c")
    # a process whose code has one more SQLMesh step, sorting before the others
    assert RunCoordinator(instance, run, ["a", "b", "c"]).leader("b") == first == "c"


def test_a_leader_step_started_again_follows_reports_or_fails_as_its_earlier_attempt_did(
    instance,
):
    from dg_sqlmesh.execution.coordinator import LOST_AFTER_SECONDS

    run = _started_run(instance)
    coordinator = RunCoordinator(instance, run, ["a", "b"])
    assert coordinator.earlier_lead() is None  # the first attempt leads
    coordinator.record_leading("a")
    assert coordinator.earlier_lead().published is False
    # the earlier attempt still gives signs of life: a new attempt follows it
    beating = threading.Event()

    def beat() -> None:
        while not beating.wait(0.3):
            coordinator.beat()

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        assert coordinator.signs_of_life(within=5)
    finally:
        beating.set()
        beater.join()
    started = time.monotonic()
    assert not coordinator.signs_of_life(within=2)  # no more signs
    assert time.monotonic() - started >= 2 and LOST_AFTER_SECONDS > 2
    coordinator.publish("a", {OUTCOME.fqn: OUTCOME})
    assert coordinator.earlier_lead().published is True  # reported, never executed again


def test_a_follower_waits_on_an_instance_that_keeps_no_signs_of_life(instance, monkeypatch):
    """A run storage without key-values (Dagster+'s returns the error instead of raising):
    followers go by the leader's step and the run's status, as before signs of life."""
    from dg_sqlmesh.execution.coordinator import NO_SIGNS

    run = _started_run(instance)
    monkeypatch.setattr(
        instance.run_storage, "get_cursor_values", lambda keys: NotImplementedError()
    )
    coordinator = RunCoordinator(instance, run, ["a", "b"])
    assert coordinator._last_sign() is NO_SIGNS
    assert coordinator.signs_of_life(within=1) is False
    threading.Timer(3.0, lambda: coordinator.publish("a", {OUTCOME.fqn: OUTCOME})).start()
    published = RunCoordinator(instance, run, ["a", "b"]).wait_for("a", OUTCOME.fqn)
    assert published.outcomes == {OUTCOME.fqn: OUTCOME}


def test_the_leaders_watch_outlives_storage_errors():
    from dg_sqlmesh.execution.background import cancellation_watched

    class FlakyInstance:
        looks = 0

        def get_run_by_id(self, run_id: str) -> None:
            self.looks += 1
            if self.looks <= 2:
                raise ConnectionError("server closed the connection unexpectedly")

    beats = []
    flaky = FlakyInstance()
    with cancellation_watched(
        flaky, "run", threading.Event(), every=0.1, beat=lambda: beats.append(1)
    ):
        time.sleep(1.0)
    assert len(beats) >= 5 and flaky.looks >= 5  # it went on after the errors
