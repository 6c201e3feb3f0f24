"""Standalone audits and external models' audits are described and get check specs.

A standalone audit is a check on the most downstream model asset it reads (the others it
reads are the check's additional dependencies); an external model's audits are checks on
its external asset key. Both carry the audit's name and SQLMesh's blocking flag.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from helpers.harness import copy_project

from dg_sqlmesh.catalog_cache import load_description
from dg_sqlmesh.specs import build_asset_graph, resolve_translator

PROJECTS = Path(__file__).parent / "projects"
ORDERS = '"warehouse"."shop"."orders"'
PAYMENTS = '"warehouse"."raw"."payments"'


def test_standalone_and_external_audits_get_checks(tmp_path):
    project = copy_project(PROJECTS / "standalone_audits", tmp_path / "proj")
    description = load_description(project)
    assert [(a.name, a.depends_on, a.blocking) for a in description.standalone_audits] == [
        ("payments_match_orders", (PAYMENTS, ORDERS), False)
    ]
    assert [a.name for a in description.models_by_fqn[PAYMENTS].audits] == ["not_null"]
    # The cache gives back the same description.
    assert load_description(project) == load_description(project, use_cache=False)

    graph = build_asset_graph(description, resolve_translator(None, None))
    (standalone,) = graph.check_specs[ORDERS]
    assert standalone.name == "payments_match_orders"
    assert standalone.asset_key == dg.AssetKey(["warehouse", "shop", "orders"])
    assert [d.asset_key for d in standalone.additional_deps] == [
        dg.AssetKey(["warehouse", "raw", "payments"])
    ]
    assert standalone.blocking is False
    assert standalone.metadata["sqlmesh/standalone"] is True

    (external,) = graph.external_check_specs[PAYMENTS]
    assert external.name == "not_null"
    assert external.asset_key == dg.AssetKey(["warehouse", "raw", "payments"])


def test_the_standalone_check_is_in_the_definitions(tmp_path):
    from dg_sqlmesh import sqlmesh_definitions_factory

    project = copy_project(PROJECTS / "standalone_audits", tmp_path / "proj")
    defs = sqlmesh_definitions_factory(project_dir=str(project))
    dg.Definitions.validate_loadable(defs)
    checks = {
        (spec.asset_key.to_user_string(), spec.name)
        for assets_def in defs.assets
        for spec in assets_def.check_specs
    }
    assert ("warehouse/shop/orders", "payments_match_orders") in checks


def test_dbt_relationships_test_is_a_check(tmp_path):
    """SQLMesh loads a dbt ``relationships`` test as a standalone audit."""
    project = copy_project(PROJECTS / "dbt_relationships", tmp_path / "dbt")
    description = load_description(project)
    (audit,) = description.standalone_audits
    assert audit.name.startswith("relationships_orders_customer_id")
    graph = build_asset_graph(description, resolve_translator(None, None))
    found = [
        (
            spec.asset_key.to_user_string(),
            [d.asset_key.to_user_string() for d in spec.additional_deps],
        )
        for specs in graph.check_specs.values()
        for spec in specs
        if spec.metadata.get("sqlmesh/standalone")
    ]
    assert len(found) == 1
    host, others = found[0]
    assert {host, *others} == {"warehouse/main/orders", "warehouse/main/raw_customers"}
