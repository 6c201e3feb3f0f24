"""``sqlmesh_janitor``: SQLMesh's janitor as a Dagster job (and an opt-in schedule)."""

# No `from __future__ import annotations`: Dagster reads the op's config annotation.

from typing import TYPE_CHECKING

import dagster as dg

from dg_sqlmesh.definitions.job import op_holding_environment, op_job
from dg_sqlmesh.definitions.resource import SQLMeshResource
from dg_sqlmesh.execution.progress import log_at

if TYPE_CHECKING:
    from dg_sqlmesh.execution.janitor import JanitorReport

JANITOR_JOB_NAME = "sqlmesh_janitor"


class JanitorConfig(dg.Config):
    """What one janitor run does besides SQLMesh's own expiry rules."""

    invalidate_environment: str | None = None
    """A development environment to remove now (a closed pull request's), whatever its
    TTL. Never prod."""
    ignore_ttl: bool = False
    """Also drop the tables of every snapshot no environment uses, however recent
    (``sqlmesh janitor --ignore-ttl``)."""


@dg.op(
    name="run_sqlmesh_janitor",
    description=(
        "Runs SQLMesh's janitor: removes expired environments and unused snapshots' tables."
    ),
)
def _janitor_op(
    context: dg.OpExecutionContext, config: JanitorConfig, sqlmesh: SQLMeshResource
) -> None:
    # Imported here: only this op needs SQLMesh, so loading definitions never pays for it.
    from dg_sqlmesh.execution.janitor import run_janitor

    description = sqlmesh.describe()
    with op_holding_environment(context, sqlmesh, description):
        report = run_janitor(
            sqlmesh,
            log=lambda level, message: log_at(context.log, level, message),
            invalidate=config.invalidate_environment,
            ignore_ttl=config.ignore_ttl,
        )
    context.log.info(report.summary())
    context.add_output_metadata(
        {
            "dg_sqlmesh/janitor": dg.MetadataValue.md(_markdown(report)),
            "dg_sqlmesh/removed_environments": dg.MetadataValue.json(report.environments),
            "dg_sqlmesh/dropped_objects": len(report.objects),
        }
    )


def _markdown(report: "JanitorReport") -> str:
    lines = [f"**{report.summary()}**", ""]
    lines += [f"- environment `{name}`" for name in report.environments]
    lines += [f"- dropped `{name}`" for name in report.objects]
    return "\n".join(lines)


def sqlmesh_janitor_job(
    name: str = JANITOR_JOB_NAME, *, environment: str | None = None
) -> dg.JobDefinition:
    """A job running SQLMesh's janitor on the project's state, holding the environment's
    guard (``execution.guard``) so that it never runs beside a run of that environment.
    Its config can name one environment to remove now (``invalidate_environment``)."""
    return op_job(name, _janitor_op, environment)


def sqlmesh_janitor_schedule(
    job: dg.JobDefinition, cron_schedule: str, *, name: str | None = None
) -> dg.ScheduleDefinition:
    """Run ``job`` (a :func:`sqlmesh_janitor_job`) on ``cron_schedule``."""
    return dg.ScheduleDefinition(
        name=name or f"{job.name}_schedule",
        job=job,
        cron_schedule=cron_schedule,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
