"""One Dagster asset per SQLMesh model, and the factories users call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from dg_sqlmesh.execution.step import sqlmesh_step
from dg_sqlmesh.executor import sqlmesh_executor
from dg_sqlmesh.freshness import with_cron_freshness
from dg_sqlmesh.resource import SQLMeshResource, SQLMeshResultsResource
from dg_sqlmesh.specs import SQLMeshAssetGraph, build_asset_graph, resolve_translator
from dg_sqlmesh.translator import SQLMeshTranslator

JOB_NAME = "sqlmesh_job"

# Persistent failures must never be retried blindly: a failed step does not make
# Dagster's run-retry daemon re-launch the run (transient errors are retried inside
# the run's SQLMesh execution instead, with backoff).
NO_RUN_RETRY_TAGS = {"dagster/retry_on_asset_or_op_failure": "false"}

# For runs that choose the multiprocess executor: every step is a process that imports
# Dagster and SQLMesh; forking them from a server that has imported both already makes a
# step that only reports its model cost little more than a trivial asset step.
FORKSERVER_RUN_CONFIG = {
    "execution": {
        "config": {
            "multiprocess": {
                "start_method": {
                    "forkserver": {"preload_modules": ["dagster", "sqlmesh", "dg_sqlmesh"]}
                }
            }
        }
    }
}


def default_pool(environment: str) -> str:
    """The Dagster pool of the SQLMesh ops of ``environment``: ``sqlmesh_<environment>``."""
    return f"sqlmesh_{environment}"


def build_assets(
    graph: SQLMeshAssetGraph,
    *,
    op_tags: Mapping[str, Any] | None = None,
    pool: str | None = None,
) -> list[dg.AssetsDefinition]:
    """An ``AssetsDefinition`` (its own op and step) per model of ``graph``, and one
    without a step per EMBEDDED model (lineage only: SQLMesh never writes it).

    Every op is in ``pool`` (unless ``op_tags`` name a ``dagster/concurrency_key``, the
    older spelling of a pool), so that a pool limit reaches runs launched from anywhere.
    """
    if op_tags and "dagster/concurrency_key" in op_tags:
        pool = None
    lineage_only = [dg.AssetsDefinition(specs=[spec]) for spec in graph.embedded_specs.values()]
    return [_model_asset(graph, fqn, op_tags, pool) for fqn in graph.specs] + lineage_only


def _model_asset(
    graph: SQLMeshAssetGraph, fqn: str, op_tags: Mapping[str, Any] | None, pool: str | None
) -> dg.AssetsDefinition:
    model = graph.model(fqn)
    # A backfill of a partition range is one run, so SQLMesh runs once for the whole range.
    partitioned = graph.specs[fqn].partitions_def is not None
    backfill_policy = dg.BackfillPolicy.single_run() if partitioned else None

    @dg.multi_asset(
        name=graph.op_names[fqn],
        specs=[graph.specs[fqn]],
        check_specs=graph.check_specs[fqn],
        op_tags={"sqlmesh/model": model.name, **(op_tags or {})},
        pool=pool,
        required_resource_keys={"sqlmesh", "sqlmesh_results"},
        can_subset=True,  # makes check outputs optional: audits that did not run report nothing
        backfill_policy=backfill_policy,
    )
    def _asset(context):  # noqa: ANN001, ANN202 - Dagster reads the hint; keep it bare
        yield from sqlmesh_step(context, graph, fqn)

    return _asset


def sqlmesh_assets_factory(
    *,
    sqlmesh_resource: SQLMeshResource,
    translator: SQLMeshTranslator | None = None,
    external_asset_mapping: str | None = None,
    group_name: str | None = None,
    op_tags: Mapping[str, Any] | None = None,
    owners: Sequence[str] | None = None,
    automation_from_cron: bool = False,
    pool: str | bool = True,
    freshness_from_cron: bool = False,
    partitioned: bool = False,
) -> list[dg.AssetsDefinition]:
    """Asset definitions for every model of a SQLMesh project, one asset per model.

    Loading reads the cached project description when the project's files have not
    changed, and never connects to the warehouse. The assets need the resources
    ``sqlmesh`` (a :class:`SQLMeshResource`) and ``sqlmesh_results``. With
    ``automation_from_cron`` every asset gets an automation condition following its
    model's SQLMesh cron (``dg_sqlmesh.automation.cron_automation_condition``).
    With ``freshness_from_cron`` every asset gets a freshness policy from its model's cron
    (``dg_sqlmesh.freshness``). Every op is in the Dagster pool ``pool`` (``True``:
    ``sqlmesh_<environment>``; ``False``: none); a limit of 1 on it with
    ``concurrency: pools: granularity: run`` makes Dagster queue a second run of the
    environment (see the README). With ``partitioned`` every ``INCREMENTAL_BY_TIME_RANGE``
    model with a fixed start is a time-partitioned asset, one partition per SQLMesh interval
    (``dg_sqlmesh.partitions``; the model tag ``dagster:partitioned:true|false`` decides for
    one model), and a backfill of a partition range runs SQLMesh once for that range.

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> assets = sqlmesh_assets_factory(sqlmesh_resource=resource)  # doctest: +SKIP
    """
    resolved = resolve_translator(translator, external_asset_mapping)
    if automation_from_cron:
        from dg_sqlmesh.automation import with_cron_automation

        resolved = with_cron_automation(resolved)
    if freshness_from_cron:
        resolved = with_cron_freshness(resolved)
    graph = build_asset_graph(
        sqlmesh_resource.describe(),
        resolved,
        group_name=group_name,
        owners=list(owners) if owners else None,
        partitioned=partitioned,
    )
    if pool is True:
        pool = default_pool(sqlmesh_resource.environment)
    return build_assets(graph, op_tags=op_tags, pool=pool or None)


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
    tags = dict(NO_RUN_RETRY_TAGS)
    if environment:
        tags["dg_sqlmesh/environment"] = environment
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*keys),
        tags=tags,
        executor_def=executor_def,
        description="Runs the selected SQLMesh models, executing SQLMesh once per run.",
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
        from dg_sqlmesh.errors import SQLMeshDefinitionError

        groups = "; ".join(f"{d}: {', '.join(sorted(k)[:5])}" for d, k in by_def.items())
        raise SQLMeshDefinitionError(
            f"The partitioned SQLMesh models have {len(by_def)} different partitions "
            f"definitions, and the Dagster job {job_name} can hold one: {groups}. Give the "
            "partitioned models one interval unit and one start (model_defaults.start), tag the "
            "others 'dagster:partitioned:false', or build your own jobs from "
            "sqlmesh_assets_factory (one per partitions definition)."
        )


def sqlmesh_definitions_factory(
    *,
    project_dir: str | Sequence[str],
    gateway: str | None = None,
    environment: str = "prod",
    translator: SQLMeshTranslator | None = None,
    external_asset_mapping: str | None = None,
    group_name: str | None = None,
    op_tags: Mapping[str, Any] | None = None,
    owners: Sequence[str] | None = None,
    schedule_name: str = "sqlmesh_adaptive_schedule",
    enable_schedule: bool = False,
    automation_from_cron: bool = False,
    apply_plan: bool = False,
    allow_prod_plan: bool = False,
    cache_dir: str | None = None,
    pool: str | bool = True,
    executor: dg.ExecutorDefinition | None = sqlmesh_executor,
    freshness_from_cron: bool = False,
    partitioned: bool = False,
) -> dg.Definitions:
    """Dagster definitions for a SQLMesh project: assets, ``sqlmesh_job``, resources.

    ``project_dir`` is the project folder; for a multi-repo project, the repo folders
    (a list) or their parent folder. ``enable_schedule`` adds the adaptive schedule
    (``dg_sqlmesh.schedules``), which runs the due models on the project's finest cron;
    ``automation_from_cron`` instead gives each asset an automation condition following
    its own cron. Pick one of the two.

    ``executor`` is the code location's default executor, used by "Materialize" in the UI
    as well as by ``sqlmesh_job``. The default, :data:`~dg_sqlmesh.sqlmesh_executor`, runs
    in one process unless a run's config picks ``multiprocess`` (a SQLMesh step that only
    reports its model then costs no process start nor code-location load). Pass ``None``
    to leave the choice to ``Definitions`` you merge these with (``Definitions.merge``
    refuses two different executors), or any executor definition.

    ``partitioned`` makes the time-incremental models time-partitioned assets (see
    :func:`sqlmesh_assets_factory`); off by default.

    Example:
        >>> defs = sqlmesh_definitions_factory(  # doctest: +SKIP
        ...     project_dir="examples/shop",
        ...     environment="prod",
        ...     external_asset_mapping="raw/{node.schema}/{node.name}",
        ... )
    """
    if enable_schedule and automation_from_cron:
        from dg_sqlmesh.errors import SQLMeshDefinitionError

        raise SQLMeshDefinitionError(
            "enable_schedule and automation_from_cron both run the models on their cron, so "
            "every model would run twice. Pick one: the adaptive schedule "
            "(enable_schedule=True) or per-model automation conditions (automation_from_cron=True)."
        )
    from dg_sqlmesh.project_dirs import split_project_dirs

    first_dir, other_dirs = split_project_dirs(project_dir)
    resource = SQLMeshResource(
        project_dir=first_dir,
        additional_project_dirs=other_dirs,
        gateway=gateway,
        environment=environment,
        apply_plan=apply_plan,
        allow_prod_plan=allow_prod_plan,
        cache_dir=cache_dir,
    )
    assets = sqlmesh_assets_factory(
        sqlmesh_resource=resource,
        translator=translator,
        external_asset_mapping=external_asset_mapping,
        group_name=group_name,
        op_tags=op_tags,
        owners=owners,
        automation_from_cron=automation_from_cron,
        pool=pool,
        freshness_from_cron=freshness_from_cron,
        partitioned=partitioned,
    )
    job = sqlmesh_job(assets, environment=environment)
    schedules = []
    if enable_schedule:
        from dg_sqlmesh.schedules import sqlmesh_adaptive_schedule_factory

        schedules.append(
            sqlmesh_adaptive_schedule_factory(
                sqlmesh_resource=resource,
                name=schedule_name,
                job_name=job.name,
                translator=translator,
                external_asset_mapping=external_asset_mapping,
                partitioned=partitioned,
            )
        )
    sensors = []
    if any(asset.partitions_def is not None for asset in assets):
        from dg_sqlmesh.partition_status import sqlmesh_partition_status_sensor

        graph = build_asset_graph(
            resource.describe(),
            resolve_translator(translator, external_asset_mapping),
            partitioned=partitioned,
        )
        sensors.append(
            sqlmesh_partition_status_sensor(
                sqlmesh_resource=resource, asset_graph=graph, job_name=job.name
            )
        )
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        schedules=schedules,
        sensors=sensors,
        resources={"sqlmesh": resource, "sqlmesh_results": SQLMeshResultsResource()},
        executor=executor,
    )
