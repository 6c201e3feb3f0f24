"""Describing a loaded SQLMesh context's models, without touching the warehouse."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh import audit_source_sql, source_path
from dg_sqlmesh.project.column_lineage import query_column_lineage
from dg_sqlmesh.project.description import (
    AuditInfo,
    ColumnInfo,
    ModelInfo,
    ProjectDescription,
    StandaloneAuditInfo,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlmesh import Context, Model

logger = logging.getLogger(__name__)


def describe_context(
    context: Context,
    project_dir: Path,
    gateway: str,
    *,
    discard_context: bool = False,
    repo_dirs: Sequence[Path] = (),
) -> ProjectDescription:
    """Turn a loaded SQLMesh context into a :class:`ProjectDescription`.

    With ``discard_context=True`` the caller promises to drop ``context`` afterwards,
    so rendered queries are printed in place instead of from a copy (faster, but it
    leaves SQLMesh's cached query trees modified). ``repo_dirs``: the repos of a
    multi-repo project; model files are then named relative to their common parent.
    """
    if len(repo_dirs) > 1:
        project_dir = Path(os.path.commonpath([str(p) for p in repo_dirs]))
    models = context.models
    dag_order = [fqn for fqn in context.dag if fqn in models]
    engine = _engine_type(context, gateway)
    sql_cache: dict[Any, Any] = {}  # shared audits and column types print once, not per model
    described = [
        describe_model(
            models[fqn],
            project_dir,
            engine,
            sql_cache=sql_cache,
            copy_queries=not discard_context,
        )
        for fqn in dag_order
    ]
    return ProjectDescription(
        project_dir=str(project_dir),
        gateway=gateway,
        engine=engine,
        default_catalog=context.default_catalog,
        models=tuple(described),
        project_dirs=tuple(str(p) for p in repo_dirs) if len(repo_dirs) > 1 else (),
        standalone_audits=tuple(
            describe_standalone_audit(audit, project_dir)
            for _, audit in sorted(context.standalone_audits.items())
        ),
    )


def _engine_type(context: Context, gateway: str) -> str:
    try:
        return context.config.get_connection(gateway).type_
    except Exception:  # noqa: BLE001 - purely informative
        return "unknown"


def describe_model(
    model: Model,
    project_dir: Path,
    engine: str | None = None,
    *,
    sql_cache: dict[Any, Any] | None = None,
    copy_queries: bool = True,
) -> ModelInfo:
    """Describe one SQLMesh model (external or not) without touching the warehouse.

    ``sql_cache`` memoises SQL text that many models share (the generic audits'
    queries, column types) across the calls of one project load. ``copy_queries=False``
    prints the rendered query without copying it first; only for a model that is
    thrown away afterwards.
    """
    sql_cache = {} if sql_cache is None else sql_cache
    table = model.fully_qualified_table
    is_external = model.kind.is_external
    columns = model.columns_to_types or {}
    descriptions = model.column_descriptions or {}
    source = source_path(model)
    path = _relative(source, project_dir)
    rendered_query, column_lineage = (
        (None, None) if is_external else _query_description(model, copy=copy_queries)
    )
    return ModelInfo(
        fqn=model.fqn,
        name=model.name,
        catalog=table.catalog,
        schema=table.db,
        table=table.name,
        kind=model.kind.name.value if hasattr(model.kind.name, "value") else str(model.kind.name),
        is_external=is_external,
        engine=engine,
        cron=None if is_external else str(model.cron),
        cron_tz=None if is_external or not model.cron_tz else str(model.cron_tz),
        dialect=model.dialect or None,
        interval_unit=None if is_external else model.interval_unit.value,
        start=None if model.start is None else str(model.start),
        end=None if getattr(model, "end", None) is None else str(model.end),
        time_column=_time_column(model),
        lookback=0 if is_external else int(getattr(model, "lookback", 0) or 0),
        allow_partials=bool(getattr(model, "allow_partials", False)),
        depends_on_self=not is_external and bool(getattr(model, "depends_on_self", False)),
        grain=_grain(model),
        tags=tuple(model.tags),
        owner=model.owner,
        description=model.description,
        columns=tuple(
            ColumnInfo(name, _expr_sql(dtype, model.dialect, sql_cache), descriptions.get(name))
            for name, dtype in columns.items()
        ),
        depends_on=tuple(sorted(model.depends_on)),
        audits=tuple(describe_audits(model, sql_cache)),  # external models' audits too
        rendered_query=rendered_query,
        data_hash=None if is_external else model.data_hash,
        path=path,
        line=_definition_line(source, getattr(model, "entrypoint", None)),
        source=str(Path(source).resolve()) if source else None,
        column_lineage=column_lineage,
    )


def describe_standalone_audit(audit: Any, project_dir: Path) -> StandaloneAuditInfo:
    """Describe one of SQLMesh's standalone audits (no warehouse access)."""
    path = _relative(source_path(audit), project_dir)
    return StandaloneAuditInfo(
        name=audit.name,
        depends_on=tuple(sorted(audit.depends_on)),
        blocking=bool(audit.blocking),
        query=audit_source_sql(audit, audit.dialect),
        description=audit.description,
        path=path or None,
    )


def _grain(model: Model) -> tuple[str, ...]:
    columns: list[str] = []
    for grain in model.grains:
        parts = grain.expressions if grain.key == "tuple" else [grain]
        columns.extend(part.sql(dialect=model.dialect) for part in parts)
    return tuple(columns)


def _time_column(model: Model) -> str | None:
    time_column = getattr(model.kind, "time_column", None)
    return None if time_column is None else time_column.column.name


def _expr_sql(expression: Any, dialect: str | None, sql_cache: dict[Any, Any]) -> str:
    """``expression.sql(dialect)``, once per distinct expression (types, audit arguments)."""
    key = ("sql", expression, dialect)  # sqlglot expressions hash and compare by structure
    if key not in sql_cache:
        sql_cache[key] = expression.sql(dialect=dialect)
    return sql_cache[key]


def _audit_query_sql(audit: Any, dialect: str | None, sql_cache: dict[Any, Any]) -> str | None:
    # Keyed by identity: a generic audit is one object shared by every model using it,
    # while two inline audits of the same name are distinct objects. The audit is kept
    # in the key so that its id cannot be reused while the cache lives.
    key = ("audit", id(audit), dialect)
    if key not in sql_cache:
        sql_cache[key] = audit_source_sql(audit, dialect)
        sql_cache[("audit-ref", id(audit))] = audit
    return sql_cache[key]


_MODEL_BLOCK = re.compile(r"^\s*MODEL\s*\(", re.IGNORECASE | re.MULTILINE)


def _definition_line(path: str | None, entrypoint: str | None) -> int | None:
    """The line where the model is defined in its file: its ``MODEL (`` block, or for a
    Python model its function (SQLMesh keeps the file, not the line)."""
    if not path:
        return None
    try:
        text = Path(path).read_text(errors="ignore")
    except OSError:
        return None
    if entrypoint:
        pattern = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entrypoint)}\s*\(", re.MULTILINE)
    else:
        pattern = _MODEL_BLOCK
    found = pattern.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _relative(path: str | None, project_dir: Path) -> str | None:
    """A model's file relative to the project, or as SQLMesh gave it when outside."""
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(project_dir))
    except ValueError:
        return path


def describe_audits(model: Model, sql_cache: dict[Any, Any] | None = None) -> list[AuditInfo]:
    from sqlglot import exp

    sql_cache = {} if sql_cache is None else sql_cache

    audits = []
    for audit, args in model.audits_with_args:
        blocking_arg = args.get("blocking")
        blocking = blocking_arg == exp.true() if blocking_arg is not None else audit.blocking
        shown_args = {
            k: _expr_sql(v, model.dialect, sql_cache) if hasattr(v, "sql") else str(v)
            for k, v in args.items()
            if k != "blocking"
        }
        query = _audit_query_sql(audit, model.dialect, sql_cache)
        audits.append(
            AuditInfo(name=audit.name, blocking=bool(blocking), args=shown_args, query=query)
        )
    return audits


def _query_description(
    model: Model, *, copy: bool = True
) -> tuple[str | None, dict[str, tuple[tuple[str, str], ...]] | None]:
    """The model's rendered query as SQL, and the column lineage read from it.

    The query is rendered once; the lineage walk reads it before it is printed (a print
    without a copy may change the tree).
    """
    if not model.is_sql:
        logger.debug("No column lineage for model %s: not a SQL model", model.name)
        return None, None
    try:
        query = model.render_query(**_interval_macros())
    except Exception:  # noqa: BLE001 - metadata only; execution reports real errors
        return None, None
    if query is None:
        return None, None
    lineage = query_column_lineage(query, model.depends_on, model=model.name)
    return query.sql(dialect=model.dialect, pretty=True, copy=copy), lineage


def _interval_macros() -> dict[str, Any]:
    """SQLMesh's interval macros (``@start_ds``, ``@end_ts``, ...) rendered as themselves:
    a query rendered for no interval in particular would otherwise read ``1970-01-01``."""
    from datetime import datetime

    from sqlglot import exp
    from sqlmesh.utils.date import date_dict

    epoch = datetime(1970, 1, 1)
    return {name: exp.var(f"@{name}") for name in date_dict(epoch, epoch, epoch)}
