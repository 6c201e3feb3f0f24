"""Selecting the models that become assets with SQLMesh's own selector syntax, resolved
from the project description: the same models ``sqlmesh`` selects for the expression."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from dg_sqlmesh import (
    build_sqlmesh_asset_selection,
    get_asset_key_for_model,
    get_model_for_asset_key,
    sqlmesh_definitions_factory,
)
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.project.context import create_context

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop"
EXPRESSIONS = [
    "raw.orders",
    "raw.*",
    "*revenue*",
    "tag:pii",
    "tag:p*",
    "+marts.daily_revenue",
    "staging.stg_orders+",
    "+staging.stg_orders+",
    "marts.* | staging.stg_customers",
    "staging.* & tag:pii",
    "^raw.*",
    "raw.orders+ & marts.*",
]


@pytest.fixture(scope="module")
def sqlmesh_selects(tmp_path_factory):
    """What SQLMesh's own selector (``sqlmesh plan --select-model``) selects, by name."""
    from helpers.harness import copy_project

    project = copy_project(EXAMPLE, tmp_path_factory.mktemp("shop") / "shop")
    context = create_context(project, None)  # its DuckDB file in the copy, as ours
    selector = context._new_selector()

    def select(expression: str) -> set[str]:
        fqns = selector.expand_model_selections([expression])
        return {
            context.get_model(f).name for f in fqns if not context.get_model(f).kind.is_external
        }

    yield project, select
    context.close()


def _asset_models(defs) -> set[str]:  # noqa: ANN001
    return {
        a.op.tags[MODEL.model]
        for a in defs.assets
        if getattr(a, "is_executable", False) and MODEL.model in a.op.tags
    }


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_select_defines_the_models_sqlmesh_selects(sqlmesh_selects, expression):
    project, select = sqlmesh_selects
    expected = select(expression)
    assert expected  # every expression here selects something
    defs = sqlmesh_definitions_factory(project_dir=str(project), select=expression)
    assert _asset_models(defs) == expected


def test_exclude_leaves_out_what_sqlmesh_selects(sqlmesh_selects):
    project, select = sqlmesh_selects
    everything = select("*")
    defs = sqlmesh_definitions_factory(
        project_dir=str(project), select=["marts.*", "staging.*"], exclude="tag:pii"
    )
    assert _asset_models(defs) == (select("marts.*") | select("staging.*")) - select("tag:pii")
    assert _asset_models(defs) < everything


def test_a_selection_matching_nothing_names_the_expression(sqlmesh_selects):
    project, _ = sqlmesh_selects
    with pytest.raises(SQLMeshDefinitionError, match="'raw.ordrs'"):
        sqlmesh_definitions_factory(project_dir=str(project), select=["raw.orders", "raw.ordrs"])


def test_a_selected_run_executes_only_the_selected_models(sqlmesh_selects, tmp_path, instance):
    """The definitions hold only the selected models: their job runs SQLMesh for them."""
    from helpers.harness import copy_project, plan_project

    project = copy_project(sqlmesh_selects[0], tmp_path / "shop")
    plan_project(project)
    defs = sqlmesh_definitions_factory(project_dir=str(project), select="+staging.stg_orders")
    result = defs.resolve_job_def("sqlmesh_job").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"shop/raw/orders", "shop/staging/stg_orders"}


def test_an_asset_selection_holds_the_selected_models_and_their_checks(sqlmesh_selects):
    project, select = sqlmesh_selects
    defs = sqlmesh_definitions_factory(project_dir=str(project))
    assets = list(defs.assets)
    selection = build_sqlmesh_asset_selection(
        assets, sqlmesh_resource=defs.resources["sqlmesh"], select="+marts.daily_revenue"
    )
    graph = defs.resolve_asset_graph()
    keys = selection.resolve(graph)
    assert {get_model_for_asset_key(assets, key) for key in keys} == select("+marts.daily_revenue")
    checks = selection.resolve_checks(graph)
    assert checks and {check.asset_key for check in checks} <= keys
    expected_checks = {
        c for a in assets for c in getattr(a, "check_keys", ()) if c.asset_key in keys
    }
    assert checks == expected_checks


def test_a_models_asset_key_and_back(sqlmesh_selects):
    project, _ = sqlmesh_selects
    assets = list(sqlmesh_definitions_factory(project_dir=str(project)).assets)
    key = get_asset_key_for_model(assets, "marts.daily_revenue")
    assert key == dg.AssetKey(["shop", "marts", "daily_revenue"])
    assert get_model_for_asset_key(assets, key) == "marts.daily_revenue"
    with pytest.raises(SQLMeshDefinitionError, match="Did you mean marts.daily_revenue"):
        get_asset_key_for_model(assets, "marts.daily_revenu")
