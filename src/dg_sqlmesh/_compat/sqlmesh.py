"""Where we need more of SQLMesh than its public API offers, or work around it.

Checked against SQLMesh 0.220.0 and 0.236.4 (pyproject.toml's floor is now 0.236). Each
helper falls back to SQLMesh's own behaviour when the internals it relies on are not
there, or fails closed (raises) when there is no safe answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dg_sqlmesh.errors import SQLMeshDefinitionError

if TYPE_CHECKING:
    from sqlmesh.core.config import Config


@contextlib.contextmanager
def cheap_environment_reads(context: Any) -> Iterator[None]:
    """Serve repeated reads of an unchanged environment from memory during a run.

    Workaround: ``Context.run`` checks before every node whether the environment changed
    under it (its circuit breaker), and each check decodes the whole environment, every
    snapshot's table info included: quadratic in the number of models (4 ms a check at
    500 models, 2 s a run). Here a check reads the environment's summary row (plan id,
    finalized time, expiry: 0.8 ms) and returns the environment decoded before while that
    row is unchanged. A plan applied meanwhile changes the plan id, so SQLMesh still sees
    it. Without ``environment_state`` (another state sync), SQLMesh's own read is used.
    """
    state_sync = context.state_sync
    inner = getattr(state_sync, "state_sync", state_sync)
    environment_state = getattr(inner, "environment_state", None)
    fetch = getattr(environment_state, "_fetch_environment_summaries", None)
    if fetch is None or "get_environment" in vars(state_sync):
        yield
        return
    from sqlglot import exp

    original = state_sync.get_environment
    decoded: dict[str, tuple[Any, Any]] = {}

    def get_environment(environment: str) -> Any:
        summaries = fetch(where=exp.column("name").eq(environment))
        if not summaries:
            decoded.pop(environment, None)
            return None
        summary = summaries[0]
        known = decoded.get(environment)
        if known is not None and known[0] == summary:
            return known[1]
        full = original(environment)
        decoded[environment] = (summary, full)
        return full

    state_sync.get_environment = get_environment
    try:
        yield
    finally:
        del state_sync.get_environment


class StandaloneAuditsNotRun(RuntimeError):
    """SQLMesh's run selection could not be made to include standalone audits."""


@contextlib.contextmanager
def run_standalone_audits(context: Any, names: Iterable[str]) -> Iterator[None]:
    """Have ``Context.run(select_models=...)`` run the standalone audits ``names`` too.

    Workaround: ``Context._select_models_for_run`` (checked in SQLMesh 0.220 to 0.236)
    keeps models only, so a run with a model selection never runs a standalone audit,
    while a bare ``sqlmesh run`` does. The names are added to what it returns, which the
    scheduler matches against snapshot names (a standalone audit's snapshot is named after
    the audit). Fails closed: raises :class:`StandaloneAuditsNotRun` when the method is
    not there, so the caller reports the audits as not run rather than as passed.
    """
    wanted = set(names)
    original = getattr(context, "_select_models_for_run", None)
    if not wanted:
        yield
        return
    if original is None:
        raise StandaloneAuditsNotRun(
            "this SQLMesh version has no Context._select_models_for_run to extend"
        )

    def select(*args: Any, **kwargs: Any) -> set[str]:
        return set(original(*args, **kwargs)) | wanted

    context._select_models_for_run = select
    try:
        yield
    finally:
        del context._select_models_for_run


def load_project_config(project_dir: Path) -> Config:
    """The project's ``Config`` as ``sqlmesh -p <project_dir>`` loads it.

    ``sqlmesh.core.config.load_configs`` is below ``Context`` (which takes a config but
    does not say where it came from); it is what ``Context`` calls itself. Checked
    against SQLMesh 0.220.0 and 0.236.4. Raises ``ConfigError`` as SQLMesh does.
    """
    from sqlmesh.core.config import Config, load_configs

    return load_configs("config", Config, [project_dir])[project_dir]


def source_path(node: Any) -> str | None:
    """The file a model or audit was loaded from, or None when SQLMesh does not say.

    SQLMesh keeps it as the private ``_path`` of every node (checked against SQLMesh
    0.220.0 and 0.236.4). Only metadata depends on it, so no answer means no file.
    """
    path = getattr(node, "_path", None)
    return str(path) if path else None


def audit_source_sql(audit: Any, dialect: str | None) -> str | None:
    """An audit's query as written, without parsing it again.

    SQLMesh keeps an audit's query as its SQL text in ``query_`` (a ``ParsableSql``,
    checked against SQLMesh 0.220.0 and 0.236.4) and parses it on every ``audit.query``.
    Falls back to printing ``audit.query`` (public) when ``query_`` is not there.
    """
    text = getattr(getattr(audit, "query_", None), "sql", None)
    if isinstance(text, str):
        return text.strip()
    query = getattr(audit, "query", None)
    return query.sql(dialect=dialect) if query else None


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
SELECTIONS_PER_EXPRESSION = 100


def expand_in_chunks(
    expand: Callable[[list[str]], set[str]], selections: Iterable[str]
) -> set[str]:
    """The union of ``expand`` over chunks of ``selections``: the same set, in bounded depth.

    Workaround (SQLMesh 0.220 to 0.236): ``Selector.expand_model_selections`` joins every
    selection into one ``|`` expression and walks it recursively, so selecting about 500
    models or more raises ``RecursionError`` (a run of 1000 models failed with "maximum
    recursion depth exceeded" before evaluating anything). Selecting ``a | b`` is
    selecting ``a``, then ``b``, so chunks give the same answer.
    """
    every = list(selections)
    if len(every) <= SELECTIONS_PER_EXPRESSION:
        return expand(every)
    found: set[str] = set()
    for start in range(0, len(every), SELECTIONS_PER_EXPRESSION):
        found |= expand(every[start : start + SELECTIONS_PER_EXPRESSION])
    return found


@contextlib.contextmanager
def no_fork_workers() -> Iterator[None]:
    """Keep SQLMesh from loading snapshots in a pool of forked processes.

    Workaround (SQLMesh 0.236): reading an environment's snapshots with an empty snapshot
    cache loads them in a process pool of ``sqlmesh.core.constants.MAX_FORK_WORKERS``
    forks. Schedules and sensors are evaluated in threads of Dagster's code server, a gRPC
    server, and a fork of it dies at once: the first tick after a deploy failed with
    ``BrokenProcessPool``. One worker loads in the calling thread; a tick reads few
    snapshots, so it costs little. The value is read by SQLMesh when it loads, so setting
    it for the duration of a state read is enough.
    """
    from sqlmesh.core import constants

    saved = constants.MAX_FORK_WORKERS
    constants.MAX_FORK_WORKERS = 1
    try:
        yield
    finally:
        constants.MAX_FORK_WORKERS = saved


def use_sqlmesh_console(console: Any = None) -> None:
    """SQLMesh's global console set to ``console``, or to its no-op console: loading a
    project or reading its state prints nothing (``set_console`` is SQLMesh's, not on
    ``Context``)."""
    from sqlmesh.core.console import NoopConsole, set_console

    set_console(console or NoopConsole())


def missing_upstream_intervals(
    context: Any, environment: str, fqns: Collection[str]
) -> dict[str, int]:
    """How many intervals each of ``fqns`` misses in ``environment``, whatever its cron
    (SQLMesh's scheduler, ``merged_missing_intervals``: not on ``Context``; checked
    against SQLMesh 0.236). Reads state only; no model SQL runs."""
    missing = context.scheduler(environment).merged_missing_intervals(
        ignore_cron=True, selected_snapshots=set(fqns)
    )
    return {snapshot.name: len(intervals) for snapshot, intervals in missing.items() if intervals}


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


def engine_dialect(context: Any) -> str:
    """The dialect of the engine SQLMesh evaluates with."""
    return context.snapshot_evaluator.adapter.dialect
