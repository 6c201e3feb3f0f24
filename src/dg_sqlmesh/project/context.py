"""Building a SQLMesh context for a project (one repo, or several)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh import use_sqlmesh_console
from dg_sqlmesh.errors import SQLMeshDefinitionError, plain_text
from dg_sqlmesh.project.config import load_config

if TYPE_CHECKING:
    from sqlmesh import Config, Context


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

    paths = (project_dir,) if isinstance(project_dir, Path) else tuple(project_dir)
    configs: dict[Path, Config] = {}
    gateway_name = ""
    for index, path in enumerate(paths):
        config, name = load_config(path, gateway, check_gateway=index == 0)
        configs[path] = config
        gateway_name = gateway_name or name
    use_sqlmesh_console(console)
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
        raise SQLMeshDefinitionError(
            f"SQLMesh could not load the project {where}: {plain_text(exc)}"
        ) from exc
