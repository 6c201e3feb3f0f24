"""``sqlmesh_job``: one job selecting the SQLMesh assets."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import dagster as dg

from dg_sqlmesh.constants import ENVIRONMENT_TAG, JOB_NAME, NO_RUN_RETRY_TAGS
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.execution.guard import hold_project_environment
from dg_sqlmesh.execution.progress import log_at
from dg_sqlmesh.execution.settings import SQLMeshProject
from dg_sqlmesh.project.description import ProjectDescription


def sqlmesh_job(
    assets: Sequence[dg.AssetsDefinition],
    name: str = JOB_NAME,
    *,
    environment: str | None = None,
    executor_def: dg.ExecutorDefinition | None = None,
) -> dg.UnresolvedAssetJobDefinition:
    """A job selecting all the given SQLMesh assets, with run retries off for failures.

    Its runs carry the tag ``dg_sqlmesh/environment`` so that Dagster's run queue can cap
    concurrent runs of one SQLMesh environment across machines. Without ``executor_def``
    it runs on the executor of the ``Definitions`` it is in.
    """
    keys = [key for a in assets if a.is_executable for key in a.keys]
    _one_partitions_def(assets, name)
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*keys),
        tags=run_tags(environment),
        executor_def=executor_def,
        description="Runs the selected SQLMesh models, executing SQLMesh once per run.",
    )


def run_tags(environment: str | None) -> dict[str, str]:
    """The tags of every run of our jobs: no run retries of failures (SQLMesh retries what
    is transient itself), and the environment, for the run queue's tag limits."""
    tags = dict(NO_RUN_RETRY_TAGS)
    if environment:
        tags[ENVIRONMENT_TAG] = environment
    return tags


def op_holding_environment(
    context: dg.OpExecutionContext, sqlmesh: SQLMeshProject, description: ProjectDescription
) -> contextlib.AbstractContextManager[None]:
    """The environment's guard for an op of ours (plan, janitor), logging to its run."""
    return hold_project_environment(
        context.instance,
        context.run_id,
        sqlmesh,
        description,
        log=lambda level, message: log_at(context.log, level, message),
    )


def op_job(name: str, op: dg.OpDefinition, environment: str | None) -> dg.JobDefinition:
    """A job of the one ``op`` (the plan and janitor jobs), tagged as our runs are."""
    return dg.GraphDefinition(name=name, node_defs=[op]).to_job(
        tags=run_tags(environment), description=op.description
    )


def _one_partitions_def(assets: Sequence[dg.AssetsDefinition], job_name: str) -> None:
    """A Dagster asset job admits one partitions definition: say which models differ."""
    by_def: dict[Any, list[str]] = {}
    for asset in assets:
        for key in asset.keys:
            partitions_def = asset.specs_by_key[key].partitions_def
            if partitions_def is not None:
                by_def.setdefault(partitions_def, []).append(key.to_user_string())
    if len(by_def) > 1:
        groups = "; ".join(f"{d}: {', '.join(sorted(k)[:5])}" for d, k in by_def.items())
        raise SQLMeshDefinitionError(
            f"The partitioned SQLMesh models have {len(by_def)} different partitions "
            f"definitions, and the Dagster job {job_name} can hold one: {groups}. Give the "
            "partitioned models one interval unit and one start (model_defaults.start), tag the "
            "others 'dagster:partitioned:false', or build your own jobs from "
            "sqlmesh_assets_factory (one per partitions definition)."
        )
