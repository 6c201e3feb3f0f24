"""Capturing SQLMesh's run events: a console and an audit notification target.

SQLMesh reports evaluation progress to its ``Console`` and audit failures (with the
rendered query and failing row count) to its notification targets; both are public
extension points. :class:`EventRecorder` turns them into :class:`ModelOutcome`
records and forwards one log line per evaluated batch as it happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from typing import Any

from sqlmesh.core.console import NoopConsole
from sqlmesh.core.notification_target import NotificationEvent
from sqlmesh.utils.errors import NodeAuditsErrors

from dg_sqlmesh.errors import classify_error
from dg_sqlmesh.execution.outcomes import AuditOutcome, ModelOutcome, ModelState
from dg_sqlmesh.project import AuditInfo, ModelInfo, describe_audits

LogFn = Callable[[str, str], None]  # (level, message)


def _format_ms(ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


class EventRecorder:
    """Collects per-model outcomes of one SQLMesh run from its console and notifications."""

    def __init__(self, models: Mapping[str, ModelInfo], selected: Iterable[str], log: LogFn):
        self._models = models
        self._log = log
        self._lock = threading.Lock()
        self._selected = list(selected)
        self.reset()
        self.console = _RecordingConsole(self)
        self.notification_target = _AuditFailureTarget(self)

    def reset(self) -> None:
        """Forget everything recorded, before another attempt of the same run."""
        self.outcomes: dict[str, ModelOutcome] = {f: ModelOutcome(fqn=f) for f in self._selected}
        self._audit_failures: dict[str, list[Any]] = {}
        self._planned_batches: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._run_audits: dict[str, list[AuditInfo]] = {}  # as the environment has them
        self._sql_cache: dict[Any, Any] = {}
        self.evaluation_started = False

    def _outcome(self, fqn: str) -> ModelOutcome:
        if fqn not in self.outcomes:  # evaluated although not selected (should not happen)
            self.outcomes[fqn] = ModelOutcome(fqn=fqn)
        return self.outcomes[fqn]

    def _name(self, fqn: str) -> str:
        model = self._models.get(fqn)
        return model.name if model else fqn

    # --- console events -------------------------------------------------------------

    def on_evaluation_start(self, batched_intervals: Mapping[Any, list[Any]]) -> None:
        with self._lock:
            if self.evaluation_started:
                # SQLMesh restarts its run when the environment changes under it (its
                # circuit breaker); what the first pass skipped can now be evaluated.
                for outcome in self.outcomes.values():
                    if outcome.state is ModelState.SKIPPED:
                        outcome.state = ModelState.NOT_RUN
            self.evaluation_started = True
            for snapshot, batches in batched_intervals.items():
                self._planned_batches[snapshot.name] = len(batches)
        due = len(self._planned_batches)
        self._log("info", f"SQLMesh: {due} model(s) with intervals due")

    def on_snapshot_start(self, snapshot: Any) -> None:
        # The audits SQLMesh runs are the environment's, which can differ from the
        # project on disk (changes not applied yet): report those, not the disk's.
        model = getattr(snapshot, "model", None)
        audits = None if model is None else describe_audits(model, self._sql_cache)
        with self._lock:
            self._started.setdefault(snapshot.name, time.monotonic())
            if audits is not None:
                self._run_audits.setdefault(snapshot.name, audits)

    def on_batch_done(
        self,
        snapshot: Any,
        interval: tuple[int, int],
        batch_idx: int,
        duration_ms: int | None,
        audits_passed: int,
        audits_failed: int,
    ) -> None:
        fqn = snapshot.name
        total = self._planned_batches.get(fqn, batch_idx + 1)
        name = self._name(fqn)
        window = f"[{_format_ms(interval[0])}, {_format_ms(interval[1])})"
        if duration_ms is None:  # the batch raised; log_failed_models says why
            self._log("warning", f"{name}: batch {batch_idx + 1}/{total} {window} failed")
            return
        with self._lock:
            outcome = self._outcome(fqn)
            outcome.intervals.append((int(interval[0]), int(interval[1])))
            outcome.duration_ms += duration_ms
            outcome.batches += 1
        audits = ""
        if audits_passed or audits_failed:
            audits = f", audits {audits_passed} passed, {audits_failed} failed"
        self._log(
            "info",
            f"{name}: batch {batch_idx + 1}/{total} {window} evaluated in {duration_ms} ms{audits}",
        )

    def on_failed(self, errors: list[Any]) -> None:
        for error in errors:
            node = getattr(error, "node", None)
            fqn = getattr(node, "snapshot_name", None)
            if fqn is None:
                continue
            cause = error.__cause__ or error
            error_class, reason = classify_error(cause)
            # By type: other errors have an ``errors`` attribute too (google-api-core's,
            # pydantic's), and a warehouse error is not an audit failure.
            audit_failed = isinstance(cause, NodeAuditsErrors)
            with self._lock:
                outcome = self._outcome(fqn)
                outcome.state = ModelState.AUDIT_FAILED if audit_failed else ModelState.FAILED
                outcome.error = str(cause)
                outcome.error_class = error_class.value
                outcome.error_reason = reason
            self._log("error", f"{self._name(fqn)} failed ({error_class.value}): {cause}")

    def on_skipped(self, fqns: Iterable[str]) -> None:
        for fqn in fqns:
            with self._lock:
                outcome = self._outcome(fqn)
                outcome.state = ModelState.SKIPPED
            self._log("warning", f"{self._name(fqn)} skipped: an upstream model failed")

    def on_audit_failure(self, audit_error: Any) -> None:
        model = getattr(audit_error, "model", None)
        if model is None:
            return
        with self._lock:
            self._audit_failures.setdefault(model.fqn, []).append(audit_error)

    # --- after the run ----------------------------------------------------------------

    def finish(self, aborted: BaseException | None = None) -> dict[str, ModelOutcome]:
        """Settle every selected model in exactly one state."""
        if aborted is not None:
            self._log("error", f"SQLMesh stopped with an error: {aborted}")
        failed = {
            fqn
            for fqn, o in self.outcomes.items()
            if o.state in (ModelState.FAILED, ModelState.AUDIT_FAILED)
        }
        for fqn, outcome in self.outcomes.items():
            model = self._models.get(fqn)
            outcome.audits = self._audit_outcomes(model, outcome)
            if outcome.state is ModelState.SKIPPED:
                outcome.failed_upstreams = self._failed_upstreams(fqn, failed)
                names = ", ".join(self._name(u) for u in outcome.failed_upstreams)
                upstream = f"upstream {names}" if names else "an upstream model"
                outcome.detail = f"skipped because {upstream} failed"
            elif outcome.state is ModelState.NOT_RUN:
                planned = self._planned_batches.get(fqn)
                if outcome.intervals and (aborted is None or outcome.batches >= (planned or 0)):
                    # Every due batch was written (and its interval recorded), even if
                    # SQLMesh failed afterwards (an ``after_all`` statement, say).
                    outcome.state = ModelState.MATERIALIZED
                elif planned is None and (aborted is None or self.evaluation_started):
                    outcome.state = ModelState.UP_TO_DATE
                    outcome.detail = "no intervals were due"
                elif aborted is not None:
                    outcome.detail = f"SQLMesh stopped before evaluating it: {aborted}"
                else:
                    outcome.detail = "intervals were due but SQLMesh did not evaluate them"
        return self.outcomes

    def _audit_outcomes(self, model: ModelInfo | None, outcome: ModelOutcome) -> list[AuditOutcome]:
        if model is None:
            return []
        failures = self._audit_failures.get(model.fqn, [])
        audited = outcome.batches > 0 or outcome.state is ModelState.AUDIT_FAILED
        if not audited:
            return []
        results = []
        for audit in self._run_audits.get(model.fqn, model.audits):
            matching = [
                f
                for f in failures
                if f.audit_name == audit.name and _args(f, model.dialect) == audit.args
            ]
            if not matching:
                results.append(AuditOutcome(audit.name, audit.blocking, True, dict(audit.args)))
                continue
            results.append(
                AuditOutcome(
                    name=audit.name,
                    blocking=audit.blocking,
                    passed=False,
                    args=dict(audit.args),
                    failing_rows=sum(int(f.count) for f in matching),
                    query=matching[-1].sql(pretty=True),
                )
            )
        return results

    def _failed_upstreams(self, fqn: str, failed: set[str]) -> list[str]:
        seen: set[str] = set()
        stack = [fqn]
        found = []
        while stack:
            model = self._models.get(stack.pop())
            for parent in model.depends_on if model else ():
                if parent in seen:
                    continue
                seen.add(parent)
                if parent in failed:
                    found.append(parent)
                else:
                    stack.append(parent)
        return sorted(found)


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
        **kwargs: Any,
    ) -> None:
        self._recorder.on_batch_done(
            snapshot, interval, batch_idx, duration_ms, num_audits_passed, num_audits_failed
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
        self._recorder._log("info", f"SQLMesh: {message.strip()}")


class _AuditFailureTarget:
    """A SQLMesh notification target receiving every failed audit (blocking or not)."""

    is_configured = True
    notify_on = frozenset({NotificationEvent.AUDIT_FAILURE})

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder

    def notify_audit_failure(self, audit_error: Any, *args: Any, **kwargs: Any) -> None:
        self._recorder.on_audit_failure(audit_error)
