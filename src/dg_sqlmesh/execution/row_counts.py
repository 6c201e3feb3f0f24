"""Rows in each model's table after a run, counted by the leader right after SQLMesh ran.

The counts go into the published outcomes (``ModelOutcome.row_count``), so every step
reports its model's ``dagster/row_count`` without opening the warehouse. They are read
on the connection SQLMesh ran with (its context's engine adapter), in one ``UNION ALL``
of ``count(*)`` per run (per :data:`TABLES_PER_QUERY` tables), from the physical tables
the environment holds. Views are not counted (a count would run their query), nor
embedded or external models; ``SQLMeshResource(row_counts=False)`` or a model's tag
``dagster:row_count:false`` turns counting off where a count costs money.

Counting is enrichment: it never fails a run. An error is a warning in the run log and
the materialization goes without the key.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh_state import environment_snapshots, reads_deployed_table
from dg_sqlmesh.execution.outcomes import FINISHED, ModelOutcome
from dg_sqlmesh.project.description import ModelInfo
from dg_sqlmesh.translation.tags import row_count_enabled

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.execution.console import LogFn

NOT_COUNTED_KINDS = frozenset({"VIEW", "EMBEDDED", "EXTERNAL"})
TABLES_PER_QUERY = 500


def countable(model: ModelInfo | None) -> bool:
    """Whether a model's table is counted (a table, and its tags do not opt it out)."""
    return (
        model is not None
        and not model.is_external
        and model.kind.upper() not in NOT_COUNTED_KINDS
        and row_count_enabled(model.tags)
    )


def count_rows(
    context: Context,
    environment: str,
    outcomes: Mapping[str, ModelOutcome],
    models: Mapping[str, ModelInfo],
    log: LogFn,
) -> None:
    """Set ``row_count`` on the outcome of every materialized or up-to-date table model.

    Never raises: whatever fails is a warning in ``log``, and those outcomes stay
    without a count.
    """
    wanted = [
        fqn
        for fqn, outcome in outcomes.items()
        if outcome.state in FINISHED and countable(models.get(fqn))
    ]
    if not wanted:
        return
    try:
        tables = physical_tables(context, environment, wanted)
        counts = _count_all(context.engine_adapter, tables, models, log)
    except Exception as exc:  # noqa: BLE001 - enrichment never fails a run
        log("warning", f"Row counts not collected: {type(exc).__name__}: {exc}")
        return
    for fqn, count in counts.items():
        outcomes[fqn].row_count = count


class RowCounter:
    """Counts one model's rows at a time, as SQLMesh finishes it (``execution.live``), on
    SQLMesh's connection. The tables of ``fqns`` are resolved once per SQLMesh context,
    not once per model. SQLMesh finishes models on several threads at once (its
    ``concurrent_tasks``); one count runs at a time. Never raises, as :func:`count_rows`."""

    def __init__(
        self,
        environment: str,
        fqns: Sequence[str],
        models: Mapping[str, ModelInfo],
        log: LogFn,
    ) -> None:
        self._environment = environment
        self._fqns = [fqn for fqn in fqns if countable(models.get(fqn))]
        self._models = models
        self._log = log
        self._tables: tuple[Any, dict[str, str]] | None = None  # (context, tables)
        self.lock = threading.Lock()  # held by whoever queries SQLMesh's connection

    def count(self, context: Context, outcome: ModelOutcome) -> None:
        if outcome.fqn not in self._fqns or outcome.state not in FINISHED:
            return
        with self.lock:
            self._count(context, outcome)

    def _count(self, context: Context, outcome: ModelOutcome) -> None:
        try:
            if self._tables is None or self._tables[0] is not context:
                self._tables = (context, physical_tables(context, self._environment, self._fqns))
            table = self._tables[1].get(outcome.fqn)
            if table is None:
                return
            counts = _count_all(
                context.engine_adapter, {outcome.fqn: table}, self._models, self._log
            )
        except Exception as exc:  # noqa: BLE001 - enrichment never fails a run
            self._log("warning", f"{outcome.fqn}: rows not counted: {type(exc).__name__}: {exc}")
            return
        outcome.row_count = counts.get(outcome.fqn)


def physical_tables(context: Context, environment: str, fqns: Sequence[str]) -> dict[str, str]:
    """The table SQLMesh writes for each of ``fqns`` in ``environment``, as
    ``Context.table_name`` resolves it (read once for all models); views, embedded and
    external models of the environment's version are left out."""
    read = environment_snapshots(context.state_reader, environment, fqns)
    if read is None:
        return {}
    snapshots, deployability = read
    wanted = set(fqns)
    return {
        snapshot.name: snapshot.table_name(
            is_deployable=reads_deployed_table(deployability, snapshot)
        )
        for snapshot in snapshots.values()
        if snapshot.name in wanted
        and snapshot.is_model
        and str(getattr(snapshot.model.kind.name, "value", snapshot.model.kind.name)).upper()
        not in NOT_COUNTED_KINDS
    }


def _count_all(
    adapter: Any, tables: Mapping[str, str], models: Mapping[str, ModelInfo], log: LogFn
) -> dict[str, int]:
    """Count every table, one query per :data:`TABLES_PER_QUERY`; a query that fails is
    repeated table by table, so one missing table costs only its own count."""
    items = list(tables.items())
    counts: dict[str, int] = {}
    for first in range(0, len(items), TABLES_PER_QUERY):
        chunk = dict(items[first : first + TABLES_PER_QUERY])
        try:
            counts.update(count_tables(adapter, chunk))
            continue
        except Exception as exc:  # noqa: BLE001 - enrichment never fails a run
            failed = exc
        for fqn, table in chunk.items():
            error = failed
            if len(chunk) > 1:
                try:
                    counts.update(count_tables(adapter, {fqn: table}))
                    continue
                except Exception as exc:  # noqa: BLE001 - enrichment never fails a run
                    error = exc
            name = models[fqn].name if fqn in models else fqn
            first_line = (str(error).strip().splitlines() or [""])[0]
            log(
                "warning",
                f"{name}: rows not counted ({table}): {type(error).__name__}: {first_line}",
            )
    return counts


def count_tables(adapter: Any, tables: Mapping[str, str]) -> dict[str, int]:
    """``count(*)`` of each table (fqn -> table name), in one query on ``adapter``."""
    from sqlglot import exp

    names = list(tables)
    # Joined as text: sqlglot nests a long UNION chain as deep as it is long.
    query = " UNION ALL ".join(
        f"SELECT {index} AS i, COUNT(*) AS n FROM "
        + exp.to_table(tables[fqn], dialect=adapter.dialect).sql(
            dialect=adapter.dialect, identify=True
        )
        for index, fqn in enumerate(names)
    )
    rows = adapter.fetchall(query)
    return {names[int(index)]: int(count) for index, count in rows}


Window = tuple[int, int]  # [start_ms, end_ms)
PARTITIONS_PER_QUERY = 200


def count_partition_rows(
    context: Context,
    environment: str,
    outcomes: Mapping[str, ModelOutcome],
    partitions: Mapping[str, Mapping[str, Window]],
    models: Mapping[str, ModelInfo],
    log: LogFn,
) -> None:
    """Set ``partition_rows`` on the outcome of each partitioned model of ``partitions``
    (fqn -> partition key -> its interval): the rows of each interval, by the model's time
    column, in one scan of its table per :data:`PARTITIONS_PER_QUERY` partitions.

    Never raises: whatever fails is a warning in ``log``, and those partitions go without
    a count.
    """
    wanted = [
        fqn
        for fqn, keys in partitions.items()
        if keys
        and fqn in outcomes
        and outcomes[fqn].state in FINISHED
        and countable(models.get(fqn))
        and models[fqn].time_column
    ]
    if not wanted:
        return
    try:
        tables = physical_tables(context, environment, wanted)
    except Exception as exc:  # noqa: BLE001 - enrichment never fails a run
        log("warning", f"Partition row counts not collected: {type(exc).__name__}: {exc}")
        return
    for fqn, table in tables.items():
        try:
            rows = _count_partitions(context, fqn, table, partitions[fqn])
        except Exception as exc:  # noqa: BLE001 - enrichment never fails a run
            first_line = (str(exc).strip().splitlines() or [""])[0]
            log(
                "warning",
                f"{models[fqn].name}: rows per partition not counted ({table}): "
                f"{type(exc).__name__}: {first_line}",
            )
            continue
        outcomes[fqn].partition_rows = rows


def _count_partitions(
    context: Context, fqn: str, table: str, windows: Mapping[str, Window]
) -> dict[str, int]:
    """Rows of ``table`` in each window, by the model's time column (converted to the
    column's type and format as SQLMesh converts its own interval bounds)."""
    from datetime import UTC, datetime

    from sqlglot import exp

    adapter = context.engine_adapter
    model = context.get_model(fqn)
    column = exp.column(model.time_column.column.name, quoted=True)
    source = exp.to_table(table, dialect=adapter.dialect)

    def bound(ms: int) -> exp.Expression:
        return model.convert_to_time_column(datetime.fromtimestamp(ms / 1000, tz=UTC))

    keys = list(windows)
    counts: dict[str, int] = {}
    for first in range(0, len(keys), PARTITIONS_PER_QUERY):
        chunk = keys[first : first + PARTITIONS_PER_QUERY]
        sums = [
            exp.func(
                "SUM",
                exp.If(
                    this=exp.and_(
                        exp.GTE(this=column.copy(), expression=bound(windows[k][0])),
                        exp.LT(this=column.copy(), expression=bound(windows[k][1])),
                    ),
                    true=exp.Literal.number(1),
                    false=exp.Literal.number(0),
                ),
            ).as_(f"p{index}")
            for index, k in enumerate(chunk)
        ]
        query = exp.select(*sums).from_(source)
        row = adapter.fetchone(query) or ()
        counts.update({k: int(n or 0) for k, n in zip(chunk, row, strict=False)})
    return counts
