"""Per-model outcomes of one SQLMesh execution: the records.

A :class:`ModelOutcome` (JSON-serialisable) travels from the run's leader to its other
steps. The rules that settle them are in ``settle`` (one attempt) and ``attempts``
(across attempts, and when SQLMesh could not get to its run).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from dg_sqlmesh.errors import ErrorClass, classify_error


class ModelState(enum.StrEnum):
    """The one state a selected model ends a run in."""

    MATERIALIZED = "materialized"  # evaluated its due intervals
    UP_TO_DATE = "up_to_date"  # nothing was due
    FAILED = "failed"  # evaluation raised
    AUDIT_FAILED = "audit_failed"  # a blocking audit failed
    SKIPPED = "skipped"  # an upstream failed, so SQLMesh did not run it
    NOT_RUN = "not_run"  # SQLMesh never reported it (not in the environment, aborted run)
    # A failed plan wrote the model's new version, which SQLMesh did not promote: the
    # environment still serves the old data, so this is no materialization.
    NOT_PROMOTED = "written_not_promoted"


@dataclass
class AuditOutcome:
    name: str
    blocking: bool
    passed: bool
    args: dict[str, str] = field(default_factory=dict)
    failing_rows: int = 0
    query: str | None = None
    node: str | None = None  # the audited node when not the model (see checks.AUDITED_NODE)


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
    error_class: ErrorClass | None = None
    error_reason: str | None = None
    failed_upstreams: list[str] = field(default_factory=list)
    detail: str | None = None
    unapplied_change: str | None = None  # the project on disk differs: "new", "changed"...
    log: list[list[Any]] = field(default_factory=list)  # [level, message, unix time]
    held_code_version: str | None = None  # the environment's version, when disk differs
    held_columns: dict[str, str] | None = None
    interval_count: int = 0  # the model's intervals the batches covered
    rows_written: int | None = None  # as the engine reported (None: not reported)
    bytes_processed: int | None = None
    row_count: int | None = None  # rows in the table after the run (None: not counted)
    # A partitioned run: per partition of its window, what SQLMesh recorded for this model
    # (``execution.intervals.IntervalTracker.partitions``); None otherwise.
    partitions: dict[str, Any] | None = None
    # A partitioned model: rows of each partition SQLMesh wrote (key -> rows, by the
    # model's time column), counted after the run (``execution.row_counts``).
    partition_rows: dict[str, int] | None = None

    def fail(self, error: BaseException, text: str, *, state: ModelState | None = None) -> None:
        """Record ``error`` (shown as ``text``) with its class and reason, the one way an
        outcome learns why it failed; ``state`` changes the outcome's state too."""
        if state is not None:
            self.state = state
        self.error = text
        self.error_class, self.error_reason = classify_error(error)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        # Plain strings: Dagster's serializer (1.12) refuses enums inside JSON metadata.
        data["error_class"] = self.error_class.value if self.error_class else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelOutcome:
        values = dict(data)
        values["state"] = ModelState(values["state"])
        if values.get("error_class") is not None:
            values["error_class"] = ErrorClass(values["error_class"])
        values["intervals"] = [tuple(i) for i in values.get("intervals", [])]
        values["audits"] = [AuditOutcome(**a) for a in values.get("audits", [])]
        return cls(**values)


def add_reported(total: int | None, more: int | None) -> int | None:
    """Sum a figure the engine may not report (rows, bytes); ``None`` while none was."""
    return total if more is None else (total or 0) + more


FINISHED = (ModelState.MATERIALIZED, ModelState.UP_TO_DATE)
FAILURES = (ModelState.FAILED, ModelState.AUDIT_FAILED)
