"""One Dagster asset per SQLMesh model: ``sqlmesh_assets_factory`` and the specs alone."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from dg_sqlmesh._compat.dagster import executor_carries_pools
from dg_sqlmesh.constants import CHANGE_TAG
from dg_sqlmesh.definitions.options import AssetOptions, parse_options
from dg_sqlmesh.definitions.resource import SQLMeshResource
from dg_sqlmesh.definitions.step import sqlmesh_step
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.project.changes import UNCHANGED, model_changes
from dg_sqlmesh.project.description import ProjectDescription
from dg_sqlmesh.translation.selection import select_models
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
    resource: SQLMeshResource,
    translator: SQLMeshTranslator | None,
    options: AssetOptions,
    description: ProjectDescription | None = None,
) -> SQLMeshAssetGraph:
    """The asset graph of the resource's project (``description``, else the cached one) for
    a factory's translator and options; with ``compare_with``, each model's
    ``sqlmesh/change`` tag (read from SQLMesh's state)."""
    resolved = resolve_translator(
        translator,
        options.external_asset_mapping,
        automation_from_cron=options.automation_from_cron,
        freshness_from_cron=options.freshness_from_cron,
    )
    graph = build_asset_graph(
        description or resource.describe(),
        resolved,
        group_name=options.group_name,
        owners=options.owners or None,
        partitioned=options.partitioned,
    )
    if options.select or options.exclude:
        graph = graph.only(select_models(graph.description, options.select, options.exclude))
    if options.compare_with:
        changes = model_changes(resource.project_paths, resource.gateway, options.compare_with)
        for fqn, spec in graph.specs.items():
            change = changes.get(fqn, UNCHANGED)
            graph.specs[fqn] = spec.merge_attributes(tags={CHANGE_TAG: change})
    return graph


def model_assets(
    graph: SQLMeshAssetGraph,
    options: AssetOptions,
    environment: str,
    executor: dg.ExecutorDefinition | None = None,
) -> list[dg.AssetsDefinition]:
    """:func:`build_assets` with the pool and op tags ``options`` name. On an executor that
    cannot carry pools (``_compat.dagster.executor_carries_pools``: Dask's) the default
    pool steps aside, and a pool named explicitly is an error."""
    pool = default_pool(environment) if options.pool is True else options.pool or None
    if pool is not None and not executor_carries_pools(executor):
        if options.pool is not True:
            raise SQLMeshDefinitionError(
                f"pool={options.pool!r}: runs on the {executor.name} executor cannot carry "
                "ops in a pool (every run fails before its first step). Leave pool at its "
                "default (it steps aside on this executor), or use another executor."
            )
        pool = None
    return build_assets(graph, op_tags=options.op_tags, pool=pool)


def sqlmesh_assets_factory(
    *,
    sqlmesh_resource: SQLMeshResource,
    translator: SQLMeshTranslator | None = None,
    select: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    external_asset_mapping: str | None = None,
    group_name: str | None = None,
    owners: list[str] | None = None,
    op_tags: dict[str, Any] | None = None,
    automation_from_cron: bool = False,
    freshness_from_cron: bool = False,
    partitioned: bool = False,
    pool: str | bool = True,
    compare_with: str | None = None,
) -> list[dg.AssetsDefinition]:
    """Asset definitions for every model of a SQLMesh project, one asset per model.

    Loading reads the cached project description when the project's files have not
    changed, and never connects to the warehouse. The assets need the resources
    ``sqlmesh`` (a :class:`SQLMeshResource`) and ``sqlmesh_results``.

    Args:
        sqlmesh_resource: the project, gateway and environment.
        translator: decides each model's asset (default: :class:`SQLMeshTranslator`).

    The other keywords (``select``, ``exclude``, ``external_asset_mapping``,
    ``group_name``, ``owners``, ``op_tags``, ``automation_from_cron``,
    ``freshness_from_cron``, ``partitioned``, ``compare_with``, ``pool``) are the fields of
    :class:`~dg_sqlmesh.definitions.options.AssetOptions`, described there.

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> assets = sqlmesh_assets_factory(sqlmesh_resource=resource)  # doctest: +SKIP
    """
    options = parse_options(AssetOptions, locals(), "sqlmesh_assets_factory")
    with cycle_collection_paused():
        graph = options_asset_graph(sqlmesh_resource, translator, options)
        return model_assets(graph, options, sqlmesh_resource.environment)


def build_sqlmesh_asset_specs(
    *,
    sqlmesh_resource: SQLMeshResource,
    translator: SQLMeshTranslator | None = None,
    select: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    external_asset_mapping: str | None = None,
    group_name: str | None = None,
    owners: list[str] | None = None,
    op_tags: dict[str, Any] | None = None,
    automation_from_cron: bool = False,
    freshness_from_cron: bool = False,
    partitioned: bool = False,
    pool: str | bool = True,
    compare_with: str | None = None,
) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """The asset specs of every model and the check specs of their audits, nothing else.

    The same specs :func:`sqlmesh_assets_factory` builds its assets from, for the same
    arguments, for a Dagster definition of your own: external assets materialized
    elsewhere, a multi-asset of your own, a look at what Dagster would see. (``op_tags``
    and ``pool`` concern ops, so they change nothing here.)

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> specs, checks = build_sqlmesh_asset_specs(sqlmesh_resource=resource)  # doctest: +SKIP
        >>> defs = dg.Definitions(assets=specs, asset_checks=[])  # doctest: +SKIP
    """
    options = parse_options(AssetOptions, locals(), "build_sqlmesh_asset_specs")
    graph = options_asset_graph(sqlmesh_resource, translator, options)
    checks = [spec for specs in graph.check_specs.values() for spec in specs]
    return [
        *graph.specs.values(),
        *graph.embedded_specs.values(),
        *graph.external_specs.values(),
    ], checks
