"""SQLMesh's execution for a run, on a thread of the leader's process.

The leader starts it and goes on: its own step, and under the in-process executor every
other step of the run, reports its model the moment that model's outcome is published,
while SQLMesh keeps working beside them. A thread rather than a child process: SQLMesh
then shares the leader's loaded project and its warehouse connection stays in one
process (a DuckDB file admits one writer process); SQLMesh spends its time in the
warehouse, which releases the GIL, and Dagster's bookkeeping is what runs beside it.

The thread is not a daemon: a process that ends waits for it, so the environment is
always released and the last outcome always published. A thread cannot outlive its
process: a leader killed outright leaves no SQLMesh execution running on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

CANCELED = {dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED}


class RunStopped(Exception):
    """Raised into SQLMesh's run at its next batch once the Dagster run is stopped."""


class BackgroundExecution:
    """One run's SQLMesh execution: ``work(execution)`` on its own thread.

    ``stop`` is set when the run is terminated; ``work`` stops at SQLMesh's next batch.
    ``work`` sets ``keep_leader`` when the leader's step must last until the end (a plan
    was applied: what it evaluated beyond the selection is reported on that step).
    """

    def __init__(self, run_id: str, work: Callable[[BackgroundExecution], Any]) -> None:
        self.run_id = run_id
        self.stop = threading.Event()
        self.keep_leader = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._work = work
        self._thread = threading.Thread(
            target=self._run, name=f"dg-sqlmesh-run-{run_id[:8]}", daemon=False
        )

    def _run(self) -> None:
        try:
            self.result = self._work(self)
        except BaseException as exc:  # noqa: BLE001 - kept for the step that joins
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> Any:
        """Wait for the end; the work's result, or its exception raised."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)  # short: a terminated run interrupts the wait
        if self.error is not None:
            raise self.error
        return self.result


_EXECUTIONS: dict[str, BackgroundExecution] = {}
_LOCK = threading.Lock()


def start_execution(run_id: str, work: Callable[[BackgroundExecution], Any]) -> BackgroundExecution:
    """Start ``work`` for ``run_id`` on its own thread, and remember it until joined."""
    execution = BackgroundExecution(run_id, work)
    with _LOCK:
        _EXECUTIONS[run_id] = execution
    execution.start()
    return execution


def execution_of(run_id: str) -> BackgroundExecution | None:
    with _LOCK:
        return _EXECUTIONS.get(run_id)


def finish_executions(run_id: str | None = None) -> None:
    """Wait for this process's executions (of ``run_id``, or all) to end; they publish
    their own errors, so none is raised here."""
    with _LOCK:
        found = [e for r, e in _EXECUTIONS.items() if run_id is None or r == run_id]
    for execution in found:
        try:
            execution.join()
        except Exception:  # noqa: BLE001, S110 - published to the steps already
            pass
        except BaseException:  # interrupted while waiting: SQLMesh stops at its next batch
            execution.stop.set()
            raise
        finally:
            with _LOCK:
                _EXECUTIONS.pop(execution.run_id, None)


@contextmanager
def cancellation_watched(
    instance: dg.DagsterInstance,
    run_id: str,
    stop: threading.Event,
    every: float = 1.0,
    beat: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """While inside, set ``stop`` once the run is being canceled (terminated from the UI,
    say: Dagster marks it canceling before it interrupts the run's process), checked every
    ``every`` seconds on a thread of its own, which also calls ``beat`` (the leader's sign
    of life) each time."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(every):
            try:  # a storage error skips one beat or one look, never the watch
                beat()
            except Exception:  # noqa: BLE001, S110 - the next beat tells
                pass
            try:
                run = instance.get_run_by_id(run_id)
            except Exception:  # noqa: BLE001, S112 - looked at again next time
                continue
            if run is not None and run.status in CANCELED:
                stop.set()
                return

    watcher = threading.Thread(target=watch, name=f"dg-sqlmesh-watch-{run_id[:8]}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()


def stop_execution(run_id: str) -> None:
    """Ask the execution of ``run_id`` to stop at SQLMesh's next batch."""
    execution = execution_of(run_id)
    if execution is not None:
        execution.stop.set()
