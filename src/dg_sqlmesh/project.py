"""Loading a SQLMesh project into a serialisable description of its models.

Definitions are built from :class:`ProjectDescription`, never from a live SQLMesh
context: the description can be cached on disk (see ``catalog_cache``) and loading
it opens no connection to the warehouse.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project_dirs import (  # noqa: F401 - re-exported, imported from here
    CONFIG_FILENAMES,
    ProjectDirs,
    config_file,
    primary_project_dir,
    resolve_project_dir,
    resolve_project_dirs,
)

if TYPE_CHECKING:
    from sqlmesh import Context
    from sqlmesh.core.config import Config
    from sqlmesh.core.model import Model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    description: str | None = None


@dataclass(frozen=True)
class AuditInfo:
    """One audit attached to a model."""

    name: str
    blocking: bool
    args: dict[str, str] = field(default_factory=dict)
    query: str | None = None


@dataclass(frozen=True)
class StandaloneAuditInfo:
    """A standalone audit (``AUDIT (name ..., standalone true)``, or a dbt test SQLMesh
    loads as one, such as ``relationships``): it belongs to no model and reads
    ``depends_on``. SQLMesh never makes one blocking."""

    name: str
    depends_on: tuple[str, ...] = ()
    blocking: bool = False
    query: str | None = None
    description: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What Dagster needs to know about one SQLMesh model.

    ``fqn`` is SQLMesh's fully qualified, quoted name (``"db"."schema"."table"``),
    the identity used to talk to SQLMesh; ``catalog``, ``schema`` and ``table`` are
    the unquoted parts.
    """

    fqn: str
    name: str
    catalog: str
    schema: str
    table: str
    kind: str
    is_external: bool = False
    engine: str | None = None
    cron: str | None = None
    cron_tz: str | None = None  # IANA zone of the cron; None means UTC
    dialect: str | None = None
    interval_unit: str | None = None
    start: str | None = None
    end: str | None = None
    time_column: str | None = None
    # What decides whether the model's intervals can be Dagster partitions (``partitions``).
    lookback: int = 0
    allow_partials: bool = False
    depends_on_self: bool = False
    grain: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    owner: str | None = None
    description: str | None = None
    columns: tuple[ColumnInfo, ...] = ()
    depends_on: tuple[str, ...] = ()
    audits: tuple[AuditInfo, ...] = ()
    rendered_query: str | None = None
    data_hash: str | None = None
    path: str | None = None
    # Output column -> ((upstream model fqn, upstream column), ...), from the rendered
    # query; None when it is unknown (Python models, queries that do not resolve).
    column_lineage: dict[str, tuple[tuple[str, str], ...]] | None = None

    @property
    def is_embedded(self) -> bool:
        """Inlined into its downstream queries by SQLMesh, never written to a table."""
        return self.kind == "EMBEDDED"

    def to_dict(self) -> dict[str, Any]:
        # Shallow copies, not ``asdict``: it deep-copies every value, which JSON does
        # not need, and it is most of the time a cold load spends writing the cache.
        data = dict(vars(self))
        data["columns"] = [dict(vars(c)) for c in self.columns]
        data["audits"] = [dict(vars(a)) for a in self.audits]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        values = dict(data)
        values["columns"] = tuple(ColumnInfo(**c) for c in values.get("columns", ()))
        values["audits"] = tuple(AuditInfo(**a) for a in values.get("audits", ()))
        for name in ("grain", "tags", "depends_on"):
            values[name] = tuple(values.get(name, ()))
        lineage = values.get("column_lineage")
        if lineage is not None:
            values["column_lineage"] = {
                column: tuple((fqn, upstream) for fqn, upstream in deps)
                for column, deps in lineage.items()
            }
        return cls(**values)


@dataclass(frozen=True)
class ProjectDescription:
    """A loaded SQLMesh project: its models in DAG order, and where it runs."""

    project_dir: str
    gateway: str
    engine: str
    default_catalog: str | None
    models: tuple[ModelInfo, ...]
    # Every repo of a multi-repo project (``project_dir`` is the first, or their parent).
    project_dirs: tuple[str, ...] = ()
    standalone_audits: tuple[StandaloneAuditInfo, ...] = ()

    @cached_property
    def models_by_fqn(self) -> dict[str, ModelInfo]:
        # Cached: steps and the asset factory look models up once per model, and
        # rebuilding the map each time made loading quadratic in the model count.
        return {m.fqn: m for m in self.models}

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_dir": self.project_dir,
            "gateway": self.gateway,
            "engine": self.engine,
            "default_catalog": self.default_catalog,
            "models": [m.to_dict() for m in self.models],
            "project_dirs": list(self.project_dirs),
            "standalone_audits": [dict(vars(a)) for a in self.standalone_audits],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectDescription:
        return cls(
            project_dir=data["project_dir"],
            gateway=data["gateway"],
            engine=data["engine"],
            default_catalog=data.get("default_catalog"),
            models=tuple(ModelInfo.from_dict(m) for m in data["models"]),
            project_dirs=tuple(data.get("project_dirs", ())),
            standalone_audits=tuple(
                StandaloneAuditInfo(**{**a, "depends_on": tuple(a.get("depends_on", ()))})
                for a in data.get("standalone_audits", ())
            ),
        )


def load_config(
    project_dir: Path, gateway: str | None, *, check_gateway: bool = True
) -> tuple[Config, str]:
    """Load the project's config with relative DuckDB paths made absolute.

    SQLMesh resolves a DuckDB ``database: db.duckdb`` against the process's working
    directory; we resolve it against the project so that Dagster finds the same
    file wherever it was started. ``check_gateway=False`` accepts a gateway the config
    does not define (the other repos of a multi-repo project: SQLMesh connects with
    the first repo's config).

    Returns the config and the name of the gateway to use.
    """
    from sqlmesh.core.config import Config
    from sqlmesh.core.config.loader import load_configs
    from sqlmesh.utils.errors import ConfigError

    try:
        config = load_configs("config", Config, [project_dir])[project_dir]
    except ConfigError as exc:
        raise SQLMeshDefinitionError(
            f"The SQLMesh config of '{project_dir}' could not be loaded: {exc}"
        ) from exc

    gateways = config.gateways if isinstance(config.gateways, Mapping) else {}
    names = {name.lower(): name for name in gateways}
    chosen = gateway or config.default_gateway or next(iter(gateways), "")
    if check_gateway and gateways and chosen.lower() not in names:
        raise SQLMeshDefinitionError(
            f"Gateway '{chosen}' is not defined in {config_file(project_dir)}. "
            f"Known gateways: {', '.join(sorted(gateways)) or 'none'}. "
            "Pass one of them as gateway=, or add it to the config."
        )
    updates = {name: _absolute_gateway(gw, project_dir) for name, gw in gateways.items()}
    if updates:
        config = config.model_copy(update={"gateways": updates})
    for attr in ("default_connection", "default_state_connection", "default_test_connection"):
        conn = getattr(config, attr, None)
        if conn is not None:
            config = config.model_copy(update={attr: _absolute_connection(conn, project_dir)})
    return config, names.get(chosen.lower(), chosen)


def _absolute_gateway(gateway: Any, project_dir: Path) -> Any:
    update = {}
    for attr in ("connection", "state_connection", "test_connection"):
        conn = getattr(gateway, attr, None)
        if conn is not None:
            update[attr] = _absolute_connection(conn, project_dir)
    return gateway.model_copy(update=update) if update else gateway


def _absolute_connection(conn: Any, project_dir: Path) -> Any:
    def absolute(value: Any) -> Any:
        if not isinstance(value, str) or not value or value == ":memory:":
            return value
        if "://" in value or value.startswith("md:") or Path(value).is_absolute():
            return value
        return str(project_dir / value)

    update: dict[str, Any] = {}
    if getattr(conn, "type_", None) in {"duckdb", "motherduck"} or hasattr(conn, "catalogs"):
        if getattr(conn, "database", None):
            update["database"] = absolute(conn.database)
        catalogs = getattr(conn, "catalogs", None)
        if catalogs:
            update["catalogs"] = {
                name: absolute(path) if isinstance(path, str) else path
                for name, path in catalogs.items()
            }
    return conn.model_copy(update=update) if update else conn


def create_context(
    project_dir: Path | Sequence[Path],
    gateway: str | None,
    *,
    console: Any | None = None,
    notification_targets: list[Any] | None = None,
    load_state: bool = True,
    selector: Any | None = None,
) -> Context:
    """Build a SQLMesh context for the project (loads models; opens no connection).

    ``project_dir`` may be the repo folders of a multi-repo project, loaded together as
    ``sqlmesh -p a -p b`` loads them. With ``load_state`` (SQLMesh's default), a
    multi-repo project's ``load`` reads the models of repos not given from the state,
    which connects to the state database; describing the project passes ``False``.
    ``selector`` is the selector class SQLMesh matches model selections with (its
    ``NativeSelector`` when not given). The caller closes the context.
    """
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    paths = (project_dir,) if isinstance(project_dir, Path) else tuple(project_dir)
    configs: dict[Path, Config] = {}
    gateway_name = ""
    for index, path in enumerate(paths):
        config, name = load_config(path, gateway, check_gateway=index == 0)
        configs[path] = config
        gateway_name = gateway_name or name
    set_console(console or NoopConsole())
    try:
        return Context(
            paths=list(paths),
            config=configs,
            gateway=gateway_name,
            notification_targets=notification_targets,
            selector=selector,
            load=True,
            load_state=load_state,
        )
    except SQLMeshDefinitionError:
        raise
    except Exception as exc:  # SQLMesh raises ConfigError, SQLMeshError, ParseError...
        where = ", ".join(f"'{p}'" for p in paths)
        raise SQLMeshDefinitionError(f"SQLMesh could not load the project {where}: {exc}") from exc


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
    path = None
    if getattr(model, "_path", None):
        try:
            path = str(Path(model._path).resolve().relative_to(project_dir))
        except ValueError:
            path = str(model._path)
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
        column_lineage=column_lineage,
    )


def describe_standalone_audit(audit: Any, project_dir: Path) -> StandaloneAuditInfo:
    """Describe one of SQLMesh's standalone audits (no warehouse access)."""
    path = getattr(audit, "_path", None)
    if path:
        try:
            path = str(Path(path).resolve().relative_to(project_dir))
        except ValueError:
            path = str(path)
    return StandaloneAuditInfo(
        name=audit.name,
        depends_on=tuple(sorted(audit.depends_on)),
        blocking=bool(audit.blocking),
        query=_audit_source_sql(audit, audit.dialect),
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
        sql_cache[key] = _audit_source_sql(audit, dialect)
        sql_cache[("audit-ref", id(audit))] = audit
    return sql_cache[key]


def _audit_source_sql(audit: Any, dialect: str | None) -> str | None:
    # SQLMesh keeps an audit's query as its SQL text (``query_.sql``, as written) and
    # parses it again on every ``audit.query``; reading the text saves a parse and a
    # print per audit. Older SQLMesh releases only have ``query``.
    text = getattr(getattr(audit, "query_", None), "sql", None)
    if isinstance(text, str):
        return text.strip()
    query = getattr(audit, "query", None)
    return query.sql(dialect=dialect) if query else None


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
    from dg_sqlmesh.column_lineage import query_column_lineage

    if not model.is_sql:
        logger.debug("No column lineage for model %s: not a SQL model", model.name)
        return None, None
    try:
        query = model.render_query()
    except Exception:  # noqa: BLE001 - metadata only; execution reports real errors
        return None, None
    if query is None:
        return None, None
    lineage = query_column_lineage(query, model.depends_on, model=model.name)
    return query.sql(dialect=model.dialect, pretty=True, copy=copy), lineage


def load_project(project_dir: ProjectDirs, gateway: str | None = None) -> ProjectDescription:
    """Load a SQLMesh project and describe its models (no warehouse connection).

    ``project_dir``: the project folder, or the repos of a multi-repo project (several
    folders, or their parent). The models of repos not given are not read from the
    state: a model they provide is an upstream (external) asset key.

    Example:
        >>> description = load_project("examples/shop")  # doctest: +SKIP
        >>> [m.name for m in description.models][:2]  # doctest: +SKIP
        ['raw.customers', 'raw.orders']
    """
    repos = resolve_project_dirs(project_dir)
    path = primary_project_dir(project_dir)
    context = create_context(repos, gateway, load_state=False)
    try:
        description = describe_context(
            context, path, context.selected_gateway, discard_context=True, repo_dirs=repos
        )
    finally:
        context.close()  # nothing should be open; never keep the warehouse held if it is
    if not any(not m.is_external for m in description.models):
        where = ", ".join(f"'{r}'" for r in repos)
        raise SQLMeshDefinitionError(
            f"The SQLMesh project {where} has no models. Add a model under models/, "
            "or point project_dir at the right folder."
        )
    return description
