"""Leader election, outcome store and environment lock across real processes."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time

import pytest

from dg_sqlmesh.execution.coordinator import (
    EnvironmentBusy,
    LeaderLost,
    RunCoordinator,
    environment_lock,
)
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState


def _claim(args: tuple[str, str]) -> bool:
    directory, step = args
    return RunCoordinator(directory).claim("run-1", step)


def test_exactly_one_leader_among_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        won = pool.map(_claim, [(str(tmp_path), f"step_{i}") for i in range(12)])
    assert won.count(True) == 1


def test_followers_read_what_the_leader_published(tmp_path):
    store = RunCoordinator(tmp_path)
    assert store.claim("run-2", "a")
    outcome = ModelOutcome(fqn='"db"."s"."t"', state=ModelState.MATERIALIZED, intervals=[(0, 1)])
    store.publish("run-2", {outcome.fqn: outcome})
    record = store.wait_for_leader("run-2")
    assert record.finished is not None and record.error is None
    assert store.outcome("run-2", outcome.fqn) == outcome
    assert store.outcome("run-2", "other") is None


def test_a_dead_leader_is_detected(tmp_path):
    code = (
        "import sys; from dg_sqlmesh.execution.coordinator import RunCoordinator; "
        "print(RunCoordinator(sys.argv[1]).claim('run-3', 'leader'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert out.stdout.strip() == "True"
    with pytest.raises(LeaderLost, match="stopped before recording"):
        RunCoordinator(tmp_path).wait_for_leader("run-3")


def test_environment_lock_waits_then_names_the_holder(tmp_path):
    code = (
        "import sys, time; from dg_sqlmesh.execution.coordinator import environment_lock\n"
        "with environment_lock(sys.argv[1], 'env prod', holder='Dagster run AAA', "
        "timeout_seconds=5):\n    print('held', flush=True); time.sleep(3)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    waited = []
    with pytest.raises(EnvironmentBusy, match="Dagster run AAA"):
        with environment_lock(tmp_path, "env prod", holder="B", timeout_seconds=0.5):
            pass
    started = time.monotonic()
    with environment_lock(
        tmp_path, "env prod", holder="B", timeout_seconds=30, on_wait=waited.append
    ):
        assert time.monotonic() - started > 0.5
    holder.wait()
    assert waited == ["Dagster run AAA"]
