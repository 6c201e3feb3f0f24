"""Capturing SQLMesh's run events: a console, an audit notification target, a selector.

SQLMesh reports evaluation progress to its ``Console`` and audit failures (with the
rendered query and failing row count) to its notification targets, and matches a run's
model selection with its context's selector class; all three are public extension
points. :class:`EventRecorder` records what they say as plain events
(``execution.events``), deciding nothing, and forwards one log line per evaluated
batch as it happens. ``execution.outcomes`` settles the models' states from them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlmesh.utils.errors import NodeAuditsErrors

from dg_sqlmesh._compat.sqlmesh_run import ExactSelector, NoopConsole, NotificationEvent
from dg_sqlmesh.errors import classify_error, plain_text
from dg_sqlmesh.execution.background import RunStopped
from dg_sqlmesh.execution.events import (
    AuditFailed,
    BatchDone,
    BatchFailed,
    EvaluationStarted,
    Event,
    ModelFailed,
    SelectionResolved,
    Skipped,
    SnapshotStarted,
)
from dg_sqlmesh.execution.progress import LogFn
from dg_sqlmesh.project.describe import describe_audits
from dg_sqlmesh.project.description import ModelInfo


def _format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


class EventRecorder:
    """Records what SQLMesh says during one attempt of a run, as :attr:`events`."""

    def __init__(self, models: Mapping[str, ModelInfo], log: LogFn):
        self._models = models
        self._log = lambda level, message: log(level, plain_text(message))
        self._lock = threading.Lock()
        self.reset()
        self.console = _RecordingConsole(self)
        self.notification_target = _AuditFailureTarget(self)
        self.selector = partial(ExactSelector, on_resolved=self._on_selection)
        self.lines: dict[str, list[list[Any]]] = {}  # fqn -> [level, message, time], all attempts
        # Called with a model's FQN once every batch SQLMesh planned for it is written and
        # audited (the last ``BatchDone``), from SQLMesh's thread; None: nobody listens.
        self.on_model_done: Callable[[str], None] | None = None
        # Called with the models SQLMesh considered and the batches it planned, once per
        # attempt, as its evaluation starts (not when it restarts); None: nobody listens.
        self.on_run_planned: Callable[[frozenset[str], Mapping[str, int]], None] | None = None
        self.stop: threading.Event | None = None  # set: stop at SQLMesh's next batch

    def reset(self) -> None:
        """Forget everything recorded, before another attempt of the same run."""
        self.events: list[Event] = []
        self.by_model: dict[str, list[Event]] = {}  # the events naming each model
        self._planned_batches: dict[str, int] = {}
        self._done_batches: dict[str, int] = {}
        self._evaluation_started = False
        self._considered: frozenset[str] | None = None
        self._sql_cache: dict[Any, Any] = {}

    def record(self, event: Event) -> None:
        """Append one event (SQLMesh's run raising is recorded by its caller)."""
        with self._lock:
            self.events.append(event)
            fqn = getattr(event, "fqn", None)
            if fqn is not None:
                self.by_model.setdefault(fqn, []).append(event)

    def _model_log(self, fqn: str, level: str, message: str) -> None:
        """A progress line about one model: to the run log now, and kept for its step."""
        self._log(level, message)
        with self._lock:
            self.lines.setdefault(fqn, []).append([level, message, time.time()])

    def _name(self, fqn: str) -> str:
        model = self._models.get(fqn)
        return model.name if model else fqn

    def _on_selection(self, fqns: Iterable[str]) -> None:
        self._considered = frozenset(fqns)
        self.record(SelectionResolved(self._considered))

    # --- console events -------------------------------------------------------------

    def on_evaluation_start(self, batched_intervals: Mapping[Any, list[Any]]) -> None:
        planned = {snapshot.name: len(batches) for snapshot, batches in batched_intervals.items()}
        restart = bool(self._planned_batches) or self._evaluation_started
        self._evaluation_started = True
        self._planned_batches.update(planned)
        self.record(EvaluationStarted(planned))
        self._log("info", f"SQLMesh: {len(self._planned_batches)} model(s) with intervals due")
        considered = self._considered
        if not restart and considered is not None and self.on_run_planned is not None:
            self.on_run_planned(considered, planned)

    def on_snapshot_start(self, snapshot: Any) -> None:
        if self.stop is not None and self.stop.is_set():
            raise RunStopped("the Dagster run was stopped before SQLMesh evaluated this model")
        # The audits SQLMesh runs are the environment's, which can differ from the
        # project on disk (changes not applied yet): record those, not the disk's.
        # A standalone audit's snapshot has no model (``.model`` raises): its audit is itself.
        model = snapshot.model if getattr(snapshot, "is_model", True) else None
        audits = None if model is None else tuple(describe_audits(model, self._sql_cache))
        self.record(SnapshotStarted(snapshot.name, audits))

    def on_batch_done(
        self,
        snapshot: Any,
        interval: tuple[int, int],
        batch_idx: int,
        duration_ms: int | None,
        audits_passed: int,
        audits_failed: int,
        execution_stats: Any = None,
    ) -> None:
        fqn = snapshot.name
        total = self._planned_batches.get(fqn, batch_idx + 1)
        name = self._name(fqn)
        window = f"[{_format_ms(interval[0])}, {_format_ms(interval[1])})"
        span = (int(interval[0]), int(interval[1]))
        if duration_ms is None:  # the batch raised; log_failed_models says why
            self.record(BatchFailed(fqn, span, batch_idx))
            self._model_log(
                fqn, "warning", f"{name}: batch {batch_idx + 1}/{total} {window} failed"
            )
            return
        self.record(
            BatchDone(
                fqn,
                span,
                batch_idx,
                duration_ms,
                intervals=_interval_count(snapshot, span),
                rows=_stat(execution_stats, "total_rows_processed"),
                bytes=_stat(execution_stats, "total_bytes_processed"),
            )
        )
        audits = ""
        if audits_passed or audits_failed:
            audits = f", audits {audits_passed} passed, {audits_failed} failed"
        self._model_log(
            fqn,
            "info",
            f"{name}: batch {batch_idx + 1}/{total} {window} evaluated in {duration_ms} ms{audits}",
        )
        done = self._done_batches[fqn] = self._done_batches.get(fqn, 0) + 1
        if done == total and self.on_model_done is not None:
            self.on_model_done(fqn)

    def on_failed(self, errors: list[Any]) -> None:
        for error in errors:
            node = getattr(error, "node", None)
            fqn = getattr(node, "snapshot_name", None)
            if fqn is None:
                continue
            cause = error.__cause__ or error
            # By type: other errors have an ``errors`` attribute too (google-api-core's,
            # pydantic's), and a warehouse error is not an audit failure.
            self.record(ModelFailed(fqn, cause, isinstance(cause, NodeAuditsErrors)))
            error_class, _ = classify_error(cause)
            self._model_log(
                fqn, "error", f"{self._name(fqn)} failed ({error_class.value}): {cause}"
            )

    def on_skipped(self, fqns: Iterable[str]) -> None:
        for fqn in fqns:
            self.record(Skipped(fqn))
            self._model_log(fqn, "warning", f"{self._name(fqn)} skipped: an upstream model failed")

    def on_audit_failure(self, audit_error: Any) -> None:
        model = getattr(audit_error, "model", None)
        # A standalone audit's error has no model; its node is named after the audit.
        fqn = model.fqn if model is not None else audit_error.audit_name
        described = self._models.get(fqn)
        dialect = described.dialect if described else None
        self.record(
            AuditFailed(
                fqn=fqn,
                audit=audit_error.audit_name,
                args=_args(audit_error, dialect),
                failing_rows=int(audit_error.count),
                query=audit_error.sql(pretty=True),
            )
        )


def _stat(execution_stats: Any, name: str) -> int | None:
    """One figure of SQLMesh's per-batch ``QueryExecutionStats``; ``None`` when not
    reported (engines without SQLMesh's query tracking, DuckDB among them, report none)."""
    value = getattr(execution_stats, name, None)
    return int(value) if isinstance(value, int) and value >= 0 else None


def _interval_count(snapshot: Any, span: tuple[int, int]) -> int:
    """How many of the model's intervals the batch ``span`` covers (at least 1)."""
    unit = getattr(getattr(snapshot, "node", None), "interval_unit", None)
    start, end = span
    try:
        if unit.is_month or unit.is_year:  # not a fixed length: walk the cron
            count, at = 0, start
            while at < end and count < 10_000:
                at = int(unit.cron_next(at).timestamp() * 1000)
                count += 1
            return max(1, count)
        return max(1, round((end - start) / unit.milliseconds))
    except Exception:  # noqa: BLE001 - a figure for the UI, not a reason to fail
        return 1


def _args(audit_error: Any, dialect: str | None) -> dict[str, str]:
    return {
        str(k): v.sql(dialect=dialect) if hasattr(v, "sql") else str(v)
        for k, v in (audit_error.audit_args or {}).items()
        if k != "blocking"
    }


class _RecordingConsole(NoopConsole):
    """A SQLMesh console that forwards run events to an :class:`EventRecorder`."""

    def __init__(self, recorder: EventRecorder) -> None:
        super().__init__()
        self._recorder = recorder
        self._said: set[str] = set()

    def start_evaluation_progress(self, batched_intervals: Any, *args: Any, **kwargs: Any) -> None:
        self._recorder.on_evaluation_start(batched_intervals)

    def start_snapshot_evaluation_progress(self, snapshot: Any, *args: Any, **kwargs: Any) -> None:
        self._recorder.on_snapshot_start(snapshot)

    def update_snapshot_evaluation_progress(
        self,
        snapshot: Any,
        interval: Any,
        batch_idx: int,
        duration_ms: int | None,
        num_audits_passed: int,
        num_audits_failed: int,
        *args: Any,
        execution_stats: Any = None,
        **kwargs: Any,
    ) -> None:
        self._recorder.on_batch_done(
            snapshot,
            interval,
            batch_idx,
            duration_ms,
            num_audits_passed,
            num_audits_failed,
            execution_stats=execution_stats,
        )

    def log_failed_models(self, errors: list[Any]) -> None:
        self._recorder.on_failed(errors)

    def log_skipped_models(self, snapshot_names: set[str]) -> None:
        self._recorder.on_skipped(snapshot_names)

    def log_warning(self, short_message: str, long_message: str | None = None) -> None:
        self._recorder._log("warning", f"SQLMesh: {short_message.strip()}")

    def log_error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._recorder._log("error", f"SQLMesh: {message.strip()}")

    def log_status_update(self, message: str) -> None:
        # "No models are ready to run" is said per pass, even after a pass that evaluated
        # models; the leader's summary says what was due, once.
        text = message.strip()
        if text.startswith("No models are ready to run"):
            self._recorder._log("debug", f"SQLMesh: {text}")
            _, _, ready = text.partition("Next run will be ready at ")
            line = f"SQLMesh: next run will be ready at {ready}"
            if ready and line not in self._said:  # once, however many passes say it
                self._said.add(line)
                self._recorder._log("info", line)
            return
        self._recorder._log("info", f"SQLMesh: {text}")


class _AuditFailureTarget:
    """A SQLMesh notification target receiving every failed audit (blocking or not)."""

    is_configured = True
    notify_on = frozenset({NotificationEvent.AUDIT_FAILURE})

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    def notify_audit_failure(self, audit_error: Any, *args: Any, **kwargs: Any) -> None:
        self._recorder.on_audit_failure(audit_error)
