"""Per-model outcome records of one SQLMesh execution (JSON-serialisable)."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


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
