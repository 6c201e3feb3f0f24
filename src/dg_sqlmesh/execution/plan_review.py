"""Plans reviewed before they are applied: SQLMesh's plan for an environment, computed
without applying it, and the check that a later apply is still that plan.

A review records the project it was computed from (each model's snapshot identifier,
which changes with its code, its upstream and its config) and the environment's plan at
the time. Applying a reviewed plan is refused when either differs: the plan SQLMesh would
apply is then not the one reviewed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh_run import quiet_console
from dg_sqlmesh.constants import PROD
from dg_sqlmesh.errors import plan_command
from dg_sqlmesh.project.changes import plan_changes
from dg_sqlmesh.project.description import ProjectDescription

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.execution.settings import SQLMeshProject


@dataclass
class PlanReview:
    """SQLMesh's plan for ``environment``, as reviewed."""

    environment: str
    previous_plan_id: str | None  # the environment's plan when reviewed (None: no environment)
    versions: dict[str, str]  # model FQN -> snapshot identifier, the project reviewed
    changes: dict[str, str] = field(default_factory=dict)  # FQN -> category, changed only
    backfill: dict[str, list[list[int]]] = field(default_factory=dict)  # FQN -> [start, end) ms
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanReview:
        return cls(**data)

    def markdown(self, names: dict[str, str]) -> str:
        """What the UI shows: each changed model with its category and what it backfills."""
        lines = [f"**SQLMesh plan for environment `{self.environment}`** (not applied)", ""]
        if not self.changes and not self.backfill:
            lines.append("No changes and nothing to backfill: the environment matches the project.")
        if self.changes:
            lines += ["| model | change | intervals to backfill |", "|---|---|---|"]
            for fqn, category in sorted(self.changes.items()):
                lines.append(f"| {names.get(fqn, fqn)} | {category} | {self._spans(fqn)} |")
        others = sorted(set(self.backfill) - set(self.changes))
        if others:
            lines += ["", "Unchanged models with intervals to backfill:", ""]
            lines += [f"- {names.get(fqn, fqn)}: {self._spans(fqn)}" for fqn in others]
        lines += ["", f"Reproduce it: `{self.command}`"]
        return "\n".join(lines)

    def _spans(self, fqn: str) -> str:
        def day(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")

        spans = self.backfill.get(fqn, [])
        return ", ".join(f"[{day(s)}, {day(e)})" for s, e in spans) or "none"


def review_plan(project: SQLMeshProject, description: ProjectDescription) -> PlanReview:
    """SQLMesh's plan for the project's environment, computed and not applied."""
    context: Any = project.create_context(console=quiet_console())
    try:
        environment = project.environment
        plan = context.plan_builder(
            environment, include_unmodified=environment.lower() != PROD, skip_tests=True
        ).build()
        diff = plan.context_diff
        changes = plan_changes(plan)
        backfill = {
            entry.snapshot_id.name: [list(span) for span in _merged(entry.intervals)]
            for entry in plan.missing_intervals
        }
        return PlanReview(
            environment=environment,
            previous_plan_id=diff.previous_plan_id,
            versions=current_versions(context),
            changes=changes,
            backfill=backfill,
            command=plan_command(description.project_dir, environment).strip("`"),
        )
    finally:
        context.close()


def current_versions(context: Context) -> dict[str, str]:
    """Each model's snapshot identifier as the project on disk defines it."""
    return {name: s.snapshot_id.identifier for name, s in sorted(context.snapshots.items())}


def review_mismatch(context: Context, review: PlanReview, names: dict[str, str]) -> str | None:
    """Why applying now would not apply ``review``'s plan, or None when it would."""
    problems = []
    now = current_versions(context)
    edited = sorted(
        names.get(fqn, fqn)
        for fqn in set(now) | set(review.versions)
        if now.get(fqn) != review.versions.get(fqn)
    )
    if edited:
        shown = ", ".join(edited[:10]) + (
            f" and {len(edited) - 10} more" if len(edited) > 10 else ""
        )
        problems.append(f"the project changed since the review ({shown})")
    environment = context.state_reader.get_environment(review.environment)
    plan_id = environment.plan_id if environment is not None else None
    if plan_id != review.previous_plan_id:
        problems.append(
            f"environment '{review.environment}' changed since the review (another plan was "
            "applied to it)"
        )
    return "; ".join(problems) or None


def _merged(intervals: Any) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and merged[-1][1] >= start:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]
