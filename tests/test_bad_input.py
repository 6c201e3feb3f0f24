"""Load-time bad input gives clear messages; loading does not depend on the working folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import materialized, model_assets, plan_project, run_in_process
from projects.generate import generate_project, project_models

from dg_sqlmesh import SQLMeshDefinitionError, sqlmesh_definitions_factory
from dg_sqlmesh.metadata import RUN
from dg_sqlmesh.project.load import load_project

VENV_BIN = Path(sys.executable).parent


def load(project_dir, **options) -> dg.Definitions:
    return sqlmesh_definitions_factory(project_dir=str(project_dir), **options)


def error_of(project_dir, **options) -> str:
    with pytest.raises(SQLMeshDefinitionError) as info:
        load(project_dir, **options)
    return str(info.value)


# --- where the project is ----------------------------------------------------------------


def test_missing_project_dir(tmp_path):
    missing = tmp_path / "nowhere"
    message = error_of(missing)
    assert str(missing) in message
    assert "does not exist" in message


def test_file_instead_of_folder(tmp_path):
    file = tmp_path / "config.yaml"
    file.write_text("gateways: {}\n")
    message = error_of(file)
    assert str(file) in message
    assert "is a file, not a folder" in message


def test_folder_that_is_not_a_sqlmesh_project(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.sql").write_text("SELECT 1")
    message = error_of(tmp_path)
    assert "is not a SQLMesh project" in message
    assert "config.yaml" in message


def test_unknown_gateway_lists_known_ones(shop_project):
    message = error_of(shop_project, gateway="snowflake")
    assert "Gateway 'snowflake'" in message
    assert "Known gateways: duckdb, postgres" in message


def test_a_mistyped_option_is_named(shop_project):
    message = error_of(shop_project, apply_plan="maybe")
    assert "sqlmesh_definitions_factory option 'apply_plan'" in message
    assert "'maybe'" in message


def test_an_unknown_option_is_python_s_own_error(shop_project):
    """The factories take typed keywords, so a misspelt one is caught by a type checker
    and, at run time, by Python itself."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'gatewy'"):
        load(shop_project, gatewy="duckdb")


def test_gateway_name_is_case_insensitive(shop_project):
    defs = load(shop_project, gateway="DuckDB")
    assert len(model_assets(defs)) == 12


# --- broken project content ---------------------------------------------------------------


def test_model_that_fails_to_parse_names_the_file(shop_project):
    broken = shop_project / "models" / "staging" / "broken.sql"
    broken.write_text("MODEL (name staging.broken, kind FULL);\nSELECT 1 AS AS x\n")
    message = error_of(shop_project)
    assert str(broken) in message
    assert "Failed to load model" in message
    assert "SELECT 1 AS AS x" in message and "\x1b" not in message  # no terminal codes


def test_malformed_convention_tag_names_model_and_tag(shop_project):
    path = shop_project / "models" / "marts" / "customer_orders.sql"
    text = path.read_text().replace("'dagster:group_name:marts'", "'dagster:group_nam:marts'")
    path.write_text(text)
    message = error_of(shop_project)
    assert "marts.customer_orders" in message
    assert "models/marts/customer_orders.sql" in message
    assert "'dagster:group_nam:marts'" in message
    assert "Did you mean 'dagster:group_name:marts'?" in message


def test_empty_project(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: e.duckdb\n"
        "default_gateway: local\nmodel_defaults:\n  dialect: duckdb\n"
    )
    (tmp_path / "models").mkdir()
    message = error_of(tmp_path)
    assert "has no models" in message
    assert str(tmp_path) in message


def test_project_with_only_external_models_is_empty(shop_project):
    shutil.rmtree(shop_project / "models")
    (shop_project / "models").mkdir()
    assert "has no models" in error_of(shop_project)


# --- working folder independence ----------------------------------------------------------


def _snapshot(defs: dg.Definitions) -> dict:
    return {
        spec.key: (spec.deps, spec.metadata, spec.code_version, spec.group_name, spec.owners)
        for a in model_assets(defs)
        for spec in a.specs
    }


def test_loads_identically_from_two_working_folders(shop_project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)

    monkeypatch.chdir(shop_project.parent)
    first = load_project("shop")
    first_defs = load("shop", cache_dir=str(tmp_path / "cache1"))

    monkeypatch.chdir(elsewhere)
    second = load_project("../../shop")
    second_defs = load("../../shop", cache_dir=str(tmp_path / "cache2"))

    assert first == second
    assert first.project_dir == str(shop_project.resolve())
    assert _snapshot(first_defs) == _snapshot(second_defs)
    assert len(_snapshot(first_defs)) == 12


def test_relative_duckdb_path_resolves_against_the_project(tmp_path, monkeypatch, instance):
    root = generate_project(tmp_path / "proj", 3)  # config.yaml: database: db.duckdb
    assert 'database: "db.duckdb"' in (root / "config.yaml").read_text()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    plan_project(root)
    result = run_in_process(root, instance)
    assert result.success
    expected = {f"db/{m['name'].replace('.', '/')}" for m in project_models(3)}
    assert set(materialized(instance, result.run_id)) == expected
    assert (root / "db.duckdb").exists()
    assert not list(cwd.glob("*.duckdb"))


# --- a project fresh from `sqlmesh init` --------------------------------------------------


def test_sqlmesh_init_project_loads_validates_and_runs(tmp_path, monkeypatch, instance):
    root = tmp_path / "fresh"
    root.mkdir()
    subprocess.run(
        [str(VENV_BIN / "sqlmesh"), "init", "duckdb"],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=120,
    )
    defs = load(root)
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for a in model_assets(defs) for key in a.keys}
    assert keys == {
        "db/sqlmesh_example/seed_model",
        "db/sqlmesh_example/incremental_model",
        "db/sqlmesh_example/full_model",
    }
    assert not (root / "db.db").exists()  # loading opened no database

    monkeypatch.chdir(tmp_path)  # not the project folder: `database: db.db` is relative
    plan_project(root)
    result = run_in_process(root, instance)
    assert result.success
    shown = materialized(instance, result.run_id)
    assert set(shown) == keys
    assert all(md[RUN.state] == "materialized" for md in shown.values())
    assert (root / "db.db").exists()
