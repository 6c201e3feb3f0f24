"""SQLMeshProjectComponent: a defs.yaml loads what sqlmesh_definitions_factory builds.

Real components loaded by Dagster's component machinery from real defs.yaml files,
over a copy of the example project; no mocks.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from helpers.harness import model_assets

from dg_sqlmesh import (
    SQLMeshDefinitionError,
    SQLMeshProjectComponent,
    SQLMeshTranslator,
    sqlmesh_definitions_factory,
)
from dg_sqlmesh.components.scaffolder import PLACEHOLDER_PROJECT

TYPE_NAME = "dg_sqlmesh.SQLMeshProjectComponent"
# metadata Dagster adds to every asset of a component (where it is defined)
COMPONENT_METADATA = {"dagster/code_references", "dagster/component_origin"}
DG_CLI = shutil.which("dg") or shutil.which("dg", path=str(Path(sys.executable).parent))


def _write_defs(sandbox, attributes: dict, name: str = "warehouse") -> Path:
    """A defs.yaml of the component in the sandbox's defs folder; returns its folder."""
    defs_path = sandbox.defs_folder_path / name
    defs_path.mkdir(parents=True)
    (defs_path / "defs.yaml").write_text(
        yaml.safe_dump({"type": TYPE_NAME, "attributes": attributes})
    )
    return defs_path


def _specs(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    """The spec of every model asset, without the metadata Dagster adds to components'."""
    specs = {}
    for asset in model_assets(defs):
        for spec in asset.specs:
            metadata = {k: v for k, v in spec.metadata.items() if k not in COMPONENT_METADATA}
            specs[spec.key] = spec.replace_attributes(metadata=metadata)
    return specs


def _check_keys(defs: dg.Definitions) -> set[dg.AssetCheckKey]:
    return {key for a in model_assets(defs) for key in a.check_keys}


def test_defs_yaml_loads_what_the_factory_builds(shop_project):
    options = {
        "gateway": "duckdb",
        "environment": "prod",
        "external_asset_mapping": "raw/{node.schema}/{node.name}",
        "group_name": "warehouse",
        "owners": ["team:data"],
        "enable_schedule": True,
        "row_counts": False,
    }
    expected = sqlmesh_definitions_factory(project_dir=str(shop_project), **options)

    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.defs_folder_path / "warehouse"
        # project: relative to the folder of defs.yaml
        relative = os.path.relpath(shop_project, defs_path)
        _write_defs(sandbox, {"project": relative, **options})
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            assert isinstance(component, SQLMeshProjectComponent)
            assert Path(component.project) == shop_project.resolve()
            specs = _specs(defs)
            assert specs == _specs(expected)
            assert _check_keys(defs) == _check_keys(expected)
            assert defs.resolve_job_def("sqlmesh_job").name == "sqlmesh_job"
            assert {s.name for s in defs.schedules or []} == {"sqlmesh_adaptive_schedule"}
            assert set(defs.resources or {}) == {"sqlmesh", "sqlmesh_results"}
            assert defs.resources["sqlmesh"].project_dir == str(shop_project.resolve())
            assert defs.resources["sqlmesh"].row_counts is False

    keys = {key.to_user_string() for key in specs}
    assert "shop/marts/daily_revenue" in keys
    upstream = {dep.asset_key.to_user_string() for spec in specs.values() for dep in spec.deps}
    assert "raw/payments/transactions" in upstream  # the external model, mapped


def test_every_option_of_the_factory_is_an_attribute(shop_project):
    """The resource's options (retries, plans, ...) and the pool reach the definitions too."""
    options = {"max_transient_retries": 7, "ignore_cron": True, "pool": "warehouse"}
    with create_defs_folder_sandbox() as sandbox:
        defs_path = _write_defs(sandbox, {"project": str(shop_project), **options})
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            resource = defs.resources["sqlmesh"]
            assert (resource.max_transient_retries, resource.ignore_cron) == (7, True)
            assert {a.op.pool for a in model_assets(defs)} == {"warehouse"}


def test_translation_and_jinja_external_mapping(shop_project):
    attributes = {
        "project": str(shop_project),
        # Jinja here is rendered per external model by dg-sqlmesh, not at load time
        "external_asset_mapping": "raw/{{ node.schema }}/{{ node.name }}",
        "translation": {
            "key_prefix": "wh",
            "group_name": "sqlmesh_{{ node.schema }}",
            "tags": {"sqlmesh_table": "{{ node.table }}"},
        },
    }
    with create_defs_folder_sandbox() as sandbox:
        defs_path = _write_defs(sandbox, attributes)
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (_, defs):
            specs = _specs(defs)
            check_keys = _check_keys(defs)

    plain = _specs(sqlmesh_definitions_factory(project_dir=str(shop_project)))
    assert set(specs) == {key.with_prefix("wh") for key in plain}
    revenue = specs[dg.AssetKey(["wh", "shop", "marts", "daily_revenue"])]
    assert revenue.group_name == "sqlmesh_marts"
    assert revenue.tags["sqlmesh_table"] == "daily_revenue"
    # the translator's tags are kept (tags are merged), as is the rest of the spec
    base = plain[dg.AssetKey(["shop", "marts", "daily_revenue"])]
    assert set(base.tags) < set(revenue.tags)
    assert revenue.code_version == base.code_version
    # dependencies between models and asset checks follow the translated keys
    deps = {dep.asset_key for spec in specs.values() for dep in spec.deps}
    assert dg.AssetKey(["raw", "payments", "transactions"]) in deps
    assert all(key.path[0] in ("wh", "raw") for key in deps)
    assert check_keys and {ck.asset_key for ck in check_keys} <= set(specs)


def test_missing_project_names_the_attribute(tmp_path):
    with create_defs_folder_sandbox() as sandbox:
        defs_path = _write_defs(sandbox, {"project": "no_such_project"})
        with pytest.raises(Exception) as info:
            with sandbox.load_component_and_build_defs(defs_path=defs_path):
                pass
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    errors = [e for e in chain if isinstance(e, SQLMeshDefinitionError)]
    assert errors, chain
    assert "project: no_such_project" in str(errors[0])
    assert "does not exist" in str(errors[0])


def test_scaffolder_writes_a_loadable_defs_yaml(shop_project):
    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.scaffold_component(
            component_cls=SQLMeshProjectComponent,
            defs_path="my_sqlmesh",
            scaffold_params={"project_path": str(shop_project), "gateway": "duckdb"},
        )
        written = yaml.safe_load((defs_path / "defs.yaml").read_text())
        # the sandbox scaffolds by module path; `dg scaffold defs` by the registered name
        assert written["type"].endswith(".SQLMeshProjectComponent")
        assert written == {
            "type": written["type"],
            "attributes": {
                "project": Path(os.path.relpath(shop_project, defs_path)).as_posix(),
                "gateway": "duckdb",
            },
        }
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (_, defs):
            keys = set(_specs(defs))
            assert defs.resolve_job_def("sqlmesh_job")

        # no --project-path: a placeholder to edit; a folder that is no project: refused
        empty = sandbox.scaffold_component(component_cls=SQLMeshProjectComponent)
        assert yaml.safe_load((empty / "defs.yaml").read_text())["attributes"] == {
            "project": PLACEHOLDER_PROJECT
        }
        with pytest.raises(SQLMeshDefinitionError, match="not a SQLMesh project"):
            sandbox.scaffold_component(
                component_cls=SQLMeshProjectComponent,
                scaffold_params={"project_path": str(shop_project / "models")},
            )

    assert keys == set(_specs(sqlmesh_definitions_factory(project_dir=str(shop_project))))


def test_registered_for_dg():
    """The entry point the `dg` CLI reads lists the component under its YAML type name."""
    from dagster.components.core.package_entry import (
        DG_PLUGIN_ENTRY_POINT_GROUP,
        discover_entry_point_package_objects,
    )

    points = importlib.metadata.entry_points(group=DG_PLUGIN_ENTRY_POINT_GROUP)
    assert "dg_sqlmesh" in {p.value for p in points}
    found = {key.to_typename(): obj for key, obj in discover_entry_point_package_objects().items()}
    assert found[TYPE_NAME] is SQLMeshProjectComponent


@pytest.mark.skipif(DG_CLI is None, reason="the dg CLI (dagster-dg-cli) is not installed")
def test_dg_cli_scaffolds(tmp_path, shop_project):
    project = tmp_path / "dgproj"
    (project / "src" / "dgproj" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "dgproj"\nversion = "0.0.1"\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "dgproj"\n'
    )

    def run(*args: str) -> str:
        done = subprocess.run(
            [DG_CLI, *args], cwd=project, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # dg resolves the type through the registry (the entry point) before scaffolding
    run("scaffold", "defs", TYPE_NAME, "warehouse", "--project-path", str(shop_project))
    written = yaml.safe_load((project / "src/dgproj/defs/warehouse/defs.yaml").read_text())
    assert written["type"] == TYPE_NAME
    defs_dir = project / "src/dgproj/defs/warehouse"
    assert (defs_dir / written["attributes"]["project"]).resolve() == shop_project.resolve()


def test_a_subclass_changes_specs_through_get_asset_spec_and_get_translator(shop_project):
    """Python customisation the DbtProjectComponent way: get_translator starts the spec,
    get_asset_spec finishes it (after translation:), checks and deps follow the keys."""

    class Prefixed(SQLMeshTranslator):
        def get_asset_key(self, model):
            return super().get_asset_key(model).with_prefix("wh")

    class Teamed(SQLMeshProjectComponent):
        def get_translator(self):
            return Prefixed()

        def get_asset_spec(self, model, spec):
            spec = super().get_asset_spec(model, spec)
            return spec.merge_attributes(tags={"team": model.schema})

    component = Teamed(
        project=str(shop_project),
        translation=lambda spec, model: spec.replace_attributes(group_name="warehouse"),
    )
    defs = dg.component_defs(component=component)
    specs = _specs(defs)
    revenue = specs[dg.AssetKey(["wh", "shop", "marts", "daily_revenue"])]
    assert (revenue.tags["team"], revenue.group_name) == ("marts", "warehouse")
    assert all(key.path[0] == "wh" for key in specs)
    assert {ck.asset_key for ck in _check_keys(defs)} <= set(specs)


def test_the_component_offers_branch_environments_plans_and_the_janitor(shop_project, monkeypatch):
    """In a branch deployment the component's runs use the branch's environment; its
    definitions hold the plan and janitor jobs, the janitor schedule, and change tags."""
    monkeypatch.setenv("DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT", "1")
    monkeypatch.setenv("DAGSTER_CLOUD_PULL_REQUEST_ID", "12")
    attributes = {"project": str(shop_project), "janitor_schedule": "0 4 * * *"}
    with create_defs_folder_sandbox() as sandbox:
        defs_path = _write_defs(sandbox, {**attributes, "compare_with": "prod"})
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            resource = defs.resources["sqlmesh"]
            assert (resource.environment, resource.apply_plan) == ("pr_12", True)
            jobs = {job.name for job in defs.jobs or []}
            assert {"sqlmesh_job", "sqlmesh_plan", "sqlmesh_janitor"} <= jobs
            schedules = {s.name: s.cron_schedule for s in defs.schedules or []}
            assert schedules == {"sqlmesh_janitor_schedule": "0 4 * * *"}
            changes = {s.tags.get("sqlmesh/change") for a in model_assets(defs) for s in a.specs}
            assert changes == {"new"}  # this copy of the shop has no prod environment yet


def test_the_component_loads_from_its_refreshed_state_without_parsing_the_project(
    shop_project, monkeypatch
):
    """``refresh_state`` (what ``dg utils refresh-defs-state`` runs) keeps the project's
    description as the component's state; loading then never parses the project with
    SQLMesh, nor reads the description cache, and builds the same definitions."""
    import asyncio

    import dg_sqlmesh.project.cache as cache
    import dg_sqlmesh.project.load as load

    with create_defs_folder_sandbox() as sandbox:
        defs_path = _write_defs(sandbox, {"project": str(shop_project)})
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            expected = _specs(defs)
            asyncio.run(component.refresh_state(sandbox.project_root))

        def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError("the project was parsed with SQLMesh")

        monkeypatch.setattr(load, "load_project", refuse)
        monkeypatch.setattr(cache, "load_project", refuse)
        monkeypatch.setattr(cache, "load_description", refuse)
        shutil.rmtree(shop_project / ".cache", ignore_errors=True)
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            assert _specs(defs) == expected
            assert defs.resolve_job_def("sqlmesh_job").name == "sqlmesh_job"
