"""Across attempts: combine a run's attempts, pick what a retry may fix, and settle what
SQLMesh could not reach (a retry that could not start, a model the environment lacks, a
plan that failed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dg_sqlmesh.errors import (
    ErrorClass,
    SQLMeshRunFailure,
    cause_chain,
    plain_text,
    plan_command,
)
from dg_sqlmesh.execution.outcomes import (
    FAILURES,
    FINISHED,
    ModelOutcome,
    ModelState,
    add_reported,
)
from dg_sqlmesh.metadata import RUN


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
        later.interval_count += earlier.interval_count
        later.rows_written = add_reported(later.rows_written, earlier.rows_written)
        later.bytes_processed = add_reported(later.bytes_processed, earlier.bytes_processed)
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
    if failed and all(o.error_class is ErrorClass.TRANSIENT for o in failed):
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
    for outcome in merged.values():
        if outcome.state in FINISHED:
            continue
        earlier = outcome.error or outcome.detail
        text = f"SQLMesh could not start attempt {attempt}: {type(error).__name__}: " + (
            f"{error} (the previous attempt: {earlier})" if earlier else str(error)
        )
        outcome.fail(error, text, state=ModelState.FAILED)
    return merged


def not_in_environment(fqn: str, environment: str, project_dir: str = "<project>") -> ModelOutcome:
    """A selected model the environment does not hold: never "up to date"."""
    return ModelOutcome(
        fqn=fqn,
        state=ModelState.NOT_RUN,
        detail=(
            f"the model is not in SQLMesh environment '{environment}' yet; "
            f"apply a plan ({plan_command(project_dir, environment)}) to add it"
        ),
    )


def failed_plan(
    outcomes: dict[str, ModelOutcome],
    error: BaseException,
    planned: set[str] | None,
    unapplied: Mapping[str, str],
    names: Mapping[str, str],
) -> dict[str, ModelOutcome] | None:
    """The run's plan failed: each model as the plan left it, or ``None`` when the plan
    failed on no model (then the run could not start, and says why once).

    ``outcomes`` are settled from the plan's events (the failed models, their skipped
    downstream, the intervals it wrote), ``planned`` the models the plan was to evaluate
    (``None``: it failed before evaluating any). A model the plan had nothing to do for
    is up to date when the environment already held its definition; every other model
    was not run, and says which failure stopped it.
    """
    failed = sorted(names.get(o.fqn, o.fqn) for o in outcomes.values() if o.state in FAILURES)
    if not failed:
        return None
    because = f"the plan this run applied failed ({', '.join(failed)}: {error})"
    for outcome in outcomes.values():
        if outcome.state is ModelState.MATERIALIZED and outcome.fqn in unapplied:
            outcome.state = ModelState.NOT_PROMOTED
            outcome.detail = (
                f"written by the plan this run applied, but {because}: the environment does "
                "not serve this version (SQLMesh promotes a plan only when all of it succeeds)"
            )
        if outcome.state is ModelState.UP_TO_DATE:
            outcome.detail = f"no intervals were due; {because}"
        if outcome.state is not ModelState.NOT_RUN:
            continue
        if planned is not None and outcome.fqn not in planned and outcome.fqn not in unapplied:
            outcome.state = ModelState.UP_TO_DATE
            outcome.detail = f"no intervals were due; {because}"
        else:
            outcome.detail = f"SQLMesh did not run it: {because}"
    return outcomes


def startup_failure(
    exc: Exception,
    key: str,
    project_dir: str,
    classified: tuple[ErrorClass, str],
    attempt: int,
    failed_models: Sequence[str] = (),
) -> SQLMeshRunFailure:
    """The run could not get to SQLMesh's ``run`` (connecting, reading state, planning)."""
    error_class, reason = classified
    attempts = attempt + 1
    retried = (
        f", still failing after {attempts} attempt(s)"
        if error_class is ErrorClass.TRANSIENT
        else ""
    )
    hint = ""
    if "(local) is using version" in str(exc):  # SQLMesh's check of the state's versions
        hint = (
            " The project's SQLMesh state was written by a newer SQLMesh: install that "
            "version where Dagster runs."
            if "which is behind" in str(exc)
            else " The project's SQLMesh state was written by an older SQLMesh: migrate it "
            f"with `sqlmesh -p {project_dir} migrate`."
        )
    # SQLMesh's PlanError says only "Plan application failed."; the why is in its causes.
    causes = [c for c in list(cause_chain(exc))[1:6] if str(c).strip() and str(c) not in str(exc)][
        :2
    ]
    because = "".join(f" Caused by {type(c).__name__}: {str(c).strip()}" for c in causes)
    because += "".join(f"\n- {failure}" for failure in failed_models)
    return SQLMeshRunFailure(
        description=(
            f"SQLMesh could not start for {key} ({error_class.value}{retried}): "
            + plain_text(f"{type(exc).__name__}: {exc}{because}{hint}")
        ),
        metadata={
            RUN.error_class: error_class.value,
            RUN.error_reason: reason,
            RUN.retryable: error_class is ErrorClass.TRANSIENT,
            RUN.attempts: attempts,
        },
        allow_retries=False,
    )
