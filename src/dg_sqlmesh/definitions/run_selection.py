"""What a run selected, read from its Dagster context: the models SQLMesh runs, those
whose checks run alone, and the partitions each partitioned model may report."""

from __future__ import annotations

import dagster as dg

from dg_sqlmesh._compat.dagster import run_step_keys, selected_asset_keys
from dg_sqlmesh.errors import SQLMeshRunFailure
from dg_sqlmesh.execution.intervals import RunWindow
from dg_sqlmesh.execution.outcomes import ModelOutcome
from dg_sqlmesh.reporting.partitions import partition_keys
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph


def selected_models(context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph) -> list[str]:
    """The SQLMesh models (FQNs, DAG order) whose assets this run materializes.

    A step can run for a model's checks alone; that model is not SQLMesh's to run.
    """
    step_keys = run_step_keys(context)
    if step_keys is None:  # fail closed: guessing could write models the run did not select
        raise SQLMeshRunFailure(
            description=(
                "Cannot tell which steps this run executes: Dagster's execution plan "
                "snapshot of the run could not be read, so SQLMesh was not run (running "
                "every model could write models the run did not select). This Dagster "
                "version may store plans differently; see dg_sqlmesh._compat.dagster."
            ),
            allow_retries=False,
        )
    assets = selected_asset_keys(context)  # None: every asset of the steps
    return [
        fqn
        for fqn, op_name in graph.op_names.items()
        if op_name in step_keys and (assets is None or graph.specs[fqn].key in assets)
    ]


def checks_alone_models(context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph) -> list[str]:
    """The SQLMesh models (FQNs, DAG order) whose checks this run executes without their
    asset: their steps run, their assets are not selected."""
    step_keys = run_step_keys(context)
    assets = selected_asset_keys(context)
    if step_keys is None or assets is None:  # unknown: the leader's own step only
        return []
    return [
        fqn
        for fqn, op_name in graph.op_names.items()
        if op_name in step_keys and graph.specs[fqn].key not in assets
    ]


def partition_windows(
    graph: SQLMeshAssetGraph, outcomes: dict[str, ModelOutcome], window: RunWindow | None
) -> dict[str, dict[str, tuple[int, int]]]:
    """Each partitioned model's partitions this run may report: those of the intervals
    SQLMesh evaluated (a plan's backfill included) and of the run's window."""
    found = {}
    for fqn, outcome in outcomes.items():
        partitions_def = graph.specs[fqn].partitions_def if fqn in graph.specs else None
        if partitions_def is None:
            continue
        units = [*outcome.intervals, *(window.units if window is not None else ())]
        windows = {}
        for key in partition_keys(partitions_def, units):
            span = partitions_def.time_window_for_partition_key(key)
            windows[key] = (int(span.start.timestamp() * 1000), int(span.end.timestamp() * 1000))
        found[fqn] = windows
    return found
