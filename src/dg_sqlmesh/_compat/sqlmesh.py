"""Where we need more of SQLMesh than its public API offers, or work around it.

Checked against SQLMesh 0.220.0 and 0.236.4 (pyproject.toml's floor is now 0.236). Each
helper falls back to SQLMesh's own behaviour when the internals it relies on are not
there, or fails closed (raises) when there is no safe answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def engine_dialect(context: Any) -> str:
    """The dialect of the engine SQLMesh evaluates with."""
    return context.snapshot_evaluator.adapter.dialect
