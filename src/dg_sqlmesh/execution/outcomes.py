"""Per-model outcomes of one SQLMesh execution, and every rule that settles them.

The records (:class:`ModelOutcome`, JSON-serialisable) travel from the run's leader to
its other steps. The rules are plain functions over what SQLMesh said
(``execution.events``): :func:`settle` turns one attempt's events into one state per
model, and the others combine attempts (:func:`merge`), pick what a retry may fix
(:func:`transient_failures`) and settle what SQLMesh could not reach.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dg_sqlmesh.errors import ErrorClass, classify_error
from dg_sqlmesh.execution.events import (
    Aborted,
    AuditFailed,
    BatchDone,
    EvaluationStarted,
    Event,
    ModelFailed,
    SelectionResolved,
    Skipped,
    SnapshotStarted,
)
from dg_sqlmesh.project import AuditInfo, ModelInfo


class ModelState(enum.StrEnum):
    """The one state a selected model ends a run in."""

    MATERIALIZED = "materialized"  # evaluated its due intervals
    UP_TO_DATE = "up_to_date"  # nothing was due
    FAILED = "failed"  # evaluation raised
    AUDIT_FAILED = "audit_failed"  # a blocking audit failed
    SKIPPED = "skipped"  # an upstream failed, so SQLMesh did not run it
    NOT_RUN = "not_run"  # SQLMesh never reported it (not in the environment, aborted run)


@dataclass
class AuditOutcome:
    name: str
    blocking: bool
    passed: bool
    args: dict[str, str] = field(default_factory=dict)
    failing_rows: int = 0
    query: str | None = None


@dataclass
class ModelOutcome:
    """What happened to one model. ``intervals`` are ``[start_ms, end_ms)`` pairs."""

    fqn: str
    state: ModelState = ModelState.NOT_RUN
    intervals: list[tuple[int, int]] = field(default_factory=list)
    duration_ms: int = 0
    batches: int = 0
    audits: list[AuditOutcome] = field(default_factory=list)
    error: str | None = None
    error_class: str | None = None
    error_reason: str | None = None
    failed_upstreams: list[str] = field(default_factory=list)
    detail: str | None = None
    unapplied_change: str | None = None  # the project on disk differs: "new", "changed"...
    log: list[list[Any]] = field(default_factory=list)  # [level, message, unix time]
    held_code_version: str | None = None  # the environment's version, when disk differs
    held_columns: dict[str, str] | None = None
    # A partitioned run: per partition of its window, what SQLMesh recorded for this model
    # (``execution.intervals.IntervalTracker.partitions``); None otherwise.
    partitions: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelOutcome:
        values = dict(data)
        values["state"] = ModelState(values["state"])
        values["intervals"] = [tuple(i) for i in values.get("intervals", [])]
        values["audits"] = [AuditOutcome(**a) for a in values.get("audits", [])]
        return cls(**values)


FINISHED = (ModelState.MATERIALIZED, ModelState.UP_TO_DATE)
FAILURES = (ModelState.FAILED, ModelState.AUDIT_FAILED)

NOT_CONSIDERED = (
    "SQLMesh's model selection did not match this model, so SQLMesh did not consider it"
)


@dataclass
class _Replay:
    """One attempt's events, accumulated per model."""

    outcomes: dict[str, ModelOutcome]
    planned: dict[str, int] = field(default_factory=dict)
    run_audits: dict[str, tuple[AuditInfo, ...]] = field(default_factory=dict)
    audit_failures: dict[str, list[AuditFailed]] = field(default_factory=dict)
    considered: frozenset[str] | None = None  # None: SQLMesh never resolved a selection
    evaluation_started: bool = False
    aborted: BaseException | None = None

    def outcome(self, fqn: str) -> ModelOutcome:
        if fqn not in self.outcomes:  # reported although not selected (should not happen)
            self.outcomes[fqn] = ModelOutcome(fqn=fqn)
        return self.outcomes[fqn]

    def apply(self, event: Event) -> None:
        match event:
            case SelectionResolved(fqns=fqns):
                self.considered = fqns
            case EvaluationStarted(planned_batches=planned):
                if self.evaluation_started:
                    # SQLMesh restarted its run (the environment changed under it):
                    # what the first pass skipped can now be evaluated.
                    for outcome in self.outcomes.values():
                        if outcome.state is ModelState.SKIPPED:
                            outcome.state = ModelState.NOT_RUN
                self.evaluation_started = True
                self.planned.update(planned)
            case SnapshotStarted(fqn=fqn, audits=audits) if audits is not None:
                self.run_audits.setdefault(fqn, audits)
            case BatchDone(fqn=fqn, interval=interval, duration_ms=duration_ms):
                outcome = self.outcome(fqn)
                outcome.intervals.append((int(interval[0]), int(interval[1])))
                outcome.duration_ms += duration_ms
                outcome.batches += 1
            case ModelFailed(fqn=fqn, error=error, audits_failed=audits_failed):
                error_class, reason = classify_error(error)
                outcome = self.outcome(fqn)
                outcome.state = ModelState.AUDIT_FAILED if audits_failed else ModelState.FAILED
                outcome.error = str(error)
                outcome.error_class = error_class.value
                outcome.error_reason = reason
            case Skipped(fqn=fqn):
                self.outcome(fqn).state = ModelState.SKIPPED
            case AuditFailed(fqn=fqn):
                self.audit_failures.setdefault(fqn, []).append(event)
            case Aborted(error=error):
                self.aborted = error


def settle(
    events: Iterable[Event], selected: Iterable[str], models: Mapping[str, ModelInfo]
) -> dict[str, ModelOutcome]:
    """Settle every selected model of one attempt in exactly one state.

    Args:
        events: What SQLMesh said during the attempt, in order.
        selected: The FQNs of the models the run selected.
        models: The project's models by FQN (names, upstreams, audits).

    Returns:
        One outcome per selected model (and per model SQLMesh reported besides).
    """
    replay = _Replay({fqn: ModelOutcome(fqn=fqn) for fqn in selected})
    for event in events:
        replay.apply(event)
    failed = {fqn for fqn, o in replay.outcomes.items() if o.state in FAILURES}
    for fqn, outcome in replay.outcomes.items():
        model = models.get(fqn)
        outcome.audits = _audit_outcomes(
            model, outcome, replay.run_audits.get(fqn), replay.audit_failures.get(fqn, [])
        )
        if outcome.state is ModelState.SKIPPED:
            outcome.failed_upstreams = failed_upstreams(fqn, failed, models)
            names = ", ".join(_name(u, models) for u in outcome.failed_upstreams)
            upstream = f"upstream {names}" if names else "an upstream model"
            outcome.detail = f"skipped because {upstream} failed"
        elif outcome.state is ModelState.NOT_RUN:
            _settle_unreported(outcome, replay)
    if replay.aborted is not None:
        error_class, reason = classify_error(replay.aborted)
        for outcome in replay.outcomes.values():  # not run, or only part of its batches
            if outcome.state is ModelState.NOT_RUN:
                outcome.state = ModelState.FAILED
                outcome.error = f"SQLMesh run failed before this model completed: {replay.aborted}"
                outcome.error_class = error_class.value
                outcome.error_reason = reason
    return replay.outcomes


def _settle_unreported(outcome: ModelOutcome, replay: _Replay) -> None:
    """A model SQLMesh neither failed nor skipped: written, up to date, or not run."""
    aborted = replay.aborted
    planned = replay.planned.get(outcome.fqn)
    if outcome.intervals and (aborted is None or outcome.batches >= (planned or 0)):
        # Every due batch was written (and its interval recorded), even if SQLMesh
        # failed afterwards (an ``after_all`` statement, say).
        outcome.state = ModelState.MATERIALIZED
    elif planned is None and (aborted is None or replay.evaluation_started):
        # Nothing was due, if SQLMesh considered the model at all: one its selection
        # did not match was never looked at, and is not up to date for that.
        if replay.considered is not None and outcome.fqn in replay.considered:
            outcome.state = ModelState.UP_TO_DATE
            outcome.detail = "no intervals were due"
        else:
            outcome.detail = NOT_CONSIDERED
    elif aborted is not None:
        outcome.detail = f"SQLMesh stopped before evaluating it: {aborted}"
    else:
        outcome.detail = "intervals were due but SQLMesh did not evaluate them"


def _audit_outcomes(
    model: ModelInfo | None,
    outcome: ModelOutcome,
    run_audits: Sequence[AuditInfo] | None,
    failures: Sequence[AuditFailed],
) -> list[AuditOutcome]:
    """The model's audits as the environment ran them (not the project on disk's)."""
    if model is None:
        return []
    if not (outcome.batches > 0 or outcome.state is ModelState.AUDIT_FAILED):
        return []  # not evaluated: no audit ran
    results = []
    for audit in model.audits if run_audits is None else run_audits:
        matching = [f for f in failures if f.audit == audit.name and f.args == audit.args]
        if not matching:
            results.append(AuditOutcome(audit.name, audit.blocking, True, dict(audit.args)))
            continue
        results.append(
            AuditOutcome(
                name=audit.name,
                blocking=audit.blocking,
                passed=False,
                args=dict(audit.args),
                failing_rows=sum(f.failing_rows for f in matching),
                query=matching[-1].query,
            )
        )
    return results


def failed_upstreams(fqn: str, failed: set[str], models: Mapping[str, ModelInfo]) -> list[str]:
    """The nearest failed models upstream of ``fqn`` (through models that did not fail)."""
    seen: set[str] = set()
    stack = [fqn]
    found = []
    while stack:
        model = models.get(stack.pop())
        for parent in model.depends_on if model else ():
            if parent in seen:
                continue
            seen.add(parent)
            if parent in failed:
                found.append(parent)
            else:
                stack.append(parent)
    return sorted(found)


def _name(fqn: str, models: Mapping[str, ModelInfo]) -> str:
    model = models.get(fqn)
    return model.name if model else fqn


# --- across attempts ------------------------------------------------------------------


def merge_attempts(earlier: ModelOutcome, later: ModelOutcome) -> ModelOutcome:
    """Combine a model's outcomes from a failed attempt and its retry.

    Intervals evaluated in the earlier attempt stay evaluated: a retry only runs what
    is still missing, so "up to date" after a partial success is still a success.
    """
    if (
        earlier.state is ModelState.MATERIALIZED
        and later.state in (ModelState.FAILED, ModelState.NOT_RUN)
        and not later.intervals
    ):
        # The retry stopped (e.g. the database went away) before reaching this model:
        # what the earlier attempt wrote, and recorded in SQLMesh's state, still stands.
        return earlier
    if later.state is ModelState.UP_TO_DATE and earlier.intervals:
        earlier.state = ModelState.MATERIALIZED
        earlier.error = earlier.error_class = earlier.error_reason = None
        return earlier
    if later.state in (ModelState.MATERIALIZED, ModelState.UP_TO_DATE, ModelState.AUDIT_FAILED):
        later.intervals = earlier.intervals + later.intervals
        later.duration_ms += earlier.duration_ms
        later.batches += earlier.batches
        if not later.audits:
            later.audits = earlier.audits
        if later.intervals and later.state is ModelState.UP_TO_DATE:
            later.state = ModelState.MATERIALIZED
        return later
    return later


def merge(
    merged: dict[str, ModelOutcome], outcomes: dict[str, ModelOutcome]
) -> dict[str, ModelOutcome]:
    """Combine every model's outcomes so far with those of the latest attempt."""
    if not merged:
        return outcomes
    return {
        fqn: merge_attempts(merged[fqn], o) if fqn in merged else o for fqn, o in outcomes.items()
    }


def transient_failures(outcomes: Mapping[str, ModelOutcome]) -> list[str]:
    """The failed models worth another attempt: all of them transient, or none.

    A retry runs SQLMesh again on every missing interval, so any persistent failure,
    a blocking audit's included (its interval is not recorded), rules it out.
    """
    if any(o.state is ModelState.AUDIT_FAILED for o in outcomes.values()):
        return []
    failed = [o for o in outcomes.values() if o.state is ModelState.FAILED]
    if failed and all(o.error_class == ErrorClass.TRANSIENT.value for o in failed):
        return [o.fqn for o in failed]
    return []


def retries_exhausted(outcomes: Mapping[str, ModelOutcome], attempts: int) -> None:
    """Say so on every transient failure left once no attempt remains."""
    for fqn in transient_failures(outcomes):
        outcome = outcomes[fqn]
        outcome.error = (
            f"{outcome.error} (transient failure, still failing after {attempts} attempt(s))"
        )


def retry_could_not_start(
    merged: dict[str, ModelOutcome], error: BaseException, attempt: int
) -> dict[str, ModelOutcome]:
    """A retry failed before SQLMesh started (connecting, reading state, loading).

    What the earlier attempts wrote, and SQLMesh recorded, stands; every other model
    fails with the retry's error, classified.
    """
    error_class, reason = classify_error(error)
    for outcome in merged.values():
        if outcome.state in FINISHED:
            continue
        earlier = outcome.error or outcome.detail
        outcome.state = ModelState.FAILED
        outcome.error = f"SQLMesh could not start attempt {attempt}: {type(error).__name__}: " + (
            f"{error} (the previous attempt: {earlier})" if earlier else str(error)
        )
        outcome.error_class = error_class.value
        outcome.error_reason = reason
    return merged


def not_in_environment(fqn: str, environment: str, project_dir: str = "<project>") -> ModelOutcome:
    """A selected model the environment does not hold: never "up to date"."""
    return ModelOutcome(
        fqn=fqn,
        state=ModelState.NOT_RUN,
        detail=(
            f"the model is not in SQLMesh environment '{environment}' yet; "
            f"apply a plan (`sqlmesh -p {project_dir} plan {environment}`) to add it"
        ),
    )
