"""A partitioned model's outcome as Dagster events: one partition at a time, never more.

In a run that names partitions (see ``execution.intervals``), the leader recorded, for
each partition of the run's window, whether SQLMesh's state gained its interval in this
run (``recorded``), held it already and kept it (``kept``: a schedule's run fills only
what is missing), or neither. The step then:

* every partition recorded or kept, the model settled: yields its output, so Dagster
  records a materialization per partition of the range (downstream steps run), each with
  its own metadata (``dagster_sqlmesh/no_op: true`` on kept ones);
* otherwise: a materialization for each recorded partition only, the audits' results,
  then a failed step naming the partitions SQLMesh did not record. Dagster shows the
  range's other partitions as failed.

A run that names no partitions (``sqlmesh_job`` without one) runs what SQLMesh finds due;
each partition SQLMesh recorded gets its materialization (:func:`recorded_partitions`)
before the model's usual events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dg_sqlmesh.errors import SQLMeshRunFailure
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.specs import SQLMeshAssetGraph

NO_OP = "dagster_sqlmesh/no_op"
RECORDED = "dg_sqlmesh/partitions_recorded"
RESTATED = "dg_sqlmesh/partitions_restated"


def report_partitions(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    fqn: str,
    outcome: ModelOutcome,
    *,
    metadata: dict[str, Any],
    checks: list[dg.AssetCheckResult],
    tags: Mapping[str, str] | None,
    data_version: str,
    failure: str,
) -> Iterator[Any]:
    """Yield the events of a partitioned model in a partitioned run (see the module)."""
    spec = graph.specs[fqn]
    partitions_def = spec.partitions_def
    model = graph.model(fqn)
    parts = outcome.partitions or {}
    recorded = _keys(partitions_def, parts.get("recorded", []))
    kept = _keys(partitions_def, parts.get("kept", []))
    restated = _keys(partitions_def, parts.get("restated", []))
    requested = list(
        partitions_def.get_partition_keys_in_range(
            dg.PartitionKeyRange(parts["first_key"], parts["last_key"])
        )
    )
    shared = {
        **{k: v for k, v in metadata.items() if k != NO_OP},
        RECORDED: len(recorded),
    }
    if restated:
        shared[RESTATED] = restated
    if model.lookback:
        shared["sqlmesh/lookback"] = (
            f"{model.lookback} interval(s): SQLMesh evaluates the {model.lookback} interval(s) "
            "before each missing one again, within the run's range"
        )
    missing = [k for k in requested if k not in recorded and k not in kept]
    settled = outcome.state in (ModelState.MATERIALIZED, ModelState.UP_TO_DATE)
    if settled and not missing:
        for key in requested:
            context.add_asset_metadata(
                _partition_metadata(partitions_def, key, recorded=key in recorded),
                asset_key=spec.key,
                partition_key=key,
            )
        yield dg.MaterializeResult(
            asset_key=spec.key,
            metadata=shared,
            tags=tags,
            check_results=checks,
            data_version=dg.DataVersion(data_version) if recorded else None,
        )
        return
    for key in recorded:
        yield dg.AssetMaterialization(
            asset_key=spec.key,
            partition=key,
            metadata={**shared, **_partition_metadata(partitions_def, key, recorded=True)},
            tags=dict(tags or {}),
        )
    yield from checks
    why = failure if not settled else "SQLMesh did not record their intervals in this run"
    raise SQLMeshRunFailure(
        description=(
            f"{model.name}: {len(missing)} of {len(requested)} partition(s) not materialized "
            f"({_span(missing)}): {why}. Materialized: {_span(recorded) or 'none'}."
        ),
        metadata={**shared, "dg_sqlmesh/partitions_failed": missing},
        allow_retries=False,
    )


def recorded_partitions(
    graph: SQLMeshAssetGraph, fqn: str, outcome: ModelOutcome, metadata: dict[str, Any]
) -> Iterator[dg.AssetMaterialization]:
    """A materialization per partition SQLMesh recorded for ``fqn`` in a run without a
    partition range."""
    spec = graph.specs[fqn]
    units = (outcome.partitions or {}).get("recorded", [])
    shared = {k: v for k, v in metadata.items() if k != NO_OP}
    for key in _keys(spec.partitions_def, units):
        yield dg.AssetMaterialization(
            asset_key=spec.key,
            partition=key,
            metadata={**shared, **_partition_metadata(spec.partitions_def, key, recorded=True)},
        )


def _keys(partitions_def: Any, units: list[list[int]]) -> list[str]:
    keys = []
    for start, end in units:
        window = dg.TimeWindow(_dt(start), _dt(end))
        keys.extend(partitions_def.get_partition_keys_in_time_window(window))
    return list(dict.fromkeys(keys))


def _partition_metadata(partitions_def: Any, key: str, *, recorded: bool) -> dict[str, Any]:
    window = partitions_def.time_window_for_partition_key(key)
    return {
        NO_OP: not recorded,
        "sqlmesh/interval": f"[{window.start.isoformat()}, {window.end.isoformat()})",
    }


def _span(keys: list[str]) -> str:
    if len(keys) <= 3:
        return ", ".join(keys)
    return f"{keys[0]}, {keys[1]}, ... {keys[-1]}"


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
