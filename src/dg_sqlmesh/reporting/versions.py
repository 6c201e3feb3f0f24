"""Data versions and provenance: a version is new exactly when SQLMesh wrote data.

The materializations the steps yield get their provenance from Dagster; those we record
ourselves (per partition outside a partition range, and what a plan evaluated beyond the
run's selection) get the same tags here, so Dagster judges staleness by data versions,
never by timestamps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import dagster as dg

from dg_sqlmesh._compat.dagster import (
    latest_data_version,
    latest_data_version_record,
    latest_materialization_run,
    provenance_tags,
)
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.metadata import DG
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph

CODE_VERSION_TAG = "dagster/code_version"


def version_of(data_hash: str | None, outcome: Any, run_id: str) -> str:
    intervals = outcome.intervals if isinstance(outcome, ModelOutcome) else outcome
    digest = hashlib.sha1(f"{data_hash}|{intervals}|{run_id}".encode())
    return digest.hexdigest()[:24]


def data_version(
    context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph, fqn: str, outcome: ModelOutcome
) -> str:
    """The data version of ``fqn`` after this run: new exactly when SQLMesh wrote data.

    Evaluated: a version of this run's intervals. Up to date: the version Dagster last
    recorded, or (none recorded, as for an environment built outside Dagster) one derived
    from the model's data hash alone, the same in every run until SQLMesh writes again.
    """
    model = graph.model(fqn)
    if outcome.state is ModelState.MATERIALIZED:
        return version_of(model.data_hash, outcome, context.run_id)
    previous = latest_data_version(context.instance, graph.specs[fqn].key)
    return previous or version_of(model.data_hash, [], "held")


def up_to_date_text(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str:
    last = latest_materialization_run(context.instance, key, DG.no_op)
    since = f"since run {last}" if last else "since SQLMesh last wrote it"
    return f"up to date: nothing was due, data unchanged {since}"


def provenance(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    fqn: str,
    held: Mapping[str, str] | None,
    outcomes: Mapping[str, ModelOutcome] | None = None,
) -> Any:
    """``tags(data_version)``: the tags of a materialization of ``fqn`` we record ourselves
    (not from the step's output), with the provenance Dagster gives an output's, so that
    staleness follows data versions, not timestamps.

    ``outcomes``: the run's published outcomes, for an event recorded before the upstream
    steps of this run report (a plan evaluated the model in the leader's step): their data
    versions are the ones those steps will record.
    """
    spec = graph.specs[fqn]
    inputs = {}
    by_key = graph.fqn_by_key
    for dep in spec.deps:
        upstream = by_key.get(dep.asset_key)
        outcome = (outcomes or {}).get(upstream) if upstream else None
        if outcome is not None and outcome.state is ModelState.MATERIALIZED:
            inputs[dep.asset_key] = (data_version(context, graph, upstream, outcome), None)
        else:
            inputs[dep.asset_key] = latest_data_version_record(context.instance, dep.asset_key)
    code_version = (held or {}).get(CODE_VERSION_TAG) or spec.code_version or context.run_id
    return lambda version: {**(held or {}), **provenance_tags(version, code_version, inputs)}


def partition_tags(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    fqn: str,
    held: Mapping[str, str] | None,
    outcomes: Mapping[str, ModelOutcome] | None = None,
) -> Any:
    """``tags_for(partition_key)``: each partition's own data version, with provenance."""
    spec = graph.specs[fqn]
    data_hash = graph.model(fqn).data_hash
    tags = provenance(context, graph, fqn, held, outcomes)

    def tags_for(key: str) -> dict[str, str]:
        window = spec.partitions_def.time_window_for_partition_key(key)
        unit = [(int(window.start.timestamp() * 1000), int(window.end.timestamp() * 1000))]
        return tags(version_of(data_hash, unit, context.run_id))

    return tags_for
