"""Where a SQLMesh project lives: one folder, or the repos of a multi-repo project.

A multi-repo project is several folders, each with its own config (``project: <name>``),
loaded together as ``sqlmesh -p repo_a -p repo_b`` does. ``project_dir`` names them one
by one, or names their parent folder, whose subfolders holding a config are the repos.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dg_sqlmesh.errors import SQLMeshDefinitionError

# The config files SQLMesh reads from a project folder (``sqlmesh init -t dbt`` writes
# ``sqlmesh.yaml``); the first one present names the project's config in messages.
CONFIG_FILENAMES = ("config.yaml", "config.yml", "config.py", "sqlmesh.yaml", "sqlmesh.yml")
_CONFIG_NAMES = ", ".join(CONFIG_FILENAMES)

ProjectDirs = str | Path | Sequence[str | Path]


def config_file(project_dir: Path) -> Path:
    """The project's config file (the first of ``CONFIG_FILENAMES`` present)."""
    return next(
        (project_dir / n for n in CONFIG_FILENAMES if (project_dir / n).is_file()),
        project_dir / CONFIG_FILENAMES[0],
    )


def has_config(folder: Path) -> bool:
    return any((folder / name).is_file() for name in CONFIG_FILENAMES)


def resolve_project_dir(project_dir: str | Path) -> Path:
    """Return the absolute project folder, or raise a clear error if it is not one.

    The folder holds a SQLMesh config, or is the parent of the repos of a multi-repo
    project (subfolders that hold one).
    """
    path = Path(project_dir).expanduser()
    if not path.exists():
        resolved = "" if path.is_absolute() else f" (relative to {Path.cwd()}, where this runs)"
        raise SQLMeshDefinitionError(
            f"SQLMesh project folder '{path}'{resolved} does not exist. "
            f"Pass project_dir= the folder that holds the project's config ({_CONFIG_NAMES})."
        )
    if not path.is_dir():
        raise SQLMeshDefinitionError(
            f"SQLMesh project path '{path}' is a file, not a folder. "
            f"Pass project_dir= the folder that holds the project's config ({_CONFIG_NAMES})."
        )
    path = path.resolve()
    if not has_config(path) and not _repos_under(path):
        raise SQLMeshDefinitionError(
            f"'{path}' is not a SQLMesh project: it has no config file ({_CONFIG_NAMES}), "
            "and no subfolder has one. Point project_dir at the project root (for a "
            "multi-repo project, at each repo or at their parent folder), or create one "
            "with `sqlmesh init duckdb`."
        )
    return path


def resolve_project_dirs(project_dir: ProjectDirs) -> tuple[Path, ...]:
    """Every repo folder of the project, absolute, in the order given.

    A folder without a config stands for its subfolders that have one (sorted by name).
    """
    given = [project_dir] if isinstance(project_dir, str | Path) else list(project_dir)
    if not given:
        raise SQLMeshDefinitionError(
            "project_dir= is an empty list. Pass the SQLMesh project folder, or the "
            "folders of the repos of a multi-repo project."
        )
    repos: list[Path] = []
    for entry in given:
        path = resolve_project_dir(entry)
        for repo in [path] if has_config(path) else _repos_under(path):
            if repo not in repos:
                repos.append(repo)
    return tuple(repos)


def primary_project_dir(project_dir: ProjectDirs) -> Path:
    """The folder that stands for the project: the one given, or the first of several.

    The description cache lives under it by default.
    """
    first = project_dir if isinstance(project_dir, str | Path) else next(iter(project_dir), "")
    return resolve_project_dir(first)


def split_project_dirs(project_dir: ProjectDirs) -> tuple[str, list[str]]:
    """``project_dir`` as ``SQLMeshResource`` takes it: the first folder, and the others."""
    given = [project_dir] if isinstance(project_dir, str | Path) else list(project_dir)
    if not given:
        resolve_project_dirs(given)  # raises the error naming the problem
    return str(given[0]), [str(d) for d in given[1:]]


def _repos_under(parent: Path) -> list[Path]:
    try:
        children = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    return [child.resolve() for child in children if has_config(child)]
