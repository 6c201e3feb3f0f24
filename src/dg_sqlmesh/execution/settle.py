"""Settle one attempt: what SQLMesh said (``execution.events``) -> one state per model.

Plain functions over the recorded events; the records are in ``outcomes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dg_sqlmesh.errors import plain_text
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
from dg_sqlmesh.execution.outcomes import (
    FAILURES,
    AuditOutcome,
    ModelOutcome,
    ModelState,
    add_reported,
)
from dg_sqlmesh.project.description import AuditInfo, ModelInfo

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
                outcome.interval_count += event.intervals
                outcome.rows_written = add_reported(outcome.rows_written, event.rows)
                outcome.bytes_processed = add_reported(outcome.bytes_processed, event.bytes)
            case ModelFailed(fqn=fqn, error=error, audits_failed=audits_failed):
                state = ModelState.AUDIT_FAILED if audits_failed else ModelState.FAILED
                self.outcome(fqn).fail(error, plain_text(error), state=state)
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
        for outcome in replay.outcomes.values():  # not run, or only part of its batches
            if outcome.state is ModelState.NOT_RUN:
                outcome.fail(
                    replay.aborted,
                    f"SQLMesh run failed before this model completed: {replay.aborted}",
                    state=ModelState.FAILED,
                )
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


def planned_models(events: Iterable[Event]) -> set[str] | None:
    """The models SQLMesh set out to evaluate (``None``: it never started evaluating)."""
    planned: set[str] | None = None
    for event in events:
        if isinstance(event, EvaluationStarted):
            planned = (planned or set()) | set(event.planned_batches)
    return planned
