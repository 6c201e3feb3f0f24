"""Dagster's partition status mirrors SQLMesh's state.

Intervals filled outside Dagster (``sqlmesh run``, ``sqlmesh plan`` backfills) are data in
the warehouse: a sensor reads the environment's intervals from SQLMesh's state (no model
SQL runs, no warehouse table is read) and reports every partition SQLMesh holds that
Dagster does not show materialized as a runless materialization, marked as coming from
SQLMesh's state. A partition Dagster already shows materialized is never reported again,
and a tick while a run of the environment is queued or running skips (that run reports
its own partitions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from dg_sqlmesh._compat.sqlmesh_state import held_intervals
from dg_sqlmesh.metadata import DG, RUN
from dg_sqlmesh.scheduling.due_models import state_context
from dg_sqlmesh.scheduling.schedules import active_sqlmesh_runs, read_state_or_skip
from dg_sqlmesh.translation.specs import asset_graph_of

if TYPE_CHECKING:
    from dg_sqlmesh.execution.settings import SQLMeshProject
    from dg_sqlmesh.translation.specs import SQLMeshAssetGraph

SOURCE = DG.source
MAX_EVENTS_PER_TICK = 5000  # a large history is reported over several ticks


def unreported_partitions(
    instance: dg.DagsterInstance,
    graph: SQLMeshAssetGraph,
    held: Mapping[str, list[tuple[int, int]]],
    limit: int = MAX_EVENTS_PER_TICK,
) -> list[dg.AssetMaterialization]:
    """Runless materializations for the partitions in ``held`` (FQN -> intervals in SQLMesh's
    state) that Dagster does not show materialized, at most ``limit``."""
    events: list[dg.AssetMaterialization] = []
    for fqn, intervals in held.items():
        spec = graph.specs.get(fqn)
        if spec is None or spec.partitions_def is None or not intervals:
            continue
        partitions_def = spec.partitions_def
        keys: list[str] = []
        for start, end in intervals:
            window = dg.TimeWindow(_dt(start), _dt(end))
            keys.extend(partitions_def.get_partition_keys_in_time_window(window))
        if not keys:
            continue
        status = instance.get_status_by_partition(spec.key, keys, partitions_def) or {}
        for key in dict.fromkeys(keys):
            state = status.get(key)
            if state is not None and state.value in ("MATERIALIZED", "IN_PROGRESS"):
                continue
            window = partitions_def.time_window_for_partition_key(key)
            events.append(
                dg.AssetMaterialization(
                    asset_key=spec.key,
                    partition=key,
                    description="Interval recorded in SQLMesh's state outside Dagster",
                    metadata={
                        SOURCE: "sqlmesh_state",
                        RUN.interval: f"[{window.start.isoformat()}, {window.end.isoformat()})",
                    },
                )
            )
            if len(events) >= limit:
                return events
    return events


def sqlmesh_partition_status_sensor(
    *,
    sqlmesh_resource: SQLMeshProject,
    assets: Sequence[dg.AssetsDefinition],
    name: str = "sqlmesh_partition_status_sensor",
    job_name: str = "sqlmesh_job",
    minimum_interval_seconds: int = 300,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """A sensor reporting the partitions SQLMesh's state holds as materialized in Dagster.

    Each tick reads the intervals of the environment's partitioned models from SQLMesh's
    state (briefly opening the state connection) and reports, as runless materializations,
    the partitions Dagster does not show materialized yet. It runs by default: it executes
    nothing and only writes events. ``assets`` are those :func:`sqlmesh_assets_factory`
    built (their partitions are the ones reported). ``sqlmesh_definitions_factory`` adds
    it when an asset is partitioned.

    Example:
        >>> sensor = sqlmesh_partition_status_sensor(  # doctest: +SKIP
        ...     sqlmesh_resource=resource, assets=assets
        ... )
    """

    asset_graph = asset_graph_of(sqlmesh_resource.describe(), assets)

    partitioned = [f for f, s in asset_graph.specs.items() if s.partitions_def is not None]
    keys = [asset_graph.specs[f].key for f in partitioned]
    environment = sqlmesh_resource.environment

    def _evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        busy = active_sqlmesh_runs(context.instance, job_name=job_name, asset_keys=keys)
        if busy:
            return dg.SkipReason(
                f"Run {busy[0].run_id} of SQLMesh environment '{environment}' is in progress; "
                "it reports its own partitions."
            )
        held = read_state_or_skip(
            lambda: read_held_intervals(sqlmesh_resource, partitioned),
            lambda reason: f"Could not read SQLMesh's state ({reason}); trying again.",
        )
        if isinstance(held, dg.SkipReason):
            return held
        events = unreported_partitions(context.instance, asset_graph, held)
        if not events:
            return dg.SkipReason(
                f"Dagster shows every partition SQLMesh's state holds for environment "
                f"'{environment}'."
            )
        return dg.SensorResult(asset_events=events)

    return dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Reports the partitions SQLMesh's state holds for environment '{environment}' "
            "(filled by sqlmesh run or plan outside Dagster) as materialized. Executes nothing."
        ),
    )(_evaluate)


def read_held_intervals(
    resource: SQLMeshProject, fqns: list[str]
) -> dict[str, list[tuple[int, int]]]:
    """The intervals the resource's environment holds for ``fqns``, from SQLMesh's state."""

    with state_context(resource) as context:
        return held_intervals(context, resource.environment, fqns)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
