"""Freshness policies from SQLMesh crons, on real projects and real Dagster definitions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from helpers.harness import copy_project

from dg_sqlmesh import (
    SQLMeshDefinitionError,
    SQLMeshTranslator,
    SQLMeshTranslatorSettings,
    parse_tags,
)
from dg_sqlmesh.definitions.resource import SQLMeshResource
from dg_sqlmesh.translation.freshness import freshness_policy_class
from dg_sqlmesh.translation.specs import build_asset_graph

LINEAGE = Path(__file__).parent / "projects" / "lineage"
CUSTOMERS = "warehouse/crm/customers"  # @hourly in Europe/Paris, tagged dagster:freshness:cron
INVOICES = "warehouse/crm/customer_invoices"  # 0 6 * * 1-5, UTC
SCORES = "warehouse/crm/customer_scores"  # @daily, tagged dagster:freshness:none
EVERYTHING = "warehouse/crm/everything"  # @daily (the project default)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(LINEAGE, tmp_path_factory.mktemp("freshness") / "lineage")


def policies(project: Path, translator: SQLMeshTranslator) -> dict[str, object]:
    description = SQLMeshResource(project_dir=str(project)).describe()
    graph = build_asset_graph(description, translator)
    return {spec.key.to_user_string(): spec.freshness_policy for spec in graph.specs.values()}


def test_every_model_gets_a_policy_from_its_cron(project):
    found = policies(project, SQLMeshTranslator(freshness_from_cron=True))
    policy_class = freshness_policy_class()
    assert all(isinstance(p, policy_class) for k, p in found.items() if k != SCORES)
    customers, invoices = found[CUSTOMERS], found[INVOICES]
    assert (customers.deadline_cron, customers.timezone) == ("@hourly", "Europe/Paris")
    assert customers.lower_bound_delta == timedelta(hours=1)
    assert (invoices.deadline_cron, invoices.timezone) == ("0 6 * * 1-5", "UTC")
    assert invoices.lower_bound_delta == timedelta(days=1)  # Monday to Friday: a day apart
    assert found[EVERYTHING].deadline_cron == "@daily"
    assert found[SCORES] is None  # dagster:freshness:none


def test_off_by_default_except_for_tagged_models(project):
    found = policies(project, SQLMeshTranslator())
    assert {k for k, p in found.items() if p is not None} == {CUSTOMERS}
    assert found[CUSTOMERS].deadline_cron == "@hourly"
    settings = SQLMeshTranslatorSettings(freshness_from_cron=True)
    assert policies(project, SQLMeshTranslator(freshness_from_cron=True)) == policies(
        project, SQLMeshTranslator(settings=settings)
    )


def test_component_attribute_and_loadable_definitions(project):
    attributes = {"project": str(project), "freshness_from_cron": True}
    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.defs_folder_path / "warehouse"
        defs_path.mkdir(parents=True)
        (defs_path / "defs.yaml").write_text(
            yaml.safe_dump({"type": "dg_sqlmesh.SQLMeshProjectComponent", "attributes": attributes})
        )
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (_, defs):
            asset_graph = defs.resolve_asset_graph()
            node = asset_graph.get(dg.AssetKey.from_user_string(INVOICES))
            assert node.freshness_policy.deadline_cron == "0 6 * * 1-5"
            assert asset_graph.get(dg.AssetKey.from_user_string(SCORES)).freshness_policy is None


def test_freshness_tag_values_are_checked():
    assert parse_tags(["dagster:freshness:cron"], model="m").freshness == "cron"
    assert parse_tags(["dagster:freshness:none"], model="m").freshness == "none"
    assert parse_tags(["dagster:freshness:cron"], model="m").tags == {}
    with pytest.raises(SQLMeshDefinitionError, match="dagster:freshness:cron"):
        parse_tags(["dagster:freshness:daily"], model="m")
