"""The environment a run executes: does it exist, does it match the project on disk,
which version of each model does it hold (that version is what SQLMesh runs), and
applying a plan when the user allowed it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh import missing_upstream_intervals
from dg_sqlmesh.constants import PROD
from dg_sqlmesh.errors import SQLMeshEnvironmentError, dagster_plan_option, plan_command
from dg_sqlmesh.execution.console import LogFn
from dg_sqlmesh.execution.plan_review import PlanReview, review_mismatch
from dg_sqlmesh.project.description import ProjectDescription

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.execution.settings import SQLMeshProject


class PlanApplicationFailed(Exception):
    """Applying the run's plan failed; what it evaluated is in the console's events."""

    def __init__(self, error: Exception, unapplied: dict[str, str]) -> None:
        super().__init__(str(error))
        self.error = error
        self.unapplied = unapplied  # fqn -> change, as the project on disk differed


def environment_models(context: Context, environment: str) -> set[str]:
    """FQNs of the models promoted in the environment."""
    promoted = context.state_reader.get_environment(environment)
    return {s.name for s in getattr(promoted, "snapshots", [])}


def prepare_environment(
    context: Context,
    resource: SQLMeshProject,
    description: ProjectDescription,
    log: LogFn,
    reviewed: ReviewedPlan | None = None,
) -> tuple[dict[str, str], bool]:
    """Check the environment exists and matches the project; plan it if allowed.

    ``reviewed``: the run applies that reviewed plan (``execution.plan_review``), and only
    it: refused when the project or the environment changed since the review.
    Returns the models whose definition on disk differs from the environment, and
    whether a plan was applied.
    """
    name = resource.environment
    may_plan = resource.apply_plan and (name.lower() != PROD or resource.allow_prod_plan)
    if reviewed is not None:
        check_reviewed(context, resource, description, reviewed)
        may_plan = True
    environment = context.state_reader.get_environment(name)
    if environment is None:
        if not may_plan:
            raise SQLMeshEnvironmentError(
                description=(
                    f"SQLMesh environment '{name}' does not exist in the state of "
                    f"{description.project_dir} (gateway {description.gateway}). Create it with "
                    f"{plan_command(description.project_dir, name)} or set "
                    f"{dagster_plan_option(name)} to let Dagster apply it."
                ),
                allow_retries=False,
            )
        log("info", f"Environment '{name}' does not exist: applying a plan to create it")
        new = {fqn: "new" for fqn, model in context.models.items() if not model.kind.is_external}
        _apply_plan(context, name, new)
        return {}, True

    changed = unapplied_changes(context, environment)
    if changed:
        models = description.models_by_fqn
        listed = [
            f"{models[fqn].name if fqn in models else fqn} ({change})"
            for fqn, change in changed.items()
        ]
        names = ", ".join(listed[:20]) + (
            f" and {len(listed) - 20} more" if len(listed) > 20 else ""
        )
        if may_plan:
            log("warning", f"Project differs from environment '{name}' ({names}): applying a plan")
            _apply_plan(context, name, changed)
            return {}, True
        log(
            "warning",
            f"The project on disk differs from environment '{name}' for {names}. This run "
            "executes what the environment holds; apply a plan "
            f"({plan_command(description.project_dir, name)}) to run the new definitions.",
        )
    return changed, False


@dataclass(frozen=True)
class ReviewedPlan:
    """A plan reviewed in a run of the plan job, which this run applies."""

    run_id: str
    review: PlanReview


def check_reviewed(
    context: Context,
    resource: SQLMeshProject,
    description: ProjectDescription,
    reviewed: ReviewedPlan,
) -> None:
    """Refuse to apply ``reviewed`` unless it is exactly the plan SQLMesh would apply now."""
    name = resource.environment
    review = reviewed.review
    problems = []
    if review.environment != name:
        problems.append(
            f"it is a plan for environment '{review.environment}', and this run executes '{name}'"
        )
    elif name.lower() == PROD and not resource.allow_prod_plan:
        problems.append("it plans prod, which needs SQLMeshResource(allow_prod_plan=True)")
    else:
        names = {fqn: model.name for fqn, model in description.models_by_fqn.items()}
        mismatch = review_mismatch(context, review, names)
        if mismatch:
            problems.append(mismatch)
    if problems:
        raise SQLMeshEnvironmentError(
            description=(
                f"Not applying the plan reviewed in run {reviewed.run_id}: "
                + "; ".join(problems)
                + ". Review the plan again (launch the plan job) and apply that review."
            ),
            allow_retries=False,
        )


def warn_stale_upstreams(
    context: Context,
    environment: str,
    description: ProjectDescription,
    selection: Sequence[str],
    log: LogFn,
) -> None:
    """Warn when a selected model reads an unselected upstream that has missing intervals.

    Dagster's selection is authoritative (SQLMesh is told not to add upstreams), so such a
    model is evaluated on whatever its upstream holds now. Reading the intervals executes
    no model SQL; a failure here only costs the warning.
    """
    models = description.models_by_fqn
    selected = set(selection)
    parents = {
        parent
        for fqn in selection
        for parent in models[fqn].depends_on
        if parent not in selected and parent in models and not models[parent].is_external
    }
    if not parents:
        return
    try:
        stale = missing_upstream_intervals(context, environment, parents)
    except Exception as exc:  # noqa: BLE001 - the warning is best effort
        log("debug", f"Could not check upstream intervals: {exc}")
        return
    for fqn in selection:
        late = [models[p].name for p in models[fqn].depends_on if p in stale]
        if late:
            log(
                "warning",
                f"{models[fqn].name} reads {', '.join(late)}, which has missing intervals and "
                "is not selected in this run: it is evaluated on the upstream data as it is now",
            )


def _apply_plan(context: Context, environment: str, unapplied: dict[str, str]) -> None:
    """Apply SQLMesh's plan for ``environment``, as ``sqlmesh plan`` would.

    The plan evaluates what it needs, selected in the run or not; the console records
    every evaluation, so the run reports each model the plan touched.
    """
    try:
        context.plan(
            environment,
            auto_apply=True,
            no_prompts=True,
            include_unmodified=environment.lower() != PROD,
        )
    except Exception as exc:  # re-raised, with the models the plan did not promote
        raise PlanApplicationFailed(exc, unapplied) from exc


def unapplied_changes(context: Context, environment: object) -> dict[str, str]:
    """Models whose definition on disk differs from the environment: fqn -> "new",
    "changed" or "removed"."""
    promoted = {s.name: s for s in getattr(environment, "snapshots", [])}
    changed: dict[str, str] = {}
    for fqn, model in context.models.items():
        if model.kind.is_external:
            continue
        snapshot = promoted.get(fqn)
        if snapshot is None:
            changed[fqn] = "new"
        elif (
            snapshot.fingerprint.data_hash != model.data_hash
            or snapshot.fingerprint.metadata_hash != model.metadata_hash
        ):
            changed[fqn] = "changed"
    changed.update({name: "removed" for name in promoted if name not in context.models})
    return dict(sorted(changed.items()))


@dataclass(frozen=True)
class HeldVersion:
    """A model as the environment holds it: what SQLMesh runs, whatever is on disk."""

    data_hash: str
    columns: dict[str, str]


def held_versions(
    context: Context, environment: str, fqns: Sequence[str]
) -> dict[str, HeldVersion]:
    """The environment's version of each of ``fqns`` (models changed on disk only: reading
    a snapshot decodes it)."""
    held = context.state_reader.get_environment(environment)
    infos = [s for s in getattr(held, "snapshots", []) if s.name in set(fqns)]
    if not infos:
        return {}
    found = {}
    for snapshot in context.state_reader.get_snapshots(infos).values():
        model: Any = snapshot.model if snapshot.is_model else None
        columns = {
            name: kind.sql(dialect=model.dialect)
            for name, kind in ((model.columns_to_types or {}) if model else {}).items()
        }
        found[snapshot.name] = HeldVersion(snapshot.fingerprint.data_hash, columns)
    return found
