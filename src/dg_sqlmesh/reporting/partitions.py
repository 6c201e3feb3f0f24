"""A partitioned model's outcome as Dagster events: one partition at a time, never more.

In a run that names partitions (see ``execution.intervals``), the leader recorded, for
each partition of the run's window, whether SQLMesh's state gained its interval in this
run (``recorded``), held it already and kept it (``kept``: a schedule's run fills only
what is missing), or neither. The step then:

* every partition recorded or kept, the model settled: yields its output, so Dagster
  records a materialization per partition of the range (downstream steps run), each with
  its own metadata (``dg_sqlmesh/no_op: true`` on kept ones);
* otherwise: a materialization for each recorded partition only, the audits' results,
  then a failed step naming the partitions SQLMesh did not record. Dagster shows the
  range's other partitions as failed.

A run that names no partitions (``sqlmesh_job`` without one) runs what SQLMesh finds due;
each partition SQLMesh recorded gets its materialization (:func:`recorded_partitions`), and
the model gets no unpartitioned one: a partitioned asset is only ever materialized by
partition. The same holds for a partitioned model a plan evaluated beyond the run's
selection.

Every number on a partition's materialization describes that partition (its rows, by the
model's time column); the run's totals (batches, duration, intervals) are on no partition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dg_sqlmesh.errors import SQLMeshRunFailure
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.metadata import DG, RUN, TABLE
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph

# The run's figures, summed over all its batches: they describe no single partition.
RUN_WIDE = frozenset(
    {
        DG.no_op,
        RUN.state,
        TABLE.row_count,
        RUN.intervals,
        RUN.interval_start,
        RUN.interval_end,
        RUN.batches,
        RUN.interval_count,
        RUN.duration_s,
        RUN.rows_written,
        RUN.bytes_processed,
    }
)


def partition_shared(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What of a model's metadata holds for each of its partitions (no run-wide figure)."""
    return {k: v for k, v in metadata.items() if k not in RUN_WIDE}


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
    shared = partition_shared(metadata)
    if model.lookback:
        shared[RUN.lookback] = (
            f"{model.lookback} interval(s): SQLMesh evaluates the {model.lookback} interval(s) "
            "before each missing one again, within the run's range"
        )
    missing = [k for k in requested if k not in recorded and k not in kept]
    settled = outcome.state in (ModelState.MATERIALIZED, ModelState.UP_TO_DATE)
    if settled and not missing:
        for key in requested:
            context.add_asset_metadata(
                {
                    **partition_metadata(partitions_def, key, outcome, recorded=key in recorded),
                    **({DG.restated: True} if key in restated else {}),
                },
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
            metadata={**shared, **partition_metadata(partitions_def, key, outcome, recorded=True)},
            tags=dict(tags or {}),
        )
    yield from checks
    why = failure if not settled else "SQLMesh did not record their intervals in this run"
    raise SQLMeshRunFailure(
        description=(
            f"{model.name}: {len(missing)} of {len(requested)} partition(s) not materialized "
            f"({_span(missing)}): {why}. Materialized: {_span(recorded) or 'none'}."
        ),
        metadata={**shared, DG.partitions_recorded: len(recorded), DG.partitions_failed: missing},
        allow_retries=False,
    )


def recorded_partitions(
    graph: SQLMeshAssetGraph,
    fqn: str,
    outcome: ModelOutcome,
    metadata: Mapping[str, Any],
    units: list[list[int]],
    tags_for: Any,
) -> Iterator[dg.AssetMaterialization]:
    """A materialization for each partition of ``fqn`` that ``units`` (SQLMesh intervals it
    recorded or evaluated) cover, outside a run of a partition range. ``tags_for(key)``
    gives each partition's tags (its data version and provenance)."""
    spec = graph.specs[fqn]
    shared = partition_shared(metadata)
    for key in partition_keys(spec.partitions_def, units):
        yield dg.AssetMaterialization(
            asset_key=spec.key,
            partition=key,
            metadata={
                **shared,
                **partition_metadata(spec.partitions_def, key, outcome, recorded=True),
            },
            tags=tags_for(key),
        )


def partition_keys(partitions_def: Any, units: Any) -> list[str]:
    """The partition keys whose windows ``units`` (``[start_ms, end_ms)`` pairs) cover."""
    return _keys(partitions_def, [list(u) for u in units])


def _keys(partitions_def: Any, units: list[list[int]]) -> list[str]:
    keys = []
    for start, end in units:
        window = dg.TimeWindow(_dt(start), _dt(end))
        keys.extend(partitions_def.get_partition_keys_in_time_window(window))
    return list(dict.fromkeys(keys))


def partition_metadata(
    partitions_def: Any, key: str, outcome: ModelOutcome, *, recorded: bool
) -> dict[str, Any]:
    """One partition's own metadata: its state, its interval and its rows."""
    window = partitions_def.time_window_for_partition_key(key)
    metadata: dict[str, Any] = {
        RUN.state: (ModelState.MATERIALIZED if recorded else ModelState.UP_TO_DATE).value,
        DG.no_op: not recorded,
        RUN.interval: f"[{window.start.isoformat()}, {window.end.isoformat()})",
    }
    rows = (outcome.partition_rows or {}).get(key)
    if rows is not None:
        metadata[TABLE.row_count] = dg.MetadataValue.int(rows)
    return metadata


def _span(keys: list[str]) -> str:
    if len(keys) <= 3:
        return ", ".join(keys)
    return f"{keys[0]}, {keys[1]}, ... {keys[-1]}"


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
