"""Column-level lineage: ``dagster/column_lineage`` on each model's asset, from SQLMesh's
rendered query, over real projects and real Dagster definitions."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import copy_project
from projects.generate import generate_project, project_models

from dg_sqlmesh import SQLMeshTranslator, sqlmesh_definitions_factory
from dg_sqlmesh.metadata import TABLE

TESTS = Path(__file__).parent
EXAMPLE = TESTS.parent / "examples" / "shop"
LINEAGE = TESTS / "projects" / "lineage"
MAPPING = "raw/{node.schema}/{node.name}"


def defs_for(project: Path, **options) -> dg.Definitions:
    return sqlmesh_definitions_factory(project_dir=str(project), **options)


def specs_of(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for a in defs.assets for spec in a.specs}


def lineage_of(spec: dg.AssetSpec) -> dict[str, set[tuple[str, str]]] | None:
    lineage = spec.metadata.get(TABLE.column_lineage)
    if lineage is None:
        return None
    assert isinstance(lineage, dg.TableColumnLineage)
    return {
        column: {(dep.asset_key.to_user_string(), dep.column_name) for dep in deps}
        for column, deps in lineage.deps_by_column.items()
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return copy_project(EXAMPLE, tmp_path_factory.mktemp("lineage") / "shop")


@pytest.fixture(scope="module")
def lineage_project(tmp_path_factory) -> Path:
    return copy_project(LINEAGE, tmp_path_factory.mktemp("lineage") / "lineage")


def test_join_names_columns_of_both_upstream_assets(shop):
    specs = specs_of(defs_for(shop, external_asset_mapping=MAPPING))
    lineage = lineage_of(specs["shop/marts/customer_orders"])
    assert lineage["full_name"] == {("shop/staging/stg_customers", "full_name")}
    assert lineage["first_order_date"] == {("shop/staging/stg_orders", "ordered_at")}
    # through the CTE joining stg_orders and stg_order_items
    assert lineage["lifetime_revenue"] == {
        ("shop/staging/stg_order_items", "line_amount"),
        ("shop/staging/stg_orders", "is_revenue"),
    }
    # every upstream asset of the lineage is a dependency of the asset
    deps = {d.asset_key.to_user_string() for d in specs["shop/marts/customer_orders"].deps}
    assert {key for cols in lineage.values() for key, _ in cols} <= deps


def test_external_model_columns_are_upstream(shop):
    specs = specs_of(defs_for(shop, external_asset_mapping=MAPPING))
    lineage = lineage_of(specs["shop/marts/payment_reconciliation"])
    assert lineage["paid_amount"] == {("raw/payments/transactions", "amount")}
    assert lineage["amount_difference"] == {
        ("raw/payments/transactions", "amount"),
        ("shop/staging/stg_order_items", "line_amount"),
    }


def test_python_models_and_unresolvable_queries_get_none(lineage_project):
    specs = specs_of(defs_for(lineage_project))
    assert lineage_of(specs["warehouse/crm/customer_scores"]) is None  # Python model
    assert lineage_of(specs["warehouse/crm/everything"]) is None  # SELECT * of unknown columns
    assert lineage_of(specs["warehouse/crm/customers"]) is None  # reads only literal rows
    lineage = lineage_of(specs["warehouse/crm/customer_invoices"])
    assert lineage == {
        "customer_id": {("warehouse/crm/customers", "customer_id")},
        "customer_name": {("warehouse/crm/customers", "customer_name")},
        # an external model's column, through an aggregating CTE
        "invoiced_total": {("warehouse/billing/invoices", "amount")},
        "invoiced_total_with_tax": {("warehouse/billing/invoices", "amount")},
    }  # the literal column "one" reads nothing


def test_union_of_generated_models_names_every_parent(tmp_path):
    root = generate_project(tmp_path / "gen", 12, db_path=tmp_path / "db.duckdb")
    specs = specs_of(defs_for(root))
    for model in project_models(12):
        key = "db/" + model["name"].replace(".", "/")
        lineage = lineage_of(specs[key])
        if not model["parents"]:
            assert lineage is None, key  # ranges and series read no asset
            continue
        parents = {"db/" + p.replace(".", "/") for p in model["parents"]}
        for column in ("id", "ds", "v"):
            assert lineage[column] == {(p, column) for p in parents}, (key, column)


def test_cached_description_keeps_lineage(shop):
    first = specs_of(defs_for(shop, external_asset_mapping=MAPPING))
    cache = next((shop / ".cache" / "dg_sqlmesh").glob("description-*.json"))
    models = json.loads(cache.read_text())["description"]["models"]
    assert any(m.get("column_lineage") for m in models)
    again = specs_of(defs_for(shop, external_asset_mapping=MAPPING))  # from the cache
    assert {k: lineage_of(s) for k, s in again.items()} == {
        k: lineage_of(s) for k, s in first.items()
    }


class PrefixedTranslator(SQLMeshTranslator):
    def get_asset_key(self, model):
        return super().get_asset_key(model).with_prefix("wh")


class NoLineageTranslator(SQLMeshTranslator):
    def get_column_lineage(self, model, upstream_keys):
        return None


def test_lineage_follows_translated_keys_and_is_overridable(shop):
    specs = specs_of(defs_for(shop, translator=PrefixedTranslator()))
    lineage = lineage_of(specs["wh/shop/marts/daily_revenue"])
    assert lineage["order_date"] == {("wh/shop/staging/stg_orders", "ordered_at")}
    specs = specs_of(defs_for(shop, translator=NoLineageTranslator()))
    assert all(lineage_of(spec) is None for spec in specs.values())
