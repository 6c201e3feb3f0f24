"""Per-run coordination through the Dagster instance: one leader step per run, and the
run's outcomes published to every other step.

The steps of a run may share nothing but the Dagster instance (the Kubernetes job
executor puts every step in its own pod), so everything goes through the instance: one
claim in its storage, then the run's event log, written and read with Dagster's public
instance API:

* **Leader election.** Every SQLMesh step of the run claims the run in the instance's
  storage (``_compat.dagster.first_claim``): one row that a unique index lets exactly one
  step insert, whichever executor runs the steps and in whatever order the storage
  commits their events. The step whose claim is in the row leads; every other step,
  early or late, reads the same row. Storages that cannot serialise a claim (no SQL
  event log storage) fall back to the order of the "step worker starting" events that a
  run's single orchestrator writes (multiprocess, Docker and Kubernetes executors), then
  to the order of the steps' start events.
* **Outcomes.** The leader publishes each model's outcome the moment it is final
  (engine events marked ``dg_sqlmesh/live``, a few models each), then one last engine
  event holding every selected model's outcome (or the error that stopped SQLMesh). A
  step waits for its own model only: whichever of the two names it first.
* **A dead leader.** A step process that dies is failed by the orchestrator
  (``STEP_FAILURE``); a stopped run changes status. A waiting follower watches both and
  fails at once, naming the leader step. Some orchestrators write nothing when a step's
  process dies (Dagster's Celery executor waits for the rest of the run first), so the
  leader also gives a sign of life every second while SQLMesh's execution lasts (a value
  in the instance's key-value store, ``dg_sqlmesh/alive/<run id>``), and a follower that
  sees it unchanged for ``LOST_AFTER_SECONDS`` fails, naming the leader step. Followers
  time this on their own clock, so hosts' clocks need not agree.

Past the election no compare-and-set is needed: each fact is written once, by one writer,
and read back in the order the event log gives it.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dg_sqlmesh._compat.dagster import engine_event_data, first_claim
from dg_sqlmesh.errors import LeaderLost
from dg_sqlmesh.execution.outcomes import ModelOutcome
from dg_sqlmesh.metadata import DG

OUTCOMES_KEY = DG.outcomes
ERROR_KEY = DG.error
EXECUTION_KEY = DG.execution
LEADING_KEY = DG.leading
LIVE_KEY = DG.live

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
LOST_AFTER_SECONDS = 15.0  # no sign of life from the leader for this long: it is dead
_FIRST_SIGN_SECONDS = 120.0  # before its first sign: the leader may still be starting


NO_SIGNS = object()  # the instance keeps no signs of life


def claimant_numbers(steps: Collection[str]) -> dict[str, int]:
    """Each SQLMesh step's number in the run's claim: a hash of its key, the same in every
    process whatever other steps its code has (so processes running different code never
    read one claim as two leaders), or its place among the steps should two keys hash
    alike."""
    numbers = {step: (zlib.crc32(step.encode()) & 0x7FFFFFFF) or 1 for step in steps}
    if len(set(numbers.values())) < len(numbers):
        numbers = {step: i + 1 for i, step in enumerate(sorted(steps))}
    return numbers


@dataclass
class EarlierLead:
    """An earlier attempt of the leader's step: where it ran and whether it published."""

    where: dict[str, Any]
    published: bool


@dataclass
class Published:
    """What the leader published: every selected model's outcome, or why there is none.

    ``complete`` is False while only the outcomes final so far are known.
    """

    leader_step: str
    outcomes: dict[str, ModelOutcome] = field(default_factory=dict)
    error: str | None = None
    complete: bool = True


class _Board:
    """The outcomes of one run in the leader's process, for the steps sharing it (the
    in-process executor): read from memory, woken the moment an outcome is final."""

    def __init__(self, leader_step: str) -> None:
        self.published = Published(leader_step, complete=False)
        self.changed = threading.Condition()

    def add(self, outcomes: Mapping[str, ModelOutcome], complete: bool, error: str | None) -> None:
        with self.changed:
            self.published.outcomes.update(outcomes)
            if complete:
                self.published.complete = True
                self.published.error = error
            self.changed.notify_all()

    def wait_for(self, fqn: str, timeout: float) -> Published | None:
        with self.changed:
            self.changed.wait_for(lambda: self._has(fqn), timeout=timeout)
            return self.published if self._has(fqn) else None

    def _has(self, fqn: str) -> bool:
        return self.published.complete or fqn in self.published.outcomes


_BOARDS: dict[str, _Board] = {}  # run id -> its board, in the leader's process
_BOARDS_LOCK = threading.Lock()


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
        self._beats = 0

    @functools.cached_property
    def sqlmesh_steps(self) -> frozenset[str]:
        steps = self._steps() if callable(self._steps) else self._steps
        return frozenset(steps)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    # --- election -----------------------------------------------------------------------

    def local(self) -> Published | None:
        """What the run's leader published, when it leads from this very process."""
        with _BOARDS_LOCK:
            board = _BOARDS.get(self.run_id)
        return None if board is None else board.published

    def leader(self, step_key: str) -> str:
        """The step key of the run's leader, as every step of the run computes it: the
        step whose claim the storage took first."""
        numbers = claimant_numbers(self.sqlmesh_steps)
        if step_key in numbers:
            found = first_claim(self.instance, self.run_id, numbers[step_key])
            if found is not None:
                claimed = [step for step, number in numbers.items() if number == found]
                if len(claimed) == 1:
                    return claimed[0]
                raise LeaderLost(
                    f"The step that claimed this run's lead (number {found}) is not one of "
                    "this code's SQLMesh steps: the run's steps run different code. "
                    "Re-execute the run once every worker runs the same code."
                )
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

    @property
    def _alive_key(self) -> str:
        return f"dg_sqlmesh/alive/{self.run_id}"

    def beat(self) -> None:
        """The leader's sign of life, while SQLMesh's execution lasts: a new value each
        time (see the module's docstring)."""
        self._beats += 1
        value = f"{os.getpid()}@{socket.gethostname()}:{self._beats}"
        self.instance.run_storage.set_cursor_values({self._alive_key: value})

    def _last_sign(self) -> object:
        """The leader's last sign of life (None before the first), or ``NO_SIGNS`` when
        the instance keeps none (a run storage without key-values, as Dagster+'s)."""
        try:
            values = self.instance.run_storage.get_cursor_values({self._alive_key})
        except NotImplementedError:
            return NO_SIGNS
        if not isinstance(values, Mapping):  # some storages return the error instead
            return NO_SIGNS
        return values.get(self._alive_key)

    def signs_of_life(self, within: float = LOST_AFTER_SECONDS, poll: float = 1.0) -> bool:
        """Whether the leader's sign of life changes within ``within`` seconds (a leader
        working somewhere); False at once when the instance keeps no signs."""
        first = self._last_sign()
        if first is NO_SIGNS:
            return False
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            time.sleep(poll)
            if self._last_sign() != first:
                return True
        return False

    def record_leading(self, step_key: str) -> None:
        """Say in the run log that ``step_key`` leads SQLMesh's execution for the run, from
        this process, before doing anything: a step started again sees it."""
        where = {"pid": os.getpid(), "host": socket.gethostname()}
        self.instance.report_engine_event(
            f"Step '{step_key}' leads SQLMesh's execution for this run "
            f"(pid {where['pid']} on {where['host']})",
            dagster_run=self.run,
            engine_event_data=engine_event_data({LEADING_KEY: dg.MetadataValue.json(where)}),
            step_key=step_key,
        )

    def earlier_lead(self) -> EarlierLead | None:
        """What an earlier attempt of the leader's step did, when the executor started the
        step again (Dask does when a worker dies; a retry policy does after a failure):
        None when no attempt led yet."""
        found: EarlierLead | None = None
        for record in self.instance.get_records_for_run(
            self.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
        ).records:
            metadata = record.event_log_entry.dagster_event.engine_event_data.metadata or {}
            live = LIVE_KEY in metadata and metadata[LIVE_KEY].value
            if LEADING_KEY in metadata:
                found = EarlierLead(dict(metadata[LEADING_KEY].value or {}), published=False)
            elif OUTCOMES_KEY in metadata and not live and found is not None:
                found.published = True
        return found

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

    def open_board(self, step_key: str) -> None:
        """Start publishing this run's outcomes from ``step_key``, in this process."""
        with _BOARDS_LOCK:
            _BOARDS.setdefault(self.run_id, _Board(step_key))
            while len(_BOARDS) > 64:  # a long-lived process runs many runs
                _BOARDS.pop(next(iter(_BOARDS)))

    def _board(self, step_key: str) -> _Board:
        self.open_board(step_key)
        with _BOARDS_LOCK:
            return _BOARDS[self.run_id]

    def publish_live(self, step_key: str, outcomes: Mapping[str, ModelOutcome]) -> None:
        """Publish outcomes that are final before the execution ends: the steps of this
        process see them at once, the others in the run's event log."""
        self._board(step_key).add(outcomes, complete=False, error=None)
        names = ", ".join(sorted(outcomes))
        self.instance.report_engine_event(
            f"SQLMesh finished {len(outcomes)} model(s): {names}",
            dagster_run=self.run,
            engine_event_data=engine_event_data(
                {
                    OUTCOMES_KEY: dg.MetadataValue.json(
                        {f: o.to_dict() for f, o in outcomes.items()}
                    ),
                    LIVE_KEY: True,
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
        board = self._board(step_key)
        board.add(outcomes, complete=True, error=error)
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
        return Published(step_key, dict(outcomes), error)

    # --- followers ----------------------------------------------------------------------

    def wait_for(
        self,
        leader_step: str,
        fqn: str | None = None,
        *,
        poll_seconds: float = 0.25,
        on_wait: Callable[[], None] | None = None,
        leader_alive: Callable[[], bool] = lambda: True,
    ) -> Published:
        """Block until ``leader_step`` has published the outcome of ``fqn`` (None: every
        outcome), or raise :class:`LeaderLost`.

        In the leader's process the outcomes are read from memory as they are published;
        ``leader_alive`` there says whether SQLMesh's execution is still going.
        """
        with _BOARDS_LOCK:
            board = _BOARDS.get(self.run_id)
        if board is not None:
            return _wait_on_board(board, fqn or "", leader_step, leader_alive)
        cursor = None
        delay = 0.02
        announced = False
        last_status = time.monotonic()
        sign, sign_changed, signs_seen = self._last_sign(), time.monotonic(), False
        rescanned = False
        while True:
            page = self.instance.get_records_for_run(
                self.run_id, cursor=cursor, of_type=_FOLLOWED, limit=_PAGE
            )
            for record in page.records:
                found = _published(record.event_log_entry, leader_step)
                if found is not None and (found.complete or fqn in found.outcomes):
                    return found
            cursor = page.cursor if page.records else cursor
            if page.has_more:
                continue
            if not announced and on_wait is not None:
                on_wait()
                announced = True
            if time.monotonic() - last_status > _STATUS_EVERY_SECONDS:
                last_status = time.monotonic()
                lost, latest = self._news(leader_step, sign, sign_changed, signs_seen)
                if lost is not None and not rescanned:
                    # PostgreSQL may commit events out of id order: before giving up, read
                    # the whole log once more, in case the publication hid behind the cursor
                    cursor, rescanned = None, True
                    continue
                if lost is not None:
                    raise LeaderLost(lost)
                if latest != sign:
                    sign, sign_changed, signs_seen = latest, time.monotonic(), True
            time.sleep(delay)
            delay = min(poll_seconds, delay * 2)

    def _news(
        self, leader_step: str, sign: object, sign_changed: float, signs_seen: bool
    ) -> tuple[str | None, object]:
        """Why the leader is lost (None: it is not, or still has time), and its latest
        sign of life."""
        run = self.instance.get_run_by_id(self.run_id)
        if run is not None and run.status in _RUN_ENDED:
            why = (
                f"The run is {run.status.value.lower()} and step '{leader_step}', which "
                "executes SQLMesh for it, published no outcome."
            )
            return why, sign
        latest = self._last_sign()
        if latest is NO_SIGNS or latest != sign:
            return None, latest
        waited = time.monotonic() - sign_changed
        if waited > (LOST_AFTER_SECONDS if signs_seen else _FIRST_SIGN_SECONDS):
            return _lost_message(leader_step, waited), latest
        return None, latest


def _lost_message(leader_step: str, seconds: float) -> str:
    return (
        f"Step '{leader_step}', which executes SQLMesh for this run, has given no sign of "
        f"life for {seconds:.0f} s and published no outcome: its process died or was "
        "stopped. No outcome can be reported; re-execute the run to complete the work."
    )


def _wait_on_board(
    board: _Board, fqn: str, leader_step: str, leader_alive: Callable[[], bool]
) -> Published:
    while True:
        published = board.wait_for(fqn, timeout=0.5)  # short: a terminated run interrupts
        if published is not None:
            return published
        if not leader_alive() and board.wait_for(fqn, timeout=0) is None:
            raise LeaderLost(
                f"SQLMesh's execution for this run (led by step '{leader_step}') ended without "
                "publishing what happened. Re-execute the run to complete the work."
            )


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
        live = bool(metadata[LIVE_KEY].value) if LIVE_KEY in metadata else False
        return Published(leader_step, outcomes, error, complete=not live)
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
