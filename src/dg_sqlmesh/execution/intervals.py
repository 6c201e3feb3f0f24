"""Running exactly the intervals a partitioned Dagster run names, and what SQLMesh recorded.

A run of partitioned assets (one partition, ``dagster/partition``, or a range,
``dagster/asset_partition_range_start``/``_end``, as a single-run backfill launches it)
names a time window. The leader runs SQLMesh once for it: ``Context.run(start=, end=,
ignore_cron=True)`` evaluates the missing intervals in the window. The intervals SQLMesh
already holds in the window are restated first (removed from the state of exactly the
selected partitioned models, nothing downstream), with a warning, when a user launched
the run; runs of schedules and sensors (automation included) only fill what is missing.

Each partitioned model's outcome then says, per partition of the window, what SQLMesh's
state gained in this run (compared before and after), so that Dagster records exactly
those partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from dg_sqlmesh._compat.sqlmesh_state import held_intervals, remove_held_intervals
from dg_sqlmesh.errors import SQLMeshRunFailure

if TYPE_CHECKING:
    from dg_sqlmesh.execution.console import LogFn
    from dg_sqlmesh.translation.specs import SQLMeshAssetGraph

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Runs carrying one of these were launched by a schedule, a sensor or automation: they
# fill missing intervals and never restate what SQLMesh holds.
AUTOMATED_RUN_TAGS = (
    "dagster/schedule_name",
    "dagster/sensor_name",
    "dagster/auto_materialize",
    "dagster/from_automation_condition",
)

Interval = tuple[int, int]  # [start, end) in epoch milliseconds


@dataclass(frozen=True)
class RunWindow:
    """The partitions a run names, as SQLMesh intervals, and its partitioned models.

    A run of partitioned models that names no partitions (``sqlmesh_job`` launched without
    one) is unbounded: SQLMesh runs what is due, as ``sqlmesh run`` does, and the models'
    outcomes still say which partitions it recorded.
    """

    first_key: str | None
    last_key: str | None
    units: tuple[Interval, ...]  # one per partition, in order; () when unbounded
    partitioned: tuple[str, ...]  # the selected partitioned models (FQNs)
    restate: bool

    @property
    def bounded(self) -> bool:
        return bool(self.units)

    @property
    def start_ms(self) -> int:
        return self.units[0][0]

    @property
    def end_ms(self) -> int:
        return self.units[-1][1]

    def describe(self) -> str:
        if not self.bounded:
            return "the intervals that are due"
        keys = (
            self.first_key
            if self.first_key == self.last_key
            else (f"{self.first_key}..{self.last_key}")
        )
        return f"partition(s) {keys} ([{_iso(self.start_ms)}, {_iso(self.end_ms)}))"


def window_bounds(window: RunWindow) -> dict[str, datetime]:
    """``Context.run``'s ``start`` and ``end`` for ``window`` (datetimes: the end is
    exclusive, as SQLMesh reads a time that is not a date)."""
    return {
        "start": datetime.fromtimestamp(window.start_ms / 1000, tz=UTC),
        "end": datetime.fromtimestamp(window.end_ms / 1000, tz=UTC),
    }


def partition_key_range(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """The partition key range a run's tags name, or None for an unpartitioned run."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG], tags[PARTITION_TAG]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return tags[RANGE_START_TAG], tags[RANGE_END_TAG]
    return None


def run_window(
    tags: Mapping[str, str], graph: SQLMeshAssetGraph, selection: Sequence[str]
) -> RunWindow | None:
    """The window of a run selecting ``selection`` (FQNs); None when it selects no
    partitioned model, unbounded when it names no partitions.

    Raises:
        SQLMeshRunFailure: the selected partitioned models do not share one partitions
            definition, or the keys are not partitions of it.
    """
    keys = partition_key_range(tags)
    partitioned = [f for f in selection if graph.specs[f].partitions_def is not None]
    if not partitioned:
        return None
    if keys is None:
        _refuse_partitioned_upstreams(graph, partitioned, selection)
        return RunWindow(None, None, (), tuple(partitioned), restate=False)
    defs = {graph.specs[f].partitions_def for f in partitioned}
    if len(defs) > 1:
        raise SQLMeshRunFailure(
            description=(
                "The run names partitions, but its partitioned models have different partitions "
                f"definitions: {', '.join(graph.model(f).name for f in partitioned)}. Launch "
                "one run per partitions definition (a backfill from the UI does)."
            ),
            allow_retries=False,
        )
    partitions_def = defs.pop()
    units = partition_units(partitions_def, *keys)
    return RunWindow(
        first_key=keys[0],
        last_key=keys[1],
        units=units,
        partitioned=tuple(partitioned),
        restate=not any(tag in tags for tag in AUTOMATED_RUN_TAGS),
    )


def _refuse_partitioned_upstreams(
    graph: SQLMeshAssetGraph, partitioned: Sequence[str], selection: Sequence[str]
) -> None:
    """A run that names no partition cannot run a model that reads a partitioned model:
    Dagster runs a partitioned asset reading a partitioned asset only for partitions (its
    step fails before it starts), and a partitioned asset is only ever materialized by
    partition, so in such a run it yields no output and Dagster would skip the steps
    reading it although SQLMesh ran them. Say so before SQLMesh runs."""
    chosen = set(partitioned)
    reading = [
        (graph.model(fqn).name, graph.model(up).name)
        for fqn in selection
        for up in graph.model(fqn).depends_on
        if up in graph.specs
        and graph.specs[up].partitions_def is not None
        and (fqn in chosen or up in chosen)
    ]
    if reading:
        pairs = ", ".join(f"{m} reads {u}" for m, u in reading[:5])
        raise SQLMeshRunFailure(
            description=(
                "This run names no partition, but it selects models that read partitioned "
                f"models ({pairs}); a partitioned model is materialized only by partition, "
                "so Dagster runs what reads it only in a run of partitions or a run of its "
                "own. Launch a backfill of a partition range (Materialize in the UI), or "
                "pass partition_key= (or the tags dagster/asset_partition_range_start and "
                "_end), or select the models reading it in a run of their own."
            ),
            allow_retries=False,
        )


def partition_units(partitions_def: Any, first: str, last: str) -> tuple[Interval, ...]:
    """The intervals of the partitions ``first``..``last`` of a time partitions definition."""
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        raise SQLMeshRunFailure(
            description=(
                f"Partitions of {type(partitions_def).__name__} cannot be SQLMesh intervals; "
                "only time-window partitions can (leave partitions_def to dg_sqlmesh)."
            ),
            allow_retries=False,
        )
    try:
        keys = partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    except Exception as exc:  # noqa: BLE001 - Dagster raises several types for bad keys
        raise SQLMeshRunFailure(
            description=f"The run's partitions {first}..{last} are not partitions of the "
            f"models' partitions definition ({partitions_def}): {exc}",
            allow_retries=False,
        ) from exc
    units = []
    for key in keys:
        window = partitions_def.time_window_for_partition_key(key)
        units.append((_ms(window.start), _ms(window.end)))
    return tuple(units)


@dataclass
class IntervalTracker:
    """Before and after a run of ``window``: what SQLMesh's state held and gained."""

    window: RunWindow
    environment: str
    names: Mapping[str, str] = field(default_factory=dict)  # FQN -> model name, for the log
    before: dict[str, list[Interval]] = field(default_factory=dict)
    after: dict[str, list[Interval]] = field(default_factory=dict)
    restated: dict[str, list[Interval]] = field(default_factory=dict)
    _prepared: bool = False

    def prepare(self, context: Any, runnable: Iterable[str], log: LogFn) -> None:
        """Read what the state holds in the window, and restate it when the run may.

        Once per run: a retry finds the intervals a failed attempt left missing.
        """
        if self._prepared:
            return
        self._prepared = True
        models = [f for f in self.window.partitioned if f in set(runnable)]
        self.before = held_intervals(context, self.environment, models)
        if not self.window.bounded:
            return
        held = {
            fqn: [u for u in self.window.units if _covered(self.before.get(fqn, []), u)]
            for fqn in models
        }
        held = {fqn: units for fqn, units in held.items() if units}
        if not held:
            return
        names = ", ".join(
            f"{self.names.get(fqn, fqn)} ({len(units)} partition(s))"
            for fqn, units in sorted(held.items())
        )
        if not self.window.restate:
            log(
                "info",
                f"SQLMesh already holds {names} of {self.window.describe()}; this run was "
                "launched by a schedule or sensor, so it fills only the missing intervals",
            )
            return
        remove_held_intervals(
            context, self.environment, (self.window.start_ms, self.window.end_ms), list(held)
        )
        self.restated = held
        log(
            "warning",
            f"Restating {names} of {self.window.describe()}: SQLMesh already holds these "
            "intervals, and this run re-materializes them. Only these intervals of these "
            "models are cleared and evaluated again; downstream models are not.",
        )

    def record(self, context: Any) -> None:
        """Read what the state holds after an attempt."""
        self.after = held_intervals(context, self.environment, self.window.partitioned)

    def record_model(self, context: Any, fqn: str) -> None:
        """Read what the state holds for ``fqn`` now: SQLMesh has finished it while the
        attempt goes on (``execution.live``)."""
        self.after.update(held_intervals(context, self.environment, [fqn]))

    def partitions(self, fqn: str, evaluated: Iterable[Interval] = ()) -> dict[str, Any]:
        """What the run did to ``fqn``'s partitions (JSON-serialisable).

        ``recorded``: intervals SQLMesh's state holds after the run and did not before, or
        that this run evaluated (``evaluated``: its batches, a plan's backfill included);
        ``kept``: held before and not evaluated again (a schedule's run); ``restated``:
        held before and cleared to be evaluated again. Per partition of a bounded window;
        for an unbounded run, the intervals recorded.
        """
        before, after = self.before.get(fqn, []), self.after.get(fqn, [])
        evaluated = list(evaluated)
        if not self.window.bounded:
            gained = _subtract(after, before) + _intersect(after, evaluated)
            return {"first_key": None, "last_key": None, "recorded": gained}
        restated = set(self.restated.get(fqn, []))
        recorded, kept = [], []
        for unit in self.window.units:
            if not _covered(after, unit):
                continue
            if unit in restated or not _covered(before, unit) or _covered(evaluated, unit):
                recorded.append(list(unit))
            else:
                kept.append(list(unit))
        return {
            "first_key": self.window.first_key,
            "last_key": self.window.last_key,
            "recorded": recorded,
            "kept": kept,
            "restated": [list(u) for u in sorted(restated)],
        }


def _intersect(intervals: Iterable[Interval], other: Iterable[Interval]) -> list[list[int]]:
    """The parts of ``intervals`` that ``other`` covers."""
    found = []
    for start, end in intervals:
        for o_start, o_end in other:
            low, high = max(start, o_start), min(end, o_end)
            if low < high:
                found.append([low, high])
    return found


def _subtract(intervals: Iterable[Interval], removed: Iterable[Interval]) -> list[list[int]]:
    """The parts of ``intervals`` that ``removed`` does not cover."""
    left = [list(i) for i in sorted(intervals)]
    for r_start, r_end in sorted(removed):
        kept = []
        for start, end in left:
            if r_end <= start or end <= r_start:
                kept.append([start, end])
                continue
            if start < r_start:
                kept.append([start, r_start])
            if r_end < end:
                kept.append([r_end, end])
        left = kept
    return left


def _covered(intervals: Iterable[Interval], unit: Interval) -> bool:
    return any(start <= unit[0] and unit[1] <= end for start, end in intervals)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()
