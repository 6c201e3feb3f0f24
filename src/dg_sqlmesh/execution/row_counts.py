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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dg_sqlmesh.description import ModelInfo
from dg_sqlmesh.execution.environment import PROD
from dg_sqlmesh.execution.outcomes import FINISHED, ModelOutcome
from dg_sqlmesh.tags import row_count_enabled

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


def physical_tables(context: Context, environment: str, fqns: Sequence[str]) -> dict[str, str]:
    """The table SQLMesh writes for each of ``fqns`` in ``environment``, as
    ``Context.table_name`` resolves it (read once for all models); views, embedded and
    external models of the environment's version are left out."""
    from sqlmesh.core.snapshot import DeployabilityIndex

    held = context.state_reader.get_environment(environment)
    if held is None:
        return {}
    wanted = set(fqns)
    infos = [
        info
        for info in held.snapshots
        if info.name in wanted
        and info.is_model
        and str(getattr(info.kind_name, "value", info.kind_name)).upper() not in NOT_COUNTED_KINDS
    ]
    if environment.lower() == PROD or not infos:
        return {info.name: info.table_name() for info in infos}
    deployability = DeployabilityIndex.create(context.state_reader.get_snapshots(held.snapshots))
    return {
        info.name: info.table_name(is_deployable=deployability.is_deployable(info.snapshot_id))
        for info in infos
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
