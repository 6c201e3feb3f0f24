"""A Dagster instance whose every process has its own local storage folder.

On the Kubernetes job executor or Dagster+, each step runs in a pod of its own: the steps
share the instance's database and nothing else. ``PerProcessArtifactStorage`` gives every
process that opens the instance a fresh ``base_dir`` of its own under ``root``, so a test
can prove that a run's steps coordinate through the database alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import StringSource
from dagster._core.storage.root import LocalArtifactStorage


class PerProcessArtifactStorage(LocalArtifactStorage):
    @classmethod
    def config_type(cls) -> dict:
        return {"root": StringSource}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]):  # noqa: ANN206
        root = Path(config_value["root"])
        root.mkdir(parents=True, exist_ok=True)
        base = tempfile.mkdtemp(prefix=f"pid{os.getpid()}-", dir=root)
        return cls(base_dir=base, inst_data=inst_data)


def split_storage_overrides(storage: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """``dagster.yaml`` overrides: ``storage`` (e.g. PostgreSQL) shared, local folders not."""
    return {
        "storage": dict(storage),
        "local_artifact_storage": {
            "module": "helpers.split_storage",
            "class": "PerProcessArtifactStorage",
            "config": {"root": str(root)},
        },
    }


def files_under(root: Path) -> list[str]:
    """Every file any process wrote under ``root`` (relative paths)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@contextlib.contextmanager
def split_pg_instance(pg: Any, tmp_path: Path, dbname: str) -> Iterator[tuple[Any, Path]]:
    """A Dagster instance on a fresh database ``dbname`` of ``pg`` whose every process has
    its own local storage folder (under ``tmp_path / "local"``): the instance and that root."""
    import dagster as dg

    pg.drop_database(dbname)
    pg.create_database(dbname)
    home = tmp_path / "dagster_home"
    home.mkdir()
    local = tmp_path / "local"
    overrides = split_storage_overrides(pg.dagster_storage(dbname), local)
    with dg.instance_for_test(temp_dir=str(home), overrides=overrides) as instance:
        yield instance, local
