"""``sqlmesh_plan``: SQLMesh's plan for the environment, computed and recorded in the run
for review, not applied. A later run of the assets tagged
``dg_sqlmesh/reviewed_plan: <that run's id>`` applies exactly that plan
(``execution.environment.check_reviewed``)."""

# No `from __future__ import annotations`: Dagster reads the op's resource annotation.

from typing import Any

import dagster as dg

from dg_sqlmesh.constants import REVIEWED_PLAN_TAG
from dg_sqlmesh.definitions.job import op_holding_environment, op_job
from dg_sqlmesh.definitions.resource import SQLMeshResource
from dg_sqlmesh.errors import SQLMeshRunFailure

PLAN_JOB_NAME = "sqlmesh_plan"
REVIEW_KEY = "dg_sqlmesh/plan_review"


@dg.op(
    name="compute_sqlmesh_plan",
    description="Computes SQLMesh's plan for the environment and records it, without applying it.",
)
def _plan_op(context: dg.OpExecutionContext, sqlmesh: SQLMeshResource) -> None:
    # Imported here: only this op needs SQLMesh, so loading definitions never pays for it.
    from dg_sqlmesh.execution.plan_review import review_plan

    description = sqlmesh.describe()
    with op_holding_environment(context, sqlmesh, description):
        review = review_plan(sqlmesh, description)
    names = {fqn: model.name for fqn, model in description.models_by_fqn.items()}
    context.log.info(
        f"SQLMesh's plan for environment '{review.environment}': {len(review.changes)} changed "
        f"model(s), {len(review.backfill)} model(s) to backfill. Apply it by launching the "
        f"assets with the tag {REVIEWED_PLAN_TAG}={context.run_id}"
    )
    context.add_output_metadata(
        {
            "dg_sqlmesh/plan": dg.MetadataValue.md(review.markdown(names)),
            REVIEW_KEY: dg.MetadataValue.json(review.to_dict()),
            "dg_sqlmesh/apply_with_tag": f"{REVIEWED_PLAN_TAG}={context.run_id}",
        }
    )


def sqlmesh_plan_job(
    name: str = PLAN_JOB_NAME, *, environment: str | None = None
) -> dg.JobDefinition:
    """A job computing SQLMesh's plan for the resource's environment, recorded in its run
    (Markdown for the UI, and the review a later apply is checked against)."""
    return op_job(name, _plan_op, environment)


def reviewed_plan_of(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """The plan reviewed in run ``run_id`` of the plan job, as it recorded it."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT).records
    for record in records:
        data = record.event_log_entry.dagster_event.event_specific_data
        metadata = getattr(data, "metadata", None) or {}
        if REVIEW_KEY in metadata:
            return dict(metadata[REVIEW_KEY].value)
    raise SQLMeshRunFailure(
        description=(
            f"The tag {REVIEWED_PLAN_TAG}={run_id} names no reviewed plan: run {run_id} is not a "
            f"successful run of the {PLAN_JOB_NAME} job in this instance. Launch "
            f"{PLAN_JOB_NAME}, review its plan, then tag the run that applies it with that "
            "run's id."
        ),
        allow_retries=False,
    )
