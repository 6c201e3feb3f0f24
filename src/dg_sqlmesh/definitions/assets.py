"""One Dagster asset per SQLMesh model, and the factories users call."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from dg_sqlmesh.constants import ENVIRONMENT_TAG, JOB_NAME, NO_RUN_RETRY_TAGS
from dg_sqlmesh.definitions.executor import sqlmesh_executor
from dg_sqlmesh.definitions.options import (
    AssetOptions,
    DefinitionsOptions,
    options_doc,
    parse_options,
)
from dg_sqlmesh.definitions.resource import SQLMeshResource, SQLMeshResultsResource
from dg_sqlmesh.definitions.step import sqlmesh_step
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.project.description import ProjectDescription
from dg_sqlmesh.project.dirs import split_project_dirs
from dg_sqlmesh.scheduling.partition_status import sqlmesh_partition_status_sensor
from dg_sqlmesh.scheduling.schedules import sqlmesh_adaptive_schedule_factory
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph, build_asset_graph, resolve_translator
from dg_sqlmesh.translation.translator import SQLMeshTranslator


@contextlib.contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """Pause CPython's cycle collector while the definitions are built.

    Building a project's definitions allocates millions of short-lived objects (Dagster
    builds an op, its outputs and their types per model), which triggers full
    collections; each walks every live object, the project description's included, and
    almost none of it is cyclic garbage. At 5000 models those walks were 15% of the load
    (``benchmarks/run.py --only load``). The collector runs again as soon as the build is
    done, and the collection that is due then frees whatever cycles the build left.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
    lineage_only = [
        dg.AssetsDefinition(specs=[spec])
        for spec in [*graph.embedded_specs.values(), *graph.external_specs.values()]
    ]
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
        op_tags={MODEL.model: model.name, **(op_tags or {})},
        pool=pool,
        required_resource_keys={"sqlmesh", "sqlmesh_results"},
        can_subset=True,  # makes check outputs optional: audits that did not run report nothing
        backfill_policy=backfill_policy,
    )
    def _asset(context):  # noqa: ANN001, ANN202 - Dagster reads the hint; keep it bare
        yield from sqlmesh_step(context, graph, fqn)

    return _asset


def options_asset_graph(
    description: ProjectDescription,
    translator: SQLMeshTranslator | None,
    options: AssetOptions,
) -> SQLMeshAssetGraph:
    """The asset graph of ``description`` for a factory's translator and options."""
    resolved = resolve_translator(
        translator,
        options.external_asset_mapping,
        automation_from_cron=options.automation_from_cron,
        freshness_from_cron=options.freshness_from_cron,
    )
    return build_asset_graph(
        description,
        resolved,
        group_name=options.group_name,
        owners=options.owners or None,
        partitioned=options.partitioned,
    )


def sqlmesh_assets_factory(
    *,
    sqlmesh_resource: SQLMeshResource,
    translator: SQLMeshTranslator | None = None,
    **options: Any,
) -> list[dg.AssetsDefinition]:
    """Asset definitions for every model of a SQLMesh project, one asset per model.

    Loading reads the cached project description when the project's files have not
    changed, and never connects to the warehouse. The assets need the resources
    ``sqlmesh`` (a :class:`SQLMeshResource`) and ``sqlmesh_results``. With
    ``automation_from_cron`` every asset gets an automation condition following its
    model's SQLMesh cron (``dg_sqlmesh.translation.automation.cron_automation_condition``).
    With ``freshness_from_cron`` every asset gets a freshness policy from its model's cron
    (``dg_sqlmesh.translation.freshness``). Every op is in the Dagster pool ``pool`` (``True``:
    ``sqlmesh_<environment>``; ``False``: none); a limit of 1 on it with
    ``concurrency: pools: granularity: run`` makes Dagster queue a second run of the
    environment (see the README).

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> assets = sqlmesh_assets_factory(sqlmesh_resource=resource)  # doctest: +SKIP

    ``**options`` are those of :class:`~dg_sqlmesh.definitions.options.AssetOptions`:
    """
    parsed = parse_options(
        AssetOptions, options, "sqlmesh_assets_factory", ("sqlmesh_resource", "translator")
    )
    with cycle_collection_paused():
        graph = options_asset_graph(sqlmesh_resource.describe(), translator, parsed)
        return _assets(graph, parsed, sqlmesh_resource.environment)


def build_sqlmesh_asset_specs(
    *,
    sqlmesh_resource: SQLMeshResource,
    translator: SQLMeshTranslator | None = None,
    **options: Any,
) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """The asset specs of every model and the check specs of their audits, nothing else.

    The same specs :func:`sqlmesh_assets_factory` builds its assets from (the same
    translator and options), for a Dagster definition of your own: external assets
    materialized elsewhere, a multi-asset of your own, a look at what Dagster would see.

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> specs, checks = build_sqlmesh_asset_specs(sqlmesh_resource=resource)  # doctest: +SKIP
        >>> defs = dg.Definitions(assets=specs, asset_checks=[])  # doctest: +SKIP

    ``**options`` are those of :class:`~dg_sqlmesh.definitions.options.AssetOptions`:
    """
    parsed = parse_options(
        AssetOptions, options, "build_sqlmesh_asset_specs", ("sqlmesh_resource", "translator")
    )
    graph = options_asset_graph(sqlmesh_resource.describe(), translator, parsed)
    checks = [spec for specs in graph.check_specs.values() for spec in specs]
    return [
        *graph.specs.values(),
        *graph.embedded_specs.values(),
        *graph.external_specs.values(),
    ], checks


def _assets(
    graph: SQLMeshAssetGraph, options: AssetOptions, environment: str
) -> list[dg.AssetsDefinition]:
    pool = default_pool(environment) if options.pool is True else options.pool or None
    return build_assets(graph, op_tags=options.op_tags, pool=pool)


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
        tags[ENVIRONMENT_TAG] = environment
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
    translator: SQLMeshTranslator | None = None,
    executor: dg.ExecutorDefinition | None = sqlmesh_executor,
    **options: Any,
) -> dg.Definitions:
    """Dagster definitions for a SQLMesh project: assets, ``sqlmesh_job``, resources.

    ``project_dir`` is the project folder; for a multi-repo project, the repo folders
    (a list) or their parent folder. ``enable_schedule`` adds the adaptive schedule
    (``dg_sqlmesh.scheduling.schedules``), which runs the due models on the project's finest cron;
    ``automation_from_cron`` instead gives each asset an automation condition following
    its own cron. Pick one of the two.

    ``executor`` is the code location's default executor, used by "Materialize" in the UI
    as well as by ``sqlmesh_job``. The default, :data:`~dg_sqlmesh.sqlmesh_executor`, runs
    in one process unless a run's config picks ``multiprocess`` (a SQLMesh step that only
    reports its model then costs no process start nor code-location load). Pass ``None``
    to leave the choice to ``Definitions`` you merge these with (``Definitions.merge``
    refuses two different executors), or any executor definition.

    ``row_counts`` (``SQLMeshResource(row_counts=...)``) counts each materialized table's
    rows after a run, for ``dagster/row_count``; turn it off where a count costs money.

    Example:
        >>> defs = sqlmesh_definitions_factory(  # doctest: +SKIP
        ...     project_dir="examples/shop",
        ...     environment="prod",
        ...     external_asset_mapping="raw/{node.schema}/{node.name}",
        ... )

    ``**options`` are those of :class:`~dg_sqlmesh.definitions.options.DefinitionsOptions`:
    """
    parsed = parse_options(
        DefinitionsOptions,
        options,
        "sqlmesh_definitions_factory",
        ("project_dir", "translator", "executor"),
    )
    if parsed.enable_schedule and parsed.automation_from_cron:
        raise SQLMeshDefinitionError(
            "enable_schedule and automation_from_cron both run the models on their cron, so "
            "every model would run twice. Pick one: the adaptive schedule "
            "(enable_schedule=True) or per-model automation conditions (automation_from_cron=True)."
        )
    first_dir, other_dirs = split_project_dirs(project_dir)
    resource = SQLMeshResource(
        project_dir=first_dir, additional_project_dirs=other_dirs, **parsed.run_options()
    )
    asset_options = parsed.asset_options()
    with cycle_collection_paused():
        graph = options_asset_graph(resource.describe(), translator, asset_options)
        assets = _assets(graph, asset_options, resource.environment)
    job = sqlmesh_job(assets, environment=parsed.environment)
    schedules = []
    if parsed.enable_schedule:
        schedules.append(
            sqlmesh_adaptive_schedule_factory(
                sqlmesh_resource=resource,
                name=parsed.schedule_name,
                job_name=job.name,
                assets=assets,
            )
        )
    sensors = []
    if any(asset.partitions_def is not None for asset in assets):
        sensors.append(
            sqlmesh_partition_status_sensor(
                sqlmesh_resource=resource, assets=assets, job_name=job.name
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


# The options' own descriptions, declared once in definitions.options, end each docstring.
sqlmesh_assets_factory.__doc__ += "\n" + options_doc(AssetOptions)
build_sqlmesh_asset_specs.__doc__ += "\n" + options_doc(AssetOptions)
sqlmesh_definitions_factory.__doc__ += "\n" + options_doc(DefinitionsOptions)
