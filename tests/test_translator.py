"""SQLMeshTranslator: custom keys and groups end to end, mapping templates, odd names."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import (
    check_evaluations,
    copy_project,
    materialized,
    model_assets,
    plan_project,
    run_in_process,
)
from projects.generate import project_models

from dg_sqlmesh import (
    SQLMeshDefinitionError,
    SQLMeshResource,
    SQLMeshTranslator,
    SQLMeshTranslatorSettings,
    build_sqlmesh_asset_specs,
    sqlmesh_assets_factory,
    sqlmesh_definitions_factory,
)
from dg_sqlmesh.metadata import RUN
from dg_sqlmesh.project.context import create_context
from dg_sqlmesh.project.load import load_project
from dg_sqlmesh.translation.specs import build_asset_graph, resolve_translator

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop"
VALID_SEGMENT = re.compile(r"^[A-Za-z0-9_]+$")


def defs_for(project: Path, **options) -> dg.Definitions:
    return sqlmesh_definitions_factory(project_dir=str(project), **options)


def keys_of(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for a in model_assets(defs) for key in a.keys}


def dep_keys(defs: dg.Definitions) -> set[str]:
    return {
        d.asset_key.to_user_string() for a in model_assets(defs) for s in a.specs for d in s.deps
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return copy_project(EXAMPLE, tmp_path_factory.mktemp("translator") / "shop")


@pytest.fixture(scope="module")
def shop_description(shop):
    return load_project(shop)


# --- a subclass, end to end ---------------------------------------------------------------


class WarehouseTranslator(SQLMeshTranslator):
    """Keys under 'wh/', one group per schema."""

    def get_asset_key(self, model):
        return super().get_asset_key(model).with_prefix("wh")

    def get_group_name(self, model):
        return f"grp_{model.schema}"


def test_subclass_changes_keys_and_groups(shop):
    defs = defs_for(shop, translator=WarehouseTranslator())
    keys = keys_of(defs)
    assert "wh/shop/marts/daily_revenue" in keys
    assert all(k.startswith("wh/shop/") for k in keys)
    # Deps point at the custom keys; the external key is not prefixed (its own method).
    assert "wh/shop/staging/stg_orders" in dep_keys(defs)
    assert "shop/payments/transactions" in dep_keys(defs)
    groups = {s.key.path[2]: s.group_name for a in model_assets(defs) for s in a.specs}
    assert groups == {"raw": "grp_raw", "staging": "grp_staging", "marts": "grp_marts"}
    checks = {c.asset_key.to_user_string() for a in model_assets(defs) for c in a.check_specs}
    assert checks <= keys and "wh/shop/marts/daily_revenue" in checks
    dg.Definitions.validate_loadable(defs)


def test_custom_keys_end_to_end_run(generated, instance):
    project = generated(4)
    result = run_in_process(project, instance, translator=WarehouseTranslator())
    assert result.success
    expected = {f"wh/db/{m['name'].replace('.', '/')}" for m in project_models(4)}
    shown = materialized(instance, result.run_id)
    assert set(shown) == expected
    assert all(md[RUN.state] == "materialized" for md in shown.values())
    evaluations = check_evaluations(instance, result.run_id)
    assert {key for key, _ in evaluations} == expected
    assert all(e["passed"] for e in evaluations.values())


# --- constructing translators -------------------------------------------------------------


class NoSuperInit(SQLMeshTranslator):
    def __init__(self, prefix: str) -> None:  # forgets super().__init__()
        self.prefix = prefix

    def get_asset_key(self, model):
        return super().get_asset_key(model).with_prefix(self.prefix)


def test_subclass_without_super_init_works(shop):
    defs = defs_for(shop, translator=NoSuperInit("p"))
    assert "p/shop/marts/daily_revenue" in keys_of(defs)
    assert "shop/payments/transactions" in dep_keys(defs)
    dg.Definitions.validate_loadable(defs)

    translator = NoSuperInit("p")
    defs = defs_for(shop, translator=translator, external_asset_mapping="ext/{node.name}")
    assert "ext/transactions" in dep_keys(defs)
    assert translator.settings.external_asset_mapping is None  # the caller's object is untouched


def test_settings_are_one_object_the_factory_never_changes(shop):
    translator = WarehouseTranslator(settings=SQLMeshTranslatorSettings(freshness_from_cron=True))
    defs = defs_for(
        shop,
        translator=translator,
        external_asset_mapping="ext/{node.name}",
        automation_from_cron=True,
    )
    specs = [spec for a in model_assets(defs) for spec in a.specs]
    assert all(spec.automation_condition is not None for spec in specs)
    assert all(spec.freshness_policy is not None for spec in specs)
    assert any(d.asset_key.path[0] == "ext" for spec in specs for d in spec.deps)
    # the factory worked on a copy: the translator passed in still has its own settings
    assert translator.settings == SQLMeshTranslatorSettings(freshness_from_cron=True)


def test_spec_builder_gives_the_assets_specs(shop):
    options = {"external_asset_mapping": "raw/{node.schema}/{node.name}", "group_name": "g"}
    resource = SQLMeshResource(project_dir=str(shop))
    specs, checks = build_sqlmesh_asset_specs(
        sqlmesh_resource=resource, translator=WarehouseTranslator(), **options
    )
    assets = sqlmesh_assets_factory(
        sqlmesh_resource=resource, translator=WarehouseTranslator(), **options
    )

    def shown(spec: dg.AssetSpec) -> tuple:  # what the translator decides (Dagster adds more)
        deps = [d.asset_key for d in spec.deps]
        return spec.key, deps, spec.group_name, spec.owners, spec.code_version, spec.description

    assert [shown(s) for s in specs] == [shown(s) for a in assets for s in a.specs]
    assert {c.key for c in checks} == {key for a in assets for key in a.check_keys}


def test_translator_class_instead_of_instance_is_a_clear_error(shop):
    with pytest.raises(SQLMeshDefinitionError) as info:
        defs_for(shop, translator=WarehouseTranslator)
    message = str(info.value)
    assert "WarehouseTranslator" in message
    assert "not an instance" in message
    assert "WarehouseTranslator()" in message


# --- external_asset_mapping ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (None, "shop/payments/transactions"),
        ("raw/{node.schema}/{node.name}", "raw/payments/transactions"),
        ("raw/{{ node.schema }}/{{ node.name }}", "raw/payments/transactions"),
        (
            "{{ node.catalog }}_ext/{{ node.schema | upper }}/{{ node.name }}",
            "shop_ext/PAYMENTS/transactions",
        ),
        ("src/{node.catalog}/{node.schema}.{node.name}", "src/shop/payments_transactions"),
    ],
)
def test_external_asset_mapping_styles(shop_description, template, expected):
    graph = build_asset_graph(shop_description, resolve_translator(None, template))
    assert {k.to_user_string() for k in graph.external_keys.values()} == {expected}
    recon = next(f for f in graph.specs if f.endswith('"payment_reconciliation"'))
    assert expected in {d.asset_key.to_user_string() for d in graph.specs[recon].deps}


@pytest.mark.parametrize(
    "template", ["raw/{node.nope}", "raw/{{ node.nope }}", "raw/{node", "{{ x"]
)
def test_bad_external_asset_mapping_is_a_clear_error(shop_description, template):
    with pytest.raises(SQLMeshDefinitionError) as info:
        build_asset_graph(shop_description, resolve_translator(None, template))
    message = str(info.value)
    assert f"external_asset_mapping '{template}'" in message
    assert "payments.transactions" in message
    assert "node.schema" in message


# --- collisions ---------------------------------------------------------------------------


class MergingTranslator(SQLMeshTranslator):
    def get_asset_key(self, model):
        if model.table in {"daily_revenue", "product_sales"}:
            return dg.AssetKey(["revenue"])
        return super().get_asset_key(model)


def test_two_models_on_one_key_raises_naming_both(shop_description):
    with pytest.raises(SQLMeshDefinitionError) as info:
        build_asset_graph(shop_description, MergingTranslator())
    message = str(info.value)
    assert "marts.daily_revenue" in message
    assert "marts.product_sales" in message
    assert "revenue" in message


def test_external_key_colliding_with_a_model_raises_naming_both(shop_description):
    translator = resolve_translator(None, "shop/marts/daily_revenue")
    with pytest.raises(SQLMeshDefinitionError) as info:
        build_asset_graph(shop_description, translator)
    message = str(info.value)
    assert "payments.transactions" in message
    assert "marts.daily_revenue" in message


# --- odd names ----------------------------------------------------------------------------

ODD_CONFIG = """\
gateways:
  local:
    connection:
      type: duckdb
      database: odd.duckdb
default_gateway: local
model_defaults:
  dialect: duckdb
  start: '2026-11-20'
before_all:
  - CREATE SCHEMA IF NOT EXISTS "my-schema"
  - CREATE TABLE IF NOT EXISTS "my-schema"."src table" AS SELECT 1 AS id
"""

ODD_EXTERNALS = """\
- name: '"my-schema"."src table"'
  columns:
    id: INT
"""

ODD_MODELS = {
    "a.sql": 'MODEL (name "my-schema"."odd.name", kind FULL);\n'
    'SELECT id FROM "my-schema"."src table"',
    "b.sql": 'MODEL (name "it\'s"."quote""d", kind FULL);\nSELECT id FROM "my-schema"."odd.name"',
    "c.sql": 'MODEL (name "with-dash"."x.y-z", kind VIEW);\nSELECT id FROM "it\'s"."quote""d"',
    "d.sql": 'MODEL (name plain.tbl, kind FULL);\nSELECT id FROM "with-dash"."x.y-z"',
}

ODD_NAMES = {
    '"my-schema"."odd.name"': "odd/my_schema/odd_name",
    '"it\'s"."quote""d"': "odd/it_s/quote_d",
    '"with-dash"."x.y-z"': "odd/with_dash/x_y_z",
    "plain.tbl": "odd/plain/tbl",
}


def write_project(root: Path, config: str, models: dict[str, str], externals: str | None) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "config.yaml").write_text(config)
    if externals:
        (root / "external_models.yaml").write_text(externals)
    for name, sql in models.items():
        (root / "models" / name).write_text(sql)
    return root


@pytest.fixture
def odd_project(tmp_path) -> Path:
    return write_project(tmp_path / "odd", ODD_CONFIG, ODD_MODELS, ODD_EXTERNALS)


def test_odd_names_give_valid_distinct_round_tripping_keys(odd_project):
    # An external model in another catalog, with a wildcard in its name.
    (odd_project / "external_models.yaml").write_text(
        ODD_EXTERNALS + '- name: \'"proj"."ds"."events_*"\'\n  columns:\n    id: INT\n'
    )
    (odd_project / "models" / "e.sql").write_text(
        'MODEL (name "my-schema"."from-events", kind FULL);\nSELECT id FROM "proj"."ds"."events_*"'
    )
    description = load_project(odd_project)
    graph = build_asset_graph(description, resolve_translator(None, None))

    keys = [spec.key for spec in graph.specs.values()]
    assert len(set(keys)) == len(keys) == 5
    all_keys = keys + list(graph.external_keys.values())
    assert len(set(all_keys)) == 7
    for key in all_keys:
        assert all(VALID_SEGMENT.match(part) for part in key.path), key
        assert dg.AssetKey.from_user_string(key.to_user_string()) == key

    by_name = {
        graph.model(fqn).name: spec.key.to_user_string() for fqn, spec in graph.specs.items()
    }
    assert by_name == {**ODD_NAMES, '"my-schema"."from-events"': "odd/my_schema/from_events"}
    assert {k.to_user_string() for k in graph.external_keys.values()} == {
        "proj/ds/events__",
        "odd/my_schema/src_table",
    }

    # key -> fqn -> the model SQLMesh itself knows under that fqn.
    context = create_context(odd_project, None)
    try:
        for key, fqn in graph.fqn_by_key.items():
            assert graph.specs[fqn].key == key
            assert context.get_model(fqn).fqn == fqn
    finally:
        context.close()

    mapped = build_asset_graph(
        description, resolve_translator(None, "ext/{{ node.catalog }}/{{ node.name }}")
    )
    assert {k.to_user_string() for k in mapped.external_keys.values()} == {
        "ext/proj/events__",
        "ext/odd/src_table",
    }

    defs = defs_for(odd_project)
    dg.Definitions.validate_loadable(defs)


def test_odd_names_run_end_to_end(odd_project, instance):
    plan_project(odd_project)
    result = run_in_process(odd_project, instance)
    assert result.success
    assert set(materialized(instance, result.run_id)) == set(ODD_NAMES.values())


def test_names_equal_after_sanitizing_raise_naming_both(odd_project):
    """'odd.name' and 'odd_name' both become the key segment 'odd_name'.

    The default keys cannot tell them apart; loading says so and names both models,
    instead of silently merging two tables into one asset.
    """
    (odd_project / "models" / "f.sql").write_text(
        'MODEL (name "my-schema"."odd_name", kind FULL);\nSELECT 1 AS id'
    )
    with pytest.raises(SQLMeshDefinitionError) as info:
        defs_for(odd_project)
    message = str(info.value)
    assert '"my-schema"."odd.name"' in message
    assert '"my-schema"."odd_name"' in message
    assert "odd/my_schema/odd_name" in message
