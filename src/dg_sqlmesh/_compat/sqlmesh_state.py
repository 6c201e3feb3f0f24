"""What SQLMesh's state store holds for an environment: its snapshots, the intervals they
hold and miss (the ``DeployabilityIndex`` choice, decided here once).

Checked against SQLMesh 0.220.0 and 0.236.4, as ``dg_sqlmesh._compat.sqlmesh``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dg_sqlmesh.errors import SQLMeshDefinitionError


@dataclass
class EnvironmentIntervals:
    """What SQLMesh's state says about an environment at one execution time."""

    missing: dict[str, list[tuple[int, int]]]  # fqn -> merged missing intervals (epoch ms)
    data_hashes: dict[str, str]  # fqn -> data hash of the environment's snapshot
    next_ticks: dict[str, datetime]  # fqn -> next cron tick after the execution time
    updating_plan: str | None = None


def environment_snapshots(
    state: Any, environment: str, names: Collection[str] | None = None
) -> tuple[dict[Any, Any], Any] | None:
    """The environment's snapshots (with their intervals) and its deployability index, as
    SQLMesh's scheduler builds them for a run of the environment: every snapshot deployable
    in prod, ``DeployabilityIndex.create`` over all of the environment's snapshots
    elsewhere. ``names``: in prod, read only these snapshots. None when the environment
    does not exist. The one place that decides it (checked against SQLMesh 0.236).
    """
    from sqlmesh.core import constants as c
    from sqlmesh.core.environment import Environment
    from sqlmesh.core.snapshot import DeployabilityIndex

    stored = state.get_environment(Environment.sanitize_name(environment))
    if stored is None:
        return None
    if stored.name.lower() == c.PROD:
        wanted = stored.snapshots
        if names is not None:
            wanted = [s for s in stored.snapshots if s.name in set(names)]
        return state.get_snapshots(wanted), DeployabilityIndex.all_deployable()
    snapshots = state.get_snapshots(stored.snapshots)
    return snapshots, DeployabilityIndex.create(snapshots)


def reads_deployed_table(deployability: Any, snapshot: Any) -> bool:
    """Whether the environment reads the snapshot's deployable table and its intervals
    (not its dev table and dev intervals): SQLMesh's ``is_representative``, which its
    scheduler and table mapping use. Not ``is_deployable``, which is false for an indirect
    non-breaking or forward-only snapshot that still reads prod's table."""
    return bool(deployability.is_representative(snapshot))


def index_reading_held_table(deployability: Any, snapshot: Any) -> Any:
    """A deployability index under which SQLMesh's evaluator reads, for ``snapshot``, the
    table the environment reads. ``SnapshotEvaluator.audit`` picks a model's own table by
    ``is_deployable`` (SQLMesh 0.236), which for a representative, non-deployable snapshot
    is a dev table that was never built."""
    if reads_deployed_table(deployability, snapshot):
        return deployability.with_deployable(snapshot)
    return deployability


def intervals_held(snapshot: Any, deployability: Any) -> list[tuple[int, int]]:
    """The intervals the environment holds for ``snapshot``."""
    held = (
        snapshot.intervals
        if reads_deployed_table(deployability, snapshot)
        else snapshot.dev_intervals
    )
    return [(int(start), int(end)) for start, end in held]


def environment_intervals(
    context: Any, environment: str, execution_time: datetime, *, ignore_cron: bool
) -> EnvironmentIntervals | None:
    """The environment's missing intervals at ``execution_time``, read-only.

    Relies on SQLMesh below its ``Context`` API; checked against SQLMesh 0.220.0 and
    0.236.4. It repeats what ``Context.run`` -> ``Scheduler._run_or_audit``
    (``sqlmesh/core/scheduler.py``) does before evaluating anything: load the
    environment's snapshots with their intervals, apply due auto restatements (prod
    only; in memory here, never written back), build the deployability index, and
    call ``merged_missing_intervals``, which bounds each model by the floor of its
    own cron (``Snapshot.missing_intervals`` in ``core/snapshot/definition.py``).
    Returns None when the environment does not exist. Fails closed: when these
    internals are not there, it raises rather than guess which models are due.
    """
    try:
        from sqlmesh.core import constants as c
        from sqlmesh.core.environment import Environment
        from sqlmesh.core.scheduler import merged_missing_intervals
        from sqlmesh.core.snapshot import apply_auto_restatements
    except ImportError as exc:
        raise SQLMeshDefinitionError(
            "This SQLMesh release does not have the scheduler functions dg-sqlmesh reads "
            f"due models with ({exc}); the adaptive schedule cannot tell which models are "
            "due. Install a SQLMesh release that pyproject.toml admits, or use "
            "automation_from_cron instead of the schedule."
        ) from exc

    name = Environment.sanitize_name(environment)
    state = context.state_reader
    stored = state.get_environment(name)
    if stored is None:
        return None
    if not stored.finalized_ts:
        return EnvironmentIntervals({}, {}, {}, updating_plan=stored.plan_id)
    read = environment_snapshots(state, name)
    if read is None:
        return None
    snapshots, deployability = read  # intervals included
    if name.lower() == c.PROD:
        apply_auto_restatements(snapshots, execution_time)
    missing = merged_missing_intervals(
        snapshots.values(),
        end=execution_time,
        execution_time=execution_time,
        deployability_index=deployability,
        ignore_cron=ignore_cron,
    )
    models = [s for s in snapshots.values() if s.is_model]
    return EnvironmentIntervals(
        missing={s.name: list(i) for s, i in missing.items() if s.is_model and i},
        data_hashes={s.name: s.fingerprint.data_hash for s in models},
        next_ticks={
            s.name: s.node.cron_next(execution_time)
            for s in models
            if not s.is_symbolic and not s.is_seed
        },
    )


def held_intervals(
    context: Any, environment: str, fqns: Collection[str]
) -> dict[str, list[tuple[int, int]]]:
    """The intervals SQLMesh's state holds for the environment's snapshots of ``fqns``.

    Read as ``Context.run`` reads them before evaluating (``Scheduler._run_or_audit``,
    ``Snapshot.missing_intervals``): a snapshot's ``intervals``, or its ``dev_intervals``
    in a development environment where it is not representative (a forward-only change).
    Checked against SQLMesh 0.220 to 0.236. Raises ``RuntimeError`` when the state API
    is not there: partition reporting cannot be right without it.
    """
    state = context.state_sync
    if not all(hasattr(state, name) for name in ("get_environment", "get_snapshots")):
        raise RuntimeError("this SQLMesh's state sync cannot read snapshot intervals")
    wanted = set(fqns)
    read = environment_snapshots(state, environment, wanted)
    if read is None:
        return {}
    snapshots, deployability = read
    return {
        snapshot.name: intervals_held(snapshot, deployability)
        for snapshot in snapshots.values()
        if snapshot.name in wanted
    }


def remove_held_intervals(
    context: Any, environment: str, interval: tuple[int, int], fqns: Collection[str]
) -> list[str]:
    """Remove ``interval`` (``[start, end)`` epoch ms) from the state of the environment's
    snapshots of ``fqns``, and of nothing else, so that the next run evaluates it again.

    What ``sqlmesh plan --restate-model`` does for the models it restates
    (``StateSync.remove_intervals``), without its cascade to downstream models and without
    touching other versions of the tables. Returns the FQNs whose intervals were removed.
    Checked against SQLMesh 0.220 to 0.236.
    """
    from sqlmesh.core.environment import Environment

    state = context.state_sync
    stored = state.get_environment(Environment.sanitize_name(environment))
    if stored is None:
        return []
    targets = [s for s in stored.snapshots if s.name in set(fqns)]
    if targets:
        state.remove_intervals([(snapshot, interval) for snapshot in targets])
    return sorted(s.name for s in targets)


# SQLMesh's selector parses the selections as one expression, ``(a) | (b) | ...``: a tree
# as deep as the selection is long, which it then evaluates recursively.


def audit_snapshot(
    context: Any,
    snapshot: Any,
    snapshots: dict[str, Any],
    deployability: Any,
    window: tuple[int, int] | None,
) -> list[Any]:
    """SQLMesh's audits of ``snapshot`` over ``window`` on the table the environment reads
    for it, as a run audits it (``SnapshotEvaluator.audit``: not on ``Context``, whose
    ``audit`` reads the project on disk; checked against SQLMesh 0.236). Only SELECTs."""
    start, end = window or (None, None)
    return context.snapshot_evaluator.audit(
        snapshot=snapshot,
        snapshots=snapshots,
        start=start,
        end=end,
        deployability_index=index_reading_held_table(deployability, snapshot),
    )
