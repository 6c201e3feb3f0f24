"""What SQLMesh said during one attempt of a run, recorded as plain events.

The console (``execution.console``) appends these as SQLMesh reports them, deciding
nothing; ``execution.outcomes`` settles every model's state from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dg_sqlmesh.project.description import AuditInfo


@dataclass(frozen=True)
class SelectionResolved:
    """SQLMesh matched a model selection to exactly these models (the last one recorded
    in an attempt is its run's: planning resolves ``*`` before it)."""

    fqns: frozenset[str]


@dataclass(frozen=True)
class EvaluationStarted:
    """SQLMesh starts evaluating; ``planned_batches`` counts the due batches per model.

    SQLMesh starts again when the environment changes under its run (its circuit
    breaker): a second ``EvaluationStarted`` in one attempt is that restart.
    """

    planned_batches: dict[str, int]


@dataclass(frozen=True)
class SnapshotStarted:
    """SQLMesh starts evaluating one model; ``audits`` are the ones the environment runs
    (``None`` when SQLMesh gave no model to read them from)."""

    fqn: str
    audits: tuple[AuditInfo, ...] | None = None


@dataclass(frozen=True)
class BatchDone:
    """One batch was evaluated and its interval written. ``interval`` is ``[start, end)``
    in epoch milliseconds, covering ``intervals`` of the model's interval unit.
    ``rows`` and ``bytes`` are what the engine reported writing (``None``: not reported;
    DuckDB reports neither)."""

    fqn: str
    interval: tuple[int, int]
    batch_index: int
    duration_ms: int
    intervals: int = 1
    rows: int | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class BatchFailed:
    """One batch raised; the model's :class:`ModelFailed` says why."""

    fqn: str
    interval: tuple[int, int]
    batch_index: int


@dataclass(frozen=True)
class ModelFailed:
    """SQLMesh reported the model failed. ``audits_failed`` is set when the error is
    SQLMesh's ``NodeAuditsErrors`` (a blocking audit failed)."""

    fqn: str
    error: BaseException
    audits_failed: bool = False


@dataclass(frozen=True)
class Skipped:
    """SQLMesh skipped the model because an upstream model failed."""

    fqn: str


@dataclass(frozen=True)
class AuditFailed:
    """One audit of the model failed (blocking or not), with its arguments as SQL."""

    fqn: str
    audit: str
    args: dict[str, str] = field(default_factory=dict)
    failing_rows: int = 0
    query: str | None = None


@dataclass(frozen=True)
class Aborted:
    """SQLMesh's ``run`` raised instead of returning."""

    error: BaseException


Event = (
    SelectionResolved
    | EvaluationStarted
    | SnapshotStarted
    | BatchDone
    | BatchFailed
    | ModelFailed
    | Skipped
    | AuditFailed
    | Aborted
)
