"""Project shapes real users have: the config file names SQLMesh accepts, and project
folders holding files SQLMesh never reads (dangling links, data files, special files).

Each shape is a small real project under ``tests/projects/``, copied into the test's own
folder and run through Dagster on its own DuckDB file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.harness import copy_project, materialized, plan_project, query, run_in_process

import dg_sqlmesh.resource
from dg_sqlmesh import sqlmesh_definitions_factory

PROJECTS = Path(__file__).parent / "projects"


@pytest.fixture(autouse=True)
def _fresh_memo():
    dg_sqlmesh.resource._DESCRIPTIONS.clear()  # each test loads its own copy from disk
    yield
    dg_sqlmesh.resource._DESCRIPTIONS.clear()


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
