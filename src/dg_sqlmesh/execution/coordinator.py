"""Per-run coordination through the Dagster instance: one leader step per run, and the
run's outcomes published to every other step.

The steps of a run may share nothing but the Dagster instance (the Kubernetes job
executor puts every step in its own pod), so everything goes through the run's event
log, written and read with Dagster's public instance API:

* **Leader election.** Before it starts a step's process, the run's orchestrator writes
  a "step worker starting" event for it (multiprocess, Docker and Kubernetes executors
  alike). One process writes them, one after the other, so their order in the event log
  is the order in which steps were launched, the same for every reader, and a step's
  own event is there before the step runs. The leader is the SQLMesh step launched
  first. Under the in-process executor (no such events) steps start one after the
  other in one process, and the first SQLMesh step to start is the leader.
* **Outcomes.** The leader publishes one engine event whose JSON metadata holds every
  selected model's outcome (or the error that stopped SQLMesh). Followers read it.
* **A dead leader.** A step process that dies is failed by the orchestrator
  (``STEP_FAILURE``); a stopped run changes status. A waiting follower watches both and
  fails at once, naming the leader step.

No compare-and-set is needed: each fact is written once, by one writer, and read back in
the order the event log gives it.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dg_sqlmesh._compat.dagster import engine_event_data
from dg_sqlmesh.errors import LeaderLost
from dg_sqlmesh.execution.outcomes import ModelOutcome
from dg_sqlmesh.metadata import DG

OUTCOMES_KEY = DG.outcomes
ERROR_KEY = DG.error
EXECUTION_KEY = DG.execution

_RUN_ENDED = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.CANCELED,
}
_FOLLOWED = {
    dg.DagsterEventType.ENGINE_EVENT,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SUCCESS,
}
_STATUS_EVERY_SECONDS = 2.0
_PAGE = 200


@dataclass
class Published:
    """What the leader published: every selected model's outcome, or why there is none."""

    leader_step: str
    outcomes: dict[str, ModelOutcome] = field(default_factory=dict)
    error: str | None = None


# Steps that share the leader's process (the in-process executor) read its outcome from
# memory instead of the event log: one read per run, not one per step.
_IN_PROCESS: dict[str, Published] = {}
_IN_PROCESS_LOCK = threading.Lock()


class RunCoordinator:
    """Leader election and outcome store of one Dagster run, kept in the run's event log.

    Args:
        instance: the Dagster instance of the run (any storage: SQLite, PostgreSQL).
        run: the run.
        sqlmesh_steps: the step keys of the run that materialize SQLMesh models (the
            leader is one of them), or a function computing them, called only when an
            election needs them (steps served from :meth:`local` never do).
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run: dg.DagsterRun,
        sqlmesh_steps: Collection[str] | Callable[[], Collection[str]],
    ) -> None:
        self.instance = instance
        self.run = run
        self._steps = sqlmesh_steps

    @functools.cached_property
    def sqlmesh_steps(self) -> frozenset[str]:
        steps = self._steps() if callable(self._steps) else self._steps
        return frozenset(steps)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    # --- election -----------------------------------------------------------------------

    def local(self) -> Published | None:
        """The run's outcome, when its leader ran in this very process."""
        with _IN_PROCESS_LOCK:
            return _IN_PROCESS.get(self.run_id)

    def leader(self, step_key: str) -> str:
        """The step key of the run's leader, as every step of the run computes it."""
        launched = self._first_of_ours(dg.DagsterEventType.STEP_WORKER_STARTING, step_key)
        if launched is not None:
            return launched
        started = self._first_of_ours(dg.DagsterEventType.STEP_START, None)
        return started or step_key

    def _first_of_ours(self, event_type: dg.DagsterEventType, must_see: str | None) -> str | None:
        """The first step of ours with an event of ``event_type``; None if ``must_see``
        (this step) has no such event, i.e. the executor does not write them."""
        cursor = None
        first: str | None = None
        while True:
            page = self.instance.get_records_for_run(
                self.run_id, cursor=cursor, of_type=event_type, limit=_PAGE
            )
            for record in page.records:
                step = record.event_log_entry.step_key
                if step in self.sqlmesh_steps and first is None:
                    first = step
                if must_see is None or step == must_see:
                    return first
            if not page.has_more:
                return None if must_see is not None else first
            cursor = page.cursor

    # --- the leader ---------------------------------------------------------------------

    def record_execution(self, step_key: str, attempt: int, models: int) -> None:
        """Say in the run log that SQLMesh is being executed, and by which process."""
        self.instance.report_engine_event(
            f"Executing SQLMesh for {models} model(s) (attempt {attempt}, pid {os.getpid()} "
            f"on {socket.gethostname()})",
            dagster_run=self.run,
            engine_event_data=engine_event_data(
                {
                    EXECUTION_KEY: dg.MetadataValue.json(
                        {"attempt": attempt, "pid": os.getpid(), "host": socket.gethostname()}
                    )
                }
            ),
            step_key=step_key,
        )

    def publish(
        self,
        step_key: str,
        outcomes: Mapping[str, ModelOutcome],
        error: str | None = None,
        summary: str = "",
    ) -> Published:
        """Publish the run's outcomes (or the error that stopped SQLMesh) to every step."""
        published = Published(step_key, dict(outcomes), error)
        with _IN_PROCESS_LOCK:
            _IN_PROCESS[self.run_id] = published
            while len(_IN_PROCESS) > 64:  # a long-lived process runs many runs
                _IN_PROCESS.pop(next(iter(_IN_PROCESS)))
        metadata: dict[str, Any] = {
            OUTCOMES_KEY: dg.MetadataValue.json({f: o.to_dict() for f, o in outcomes.items()})
        }
        if error is not None:
            metadata[ERROR_KEY] = dg.MetadataValue.text(error)
        self.instance.report_engine_event(
            summary or ("SQLMesh execution failed" if error else "SQLMesh execution recorded"),
            dagster_run=self.run,
            engine_event_data=engine_event_data(metadata),
            step_key=step_key,
        )
        return published

    # --- followers ----------------------------------------------------------------------

    def wait_for(
        self,
        leader_step: str,
        *,
        poll_seconds: float = 0.25,
        on_wait: Callable[[], None] | None = None,
    ) -> Published:
        """Block until ``leader_step`` has published, or raise :class:`LeaderLost`."""
        local = self.local()
        if local is not None:
            return local
        cursor = None
        delay = 0.02
        announced = False
        last_status = time.monotonic()
        while True:
            page = self.instance.get_records_for_run(
                self.run_id, cursor=cursor, of_type=_FOLLOWED, limit=_PAGE
            )
            for record in page.records:
                found = _published(record.event_log_entry, leader_step)
                if found is not None:
                    return found
            cursor = page.cursor if page.records else cursor
            if page.has_more:
                continue
            if not announced and on_wait is not None:
                on_wait()
                announced = True
            if time.monotonic() - last_status > _STATUS_EVERY_SECONDS:
                last_status = time.monotonic()
                run = self.instance.get_run_by_id(self.run_id)
                if run is not None and run.status in _RUN_ENDED:
                    raise LeaderLost(
                        f"The run is {run.status.value.lower()} and step '{leader_step}', which "
                        "executes SQLMesh for it, published no outcome."
                    )
            time.sleep(delay)
            delay = min(poll_seconds, delay * 2)


def _published(entry: Any, leader_step: str) -> Published | None:
    event = entry.dagster_event
    if event is None or entry.step_key != leader_step:
        return None
    if event.event_type is dg.DagsterEventType.ENGINE_EVENT:
        metadata = event.engine_event_data.metadata or {}
        if OUTCOMES_KEY not in metadata:
            return None
        outcomes = {
            fqn: ModelOutcome.from_dict(data)
            for fqn, data in (metadata[OUTCOMES_KEY].value or {}).items()
        }
        error = metadata[ERROR_KEY].value if ERROR_KEY in metadata else None
        return Published(leader_step, outcomes, error)
    raise LeaderLost(
        f"Step '{leader_step}' was executing SQLMesh for this run and "
        f"{'failed' if event.event_type is dg.DagsterEventType.STEP_FAILURE else 'ended'} "
        "before publishing what happened (its process died or was stopped). No outcome can be "
        "reported; re-execute the run to complete the work."
    )


def recorded_executions(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """The SQLMesh executions a run's leader recorded (attempt, pid, host), in order."""
    found = []
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in records:
        metadata = record.event_log_entry.dagster_event.engine_event_data.metadata or {}
        if EXECUTION_KEY in metadata:
            found.append({**metadata[EXECUTION_KEY].value, "step": record.event_log_entry.step_key})
    return found
