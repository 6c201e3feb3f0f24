"""A SQLMesh project's config, with relative DuckDB paths made absolute."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh import load_project_config
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project.dirs import config_file

if TYPE_CHECKING:
    from sqlmesh import Config


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
    from sqlmesh.utils.errors import ConfigError

    try:
        config = load_project_config(project_dir)
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
