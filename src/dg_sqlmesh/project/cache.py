"""A cached :class:`ProjectDescription`, so definitions load without parsing models.

Dagster loads a code location often: the webserver, the daemon, and every step
process of the multiprocess executor. The description is stored as JSON under a
key that hashes every project file SQLMesh reads (models, macros, audits, seeds,
config), the SQLMesh and library versions and the gateway; any change makes a miss
and a full load. Other files (data, dangling links, unreadable files) are skipped,
and big files count by size and modification time. An unreadable, corrupt or
read-only cache never fails a load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from dg_sqlmesh.project.description import ProjectDescription
from dg_sqlmesh.project.dirs import ProjectDirs, primary_project_dir, resolve_project_dirs
from dg_sqlmesh.project.load import load_project

logger = logging.getLogger(__name__)

CACHE_FORMAT = 10  # 2: ModelInfo.cron_tz; 3: audit queries as written; 4: standalone and
# external-model audits; 5: ModelInfo.column_lineage; 6: the key hashes each file's digest;
# 7: ModelInfo end, lookback, allow_partials, depends_on_self (partitions); 8: a time
# model's query shown with its interval macros, not rendered for 1970-01-01; 9: ModelInfo
# line; 10: ModelInfo source (code references)
# A file's remembered digest is trusted only if the file had not changed for this long
# when it was recorded: a write within the same clock tick as the recording would keep
# its size and modification time (the "racy" case git's index knows).
_SETTLED_NS = 2_000_000_000
_SKIP_DIRS = {".cache", "logs", "__pycache__", ".git", ".venv", "target", ".dagster_home"}
# The files SQLMesh (and its dbt loader) reads to load a project: models, macros, audits,
# tests and configs (SQL, Python, YAML, Jinja), seeds (CSV), dbt docs blocks (Markdown).
# Anything else in the folder (warehouse files, data files, notebooks...) cannot change
# the description and is not read.
_READ_SUFFIXES = {".sql", ".py", ".yaml", ".yml", ".j2", ".jinja", ".csv", ".tsv", ".md", ".json"}
_READ_NAMES = {".env", "sqlmesh-requirements.lock"}
_ENV_READING_SUFFIXES = {".sql", ".py", ".yaml", ".yml", ".j2", ".jinja"}
# Files larger than this (a big seed, say) are fingerprinted by size and modification
# time instead of their bytes: reading gigabytes would make every load slow.
LARGE_FILE_BYTES = 32 * 1024 * 1024
_ENV_REFERENCE = re.compile(
    r"""(?:env_var|getenv|environ\.get)\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]"""
    r"""|environ\[\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\]"""
)


def default_cache_dir(project_dir: Path) -> Path:
    return project_dir / ".cache" / "dg_sqlmesh"


# path -> [size, modification time (ns), sha256 of the content, environment variables read]
FileMemo = dict[str, list]


def project_fingerprint(project_dir: Path | Sequence[Path], gateway: str | None) -> str:
    """A hash of everything the description depends on: every repo's files."""
    return _fingerprint(project_dir, gateway, {})[0]


def _fingerprint(
    project_dir: Path | Sequence[Path], gateway: str | None, known: FileMemo
) -> tuple[str, FileMemo]:
    """The fingerprint, and the digests to remember for the next load.

    A file whose size and modification time match ``known`` is not read again: at 5000
    models reading every file was most of the fingerprint's time.
    """
    from importlib.metadata import version

    repos = (project_dir,) if isinstance(project_dir, Path) else tuple(project_dir)

    digest = hashlib.sha256()
    for part in (
        f"format={CACHE_FORMAT}",
        f"sqlmesh={version('sqlmesh')}",
        f"dg_sqlmesh={_library_version()}",
        f"python={sys.version_info[:2]}",
        f"gateway={gateway or ''}",
        *(f"project={repo}" for repo in repos),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    env_names = {name for name in os.environ if name.upper().startswith("SQLMESH__")}
    settled_before = time.time_ns() - _SETTLED_NS
    memo: FileMemo = {}
    for repo in repos:
        for path in _project_files(repo):
            name = str(path)
            entry = _file_entry(path, known.get(name))
            digest.update(f"{name}\0{entry[2]}\0".encode())
            env_names.update(entry[3])
            if entry[0] >= 0 and entry[1] < settled_before:
                memo[name] = entry
    # The project can read environment variables (config ``env_var('X')``, macros'
    # ``os.environ``): their values are part of what the description depends on.
    for name in sorted(env_names):
        digest.update(f"env:{name}={os.environ.get(name)}".encode())
        digest.update(b"\0")
    return digest.hexdigest(), memo


def _file_entry(path: Path, known: list | None) -> list:
    """``[size, mtime_ns, digest, env names]`` of one file, from ``known`` if unchanged."""
    try:
        stat = path.stat()
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        size, mtime = -1, 0
    if known is not None and known[0] == size and known[1] == mtime and size >= 0:
        return known
    content = _file_content(path)
    if content.startswith(b"unreadable:"):
        size = -1  # never remembered: making it readable changes no size nor mtime
    env: list[str] = []
    if path.suffix in _ENV_READING_SUFFIXES:
        text = content.decode("utf-8", errors="ignore")
        env = sorted({a or b for a, b in _ENV_REFERENCE.findall(text)})
    return [size, mtime, hashlib.sha256(content).hexdigest(), env]


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dg-sqlmesh")
    except PackageNotFoundError:
        return "0+unknown"


def _project_files(project_dir: Path) -> list[Path]:
    """The files of the project SQLMesh may read, in a stable order.

    Skipped, and said so at debug level: files SQLMesh does not read, and entries that
    are not regular files (a dangling or looping link, a socket, a pipe).
    """
    files = []
    for root, dirs, names in os.walk(project_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if name not in _READ_NAMES and (
                name.startswith(".") or path.suffix.lower() not in _READ_SUFFIXES
            ):
                logger.debug("Project fingerprint: skipping %s (not a file SQLMesh reads)", path)
                continue
            try:
                regular = path.is_file()  # follows links: False for a dangling one
            except OSError as exc:  # a link loop, a name too long...
                logger.debug("Project fingerprint: skipping %s (%s)", path, exc)
                continue
            if not regular:
                logger.debug("Project fingerprint: skipping %s (not a regular file)", path)
                continue
            files.append(path)
    return files


def _file_content(path: Path) -> bytes:
    """What stands for the file in the fingerprint: its bytes, or a stand-in."""
    try:
        stat = path.stat()
        if stat.st_size > LARGE_FILE_BYTES:
            logger.debug(
                "Project fingerprint: %s has %d bytes; using its size and modification time",
                path,
                stat.st_size,
            )
            return f"large:{stat.st_size}:{stat.st_mtime_ns}".encode()
        return path.read_bytes()
    except OSError as exc:  # unreadable: SQLMesh will say so if it needs it
        logger.debug("Project fingerprint: cannot read %s (%s)", path, exc)
        return f"unreadable:{type(exc).__name__}".encode()


def _cache_file(cache_dir: Path, gateway: str | None) -> Path:
    return cache_dir / f"description-{gateway or 'default'}.json"


def _read_payload(cache_dir: Path, gateway: str | None) -> dict | None:
    path = _cache_file(cache_dir, gateway)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring unreadable SQLMesh description cache %s: %s", path, exc)
        return None
    return payload if isinstance(payload, dict) else None


def _cached_description(
    payload: dict | None, key: str, cache_dir: Path, gateway: str | None
) -> ProjectDescription | None:
    if payload is None or payload.get("key") != key:
        return None
    try:
        return ProjectDescription.from_dict(payload["description"])
    except (KeyError, TypeError, ValueError) as exc:
        path = _cache_file(cache_dir, gateway)
        logger.warning("Ignoring corrupt SQLMesh description cache %s: %s", path, exc)
        return None


def read_cached(cache_dir: Path, gateway: str | None, key: str) -> ProjectDescription | None:
    return _cached_description(_read_payload(cache_dir, gateway), key, cache_dir, gateway)


def write_cached(
    cache_dir: Path,
    gateway: str | None,
    key: str,
    description: ProjectDescription,
    files: FileMemo | None = None,
) -> None:
    path = _cache_file(cache_dir, gateway)
    tmp = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"key": key, "files": files or {}, "description": description.to_dict()}
        )
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
        os.replace(tmp, path)  # atomic: concurrent loaders never read half a file
    except OSError as exc:
        logger.debug("Not caching the SQLMesh description in %s: %s", cache_dir, exc)
        if tmp is not None:  # no half-written leftovers
            try:
                os.unlink(tmp)
            except OSError:
                pass


def load_description(
    project_dir: ProjectDirs,
    gateway: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> ProjectDescription:
    """Describe the project, from the cache when none of its repos' files has changed."""
    repos = resolve_project_dirs(project_dir)
    if not use_cache:
        return load_project(project_dir, gateway)
    directory = (
        Path(cache_dir) if cache_dir else default_cache_dir(primary_project_dir(project_dir))
    )
    payload = _read_payload(directory, gateway)
    known = payload.get("files") if payload else None
    key, files = _fingerprint(repos, gateway, known if isinstance(known, dict) else {})
    cached = _cached_description(payload, key, directory, gateway)
    if cached is not None:
        return cached
    description = load_project(project_dir, gateway)
    write_cached(directory, gateway, key, description, files)
    return description
