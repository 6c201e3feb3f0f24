"""The serialisable description of a SQLMesh project: its models, audits and columns.

Definitions are built from a :class:`ProjectDescription`, never from a live SQLMesh
context: the description can be cached on disk (see ``catalog_cache``) and loading it
opens no connection to the warehouse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


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
    path: str | None = None  # relative to the project folder
    line: int | None = None  # where the model is defined in ``path``
    source: str | None = None  # ``path``, absolute (the file code references name)
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
