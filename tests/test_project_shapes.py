"""Project shapes real users have: the config file names SQLMesh accepts, and project
folders holding files SQLMesh never reads (dangling links, data files, special files).

Each shape is a small real project under ``tests/projects/``, copied into the test's own
folder and run through Dagster on its own DuckDB file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from helpers.harness import copy_project, materialized, plan_project, query, run_in_process

from dg_sqlmesh import sqlmesh_definitions_factory
from dg_sqlmesh.project.cache import load_description, project_fingerprint

PROJECTS = Path(__file__).parent / "projects"


# --- config file names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sqlmesh.yaml", "sqlmesh.yml"])
def test_sqlmesh_yaml_config_is_accepted_and_runs(tmp_path, instance, name):
    project = copy_project(PROJECTS / "sqlmesh_yaml", tmp_path / "proj")
    if name != "sqlmesh.yaml":
        (project / "sqlmesh.yaml").rename(project / name)
    plan_project(project)

    result = run_in_process(project, instance)

    assert result.success
    assert set(materialized(instance, result.run_id)) == {"warehouse/shapes/items"}
    assert query(project / "warehouse.duckdb", "SELECT id, label FROM shapes.items ORDER BY 1") == [
        (1, "a"),
        (2, "b"),
    ]


def test_unknown_gateway_names_the_sqlmesh_yaml(tmp_path):
    from dg_sqlmesh import SQLMeshDefinitionError

    project = copy_project(PROJECTS / "sqlmesh_yaml", tmp_path / "proj")
    with pytest.raises(SQLMeshDefinitionError) as info:
        sqlmesh_definitions_factory(project_dir=str(project), gateway="nope")
    assert str(project / "sqlmesh.yaml") in str(info.value)


# --- files SQLMesh never reads -----------------------------------------------------------


def _clutter(project: Path) -> dict[str, Path]:
    """What people leave in project folders, made in place (links do not copy)."""
    exports = project / "exports"
    exports.mkdir()
    dangling = exports / "latest.csv"
    dangling.symlink_to(exports / "gone.csv")  # the export it pointed at was deleted
    loop = project / "docs" / "loop.md"
    loop.symlink_to(loop)
    big_data = exports / "events.parquet"
    with open(big_data, "wb") as handle:  # sparse: no disk, but a gigabyte to read
        handle.truncate(1024**3)
    big_csv = exports / "history.csv"
    with open(big_csv, "wb") as handle:
        handle.truncate(64 * 1024**2)
    return {"dangling": dangling, "loop": loop, "big_data": big_data, "big_csv": big_csv}


def test_dangling_links_and_big_data_files_never_break_the_load(tmp_path, instance, caplog):
    project = copy_project(PROJECTS / "cluttered", tmp_path / "proj")
    clutter = _clutter(project)
    plan_project(project)

    with caplog.at_level(logging.DEBUG, logger="dg_sqlmesh.project.cache"):
        description = load_description(project)
    assert {m.name for m in description.models} == {"shop.prices", "shop.expensive"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for what in ("dangling", "loop", "big_data", "big_csv"):
        assert str(clutter[what]) in logged, f"the {what} file is not said to be skipped"

    result = run_in_process(project, instance)
    assert result.success
    assert query(project / "warehouse.duckdb", "SELECT sku FROM shop.expensive") == [("b",)]


def test_skipped_files_do_not_invalidate_but_a_seed_change_does(tmp_path):
    project = copy_project(PROJECTS / "cluttered", tmp_path / "proj")
    clutter = _clutter(project)
    first = load_description(project)
    key = project_fingerprint(project, None)

    with open(clutter["big_data"], "r+b") as handle:  # new data, same size: not SQLMesh's
        handle.write(b"PAR1")
    (project / "notebook.ipynb").write_text("{}")
    assert project_fingerprint(project, None) == key

    with open(clutter["big_csv"], "ab") as handle:  # a big CSV may be a seed: size counts
        handle.write(b"x")
    assert project_fingerprint(project, None) != key

    seeds = project / "seeds" / "prices.csv"
    seeds.write_text(seeds.read_text() + "c,30\n")
    second = load_description(project)
    prices = {m.name: m.data_hash for m in second.models}["shop.prices"]
    assert prices != {m.name: m.data_hash for m in first.models}["shop.prices"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_never_breaks_the_load(tmp_path):
    project = copy_project(PROJECTS / "cluttered", tmp_path / "proj")
    secret = project / "exports.yaml"
    secret.write_text("token: x\n")
    secret.chmod(0)
    try:
        assert len(load_description(project).models) == 2
    finally:
        secret.chmod(0o644)
