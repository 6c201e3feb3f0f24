"""The asset graph of the bundled example project (examples/shop), as Dagster sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import copy_project

from dg_sqlmesh import sqlmesh_definitions_factory
from dg_sqlmesh.metadata import AUDIT, MODEL, TABLE
from dg_sqlmesh.project.config import load_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop"
VENV_BIN = Path(sys.executable).parent
MAPPING = "raw/{node.schema}/{node.name}"
EXTERNAL = dg.AssetKey(["raw", "payments", "transactions"])

MODELS = {
    "raw": ["customers", "order_items", "orders", "products"],
    "staging": ["stg_customers", "stg_order_items", "stg_orders", "stg_products"],
    "marts": ["customer_orders", "daily_revenue", "payment_reconciliation", "product_sales"],
}
KEYS = {f"shop/{schema}/{table}" for schema, tables in MODELS.items() for table in tables}

DEPS = {
    "shop/raw/customers": set(),
    "shop/raw/order_items": set(),
    "shop/raw/orders": set(),
    "shop/raw/products": set(),
    "shop/staging/stg_customers": {"shop/raw/customers"},
    "shop/staging/stg_order_items": {"shop/raw/order_items", "shop/raw/products"},
    "shop/staging/stg_orders": {"shop/raw/orders"},
    "shop/staging/stg_products": {"shop/raw/products"},
    "shop/marts/customer_orders": {
        "shop/staging/stg_customers",
        "shop/staging/stg_orders",
        "shop/staging/stg_order_items",
    },
    "shop/marts/daily_revenue": {"shop/staging/stg_orders", "shop/staging/stg_order_items"},
    "shop/marts/payment_reconciliation": {
        "raw/payments/transactions",
        "shop/staging/stg_order_items",
    },
    "shop/marts/product_sales": {
        "shop/staging/stg_products",
        "shop/staging/stg_orders",
        "shop/staging/stg_order_items",
    },
}

# (audit name, blocking) per model, in the order the model declares them.
AUDITS = {
    "shop/raw/customers": [("not_null", True), ("unique_values", True)],
    "shop/raw/order_items": [("unique_combination_of_columns", True)],
    "shop/raw/orders": [("unique_values", True)],
    "shop/raw/products": [("unique_values", True)],
    "shop/staging/stg_customers": [("not_null", True), ("unique_values", True)],
    "shop/staging/stg_order_items": [
        ("not_null", True),
        ("unique_combination_of_columns", True),
        ("accepted_range", True),
        ("assert_non_negative", True),
    ],
    "shop/staging/stg_orders": [
        ("not_null", True),
        ("unique_values", True),
        ("accepted_values", True),
    ],
    "shop/staging/stg_products": [
        ("not_null", True),
        ("unique_values", True),
        ("assert_non_negative", True),
    ],
    "shop/marts/customer_orders": [
        ("not_null", True),
        ("unique_values", True),
        ("accepted_range", False),  # blocking := FALSE
    ],
    "shop/marts/daily_revenue": [
        ("not_null", True),
        ("unique_values", True),
        ("assert_non_negative", True),  # project audit (audits/assert_non_negative.sql)
        ("forall_non_blocking", False),  # built-in non-blocking variant
    ],
    "shop/marts/payment_reconciliation": [
        ("not_null", True),
        ("unique_values", True),
        ("accepted_values", False),  # blocking := FALSE
    ],
    "shop/marts/product_sales": [
        ("not_null", True),
        ("unique_values", True),
        ("accepted_values_non_blocking", False),
    ],
}


def build_defs(project: Path) -> dg.Definitions:
    return sqlmesh_definitions_factory(project_dir=str(project), external_asset_mapping=MAPPING)


def specs_by_key(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    """The models' specs (external models' assets left out)."""
    return {
        spec.key.to_user_string(): spec for a in defs.assets if a.is_executable for spec in a.specs
    }


def code_versions(project: Path) -> dict[str, str]:
    return {k: spec.code_version for k, spec in specs_by_key(build_defs(project)).items()}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """One read-only copy of the example for the tests that only look at it."""
    return copy_project(EXAMPLE, tmp_path_factory.mktemp("graph") / "shop")


@pytest.fixture(scope="module")
def defs(shop) -> dg.Definitions:
    return build_defs(shop)


@pytest.fixture(scope="module")
def specs(defs) -> dict[str, dg.AssetSpec]:
    return specs_by_key(defs)


# --- keys and deps ------------------------------------------------------------------------


def test_exact_asset_keys(specs, defs):
    assert set(specs) == KEYS
    assert len(defs.assets) == len(KEYS) + 1  # one AssetsDefinition per model, + the external


def test_deps_including_external_upstream(specs):
    deps = {key: {d.asset_key.to_user_string() for d in spec.deps} for key, spec in specs.items()}
    assert deps == DEPS


def test_external_models_are_external_assets_described_by_the_translator(defs):
    defined = {key for a in defs.assets for key in a.keys}
    assert dg.AssetKey(["shop", "payments", "transactions"]) not in defined
    graph = defs.resolve_asset_graph()
    # An external asset (no stub): Dagster cannot materialize it, and shows what
    # external_models.yaml says of it.
    assert EXTERNAL in defined
    node = graph.get(EXTERNAL)
    assert not node.is_materializable and not node.is_executable
    assert {k.to_user_string() for k in graph.materializable_asset_keys} == KEYS
    assert node.description.startswith("Card, PayPal and bank-transfer payments")
    assert node.group_name == "payments"
    assert node.kinds == {"sqlmesh", "duckdb"}
    columns = [c.name for c in node.metadata[TABLE.column_schema].columns]
    assert columns == ["transaction_id", "order_id", "amount", "payment_method", "paid_at"]
    assert node.code_version is None and node.automation_condition is None


# --- dagster: tag convention ------------------------------------------------------------


def test_groups(specs):
    groups = {key: spec.group_name for key, spec in specs.items()}
    # raw models have no group tag: their schema is the group.
    assert groups == {key: key.split("/")[1] for key in KEYS}


def test_owners(specs):
    owners = {key: spec.owners for key, spec in specs.items()}
    analytics, data = ["team:analytics"], ["data@shop.example"]
    assert owners == {
        "shop/raw/customers": [],
        "shop/raw/order_items": [],
        "shop/raw/orders": [],
        "shop/raw/products": [],
        "shop/staging/stg_customers": analytics,
        "shop/staging/stg_order_items": analytics,
        "shop/staging/stg_orders": analytics,
        "shop/staging/stg_products": analytics,
        "shop/marts/customer_orders": analytics,
        "shop/marts/daily_revenue": data,
        "shop/marts/payment_reconciliation": data,
        "shop/marts/product_sales": analytics,
    }


def test_tags(specs):
    def user_tags(key):
        return {k: v for k, v in specs[key].tags.items() if not k.startswith("dagster/")}

    assert user_tags("shop/raw/customers") == {"pii": ""}
    assert user_tags("shop/raw/orders") == {}
    assert user_tags("shop/staging/stg_customers") == {"pii": ""}
    assert user_tags("shop/marts/customer_orders") == {"tier": "gold", "pii": ""}
    assert user_tags("shop/marts/daily_revenue") == {"tier": "gold", "finance": ""}
    assert user_tags("shop/marts/payment_reconciliation") == {"finance": ""}
    assert user_tags("shop/marts/product_sales") == {"tier": "silver"}


def test_kinds(specs):
    for key, spec in specs.items():
        expected = {"sqlmesh", "duckdb"}
        if key == "shop/marts/payment_reconciliation":
            expected.add("finance")  # dagster:kind:finance; the plain 'finance' tag is no kind
        assert spec.kinds == expected, key


def test_descriptions(specs):
    # From the model's description ...
    assert specs["shop/marts/customer_orders"].description == (
        "One row per customer with order counts, lifetime revenue and first / last order dates."
    )
    assert specs["shop/raw/customers"].description.startswith("Customer accounts exported")
    # ... unless a dagster:description: tag overrides it.
    assert specs["shop/marts/product_sales"].description == (
        "Best sellers: units and revenue per product, cancelled and returned orders excluded."
    )


# --- checks -------------------------------------------------------------------------------


def test_one_check_per_audit_with_blocking(defs):
    found: dict[str, list[tuple[str, bool]]] = {}
    for assets_def in defs.assets:
        for check in assets_def.check_specs:
            found.setdefault(check.asset_key.to_user_string(), []).append(
                (check.metadata[AUDIT.audit], check.blocking)
            )
            assert check.metadata[AUDIT.blocking] is check.blocking
            assert check.name == check.metadata[AUDIT.audit]
    assert found == AUDITS
    assert sum(len(a) for a in AUDITS.values()) == 30


def test_check_metadata_and_description(defs):
    checks = {(c.asset_key.to_user_string(), c.name): c for a in defs.assets for c in a.check_specs}
    accepted = checks[("shop/marts/payment_reconciliation", "accepted_values")]
    assert accepted.metadata[AUDIT.audit_args] == {
        "column": "reconciliation_status",
        "is_in": "('matched', 'amount_mismatch', 'unknown_order')",
    }
    assert "non-blocking" in accepted.description
    rng = checks[("shop/staging/stg_order_items", "accepted_range")]
    assert rng.metadata[AUDIT.audit_args] == {
        "column": "quantity",
        "min_v": "1",
        "max_v": "100",
    }
    assert rng.blocking and "non-blocking" not in rng.description


# --- metadata -----------------------------------------------------------------------------


def test_table_metadata(specs):
    md = specs["shop/marts/daily_revenue"].metadata
    assert md[TABLE.table_name] == "shop.marts.daily_revenue"
    schema = md[TABLE.column_schema]
    assert isinstance(schema, dg.TableSchema)
    # Types as SQLMesh infers them from the query (no warehouse is asked); the precision
    # SQLMesh infers for a SUM of decimals varies between SQLMesh versions.
    columns = {c.name: (c.type.split("(")[0], c.description) for c in schema.columns}
    assert columns == {
        "order_date": ("DATE", "Calendar day the orders were placed."),
        "order_count": ("BIGINT", "Orders placed that day, whatever their status."),
        "items_sold": ("BIGINT", "Units sold that day."),
        "gross_revenue": ("DECIMAL", "Amount of all order lines in EUR."),
        "net_revenue": ("DECIMAL", "Amount of non-cancelled, non-returned order lines in EUR."),
    }
    assert md[MODEL.model] == "marts.daily_revenue"
    assert md[MODEL.kind] == "INCREMENTAL_BY_TIME_RANGE"
    assert md[MODEL.cron] == "@daily"
    assert md[MODEL.dialect] == "duckdb"
    assert md[MODEL.grain] == "order_date"
    assert md[MODEL.time_column] == "order_date"
    assert md[MODEL.file] == "models/marts/daily_revenue.sql"


def test_seed_metadata_uses_declared_columns(specs):
    md = specs["shop/raw/order_items"].metadata
    assert md[MODEL.kind] == "SEED"
    assert md[MODEL.grain] == "order_id, product_id"
    columns = {c.name: c for c in md[TABLE.column_schema].columns}
    assert list(columns) == ["order_id", "product_id", "quantity", "unit_price"]
    assert columns["unit_price"].type == "DECIMAL(10, 2)"
    assert columns["quantity"].description == "Number of units ordered."
    assert MODEL.time_column not in md


def test_rendered_query(specs):
    rendered = specs["shop/marts/daily_revenue"].metadata[MODEL.rendered_query]
    assert isinstance(rendered, dg.MarkdownMetadataValue)
    text = rendered.md_str
    assert text.startswith("```sql\n") and text.endswith("\n```")
    # Rendered, not the source: names are fully qualified and quoted; the interval's
    # bounds are SQLMesh's macros, not the bounds of no interval (1970-01-01).
    assert '"shop"."staging"."stg_orders"' in text
    assert '"shop"."staging"."stg_order_items"' in text
    assert "@start_ds" in text and "@end_ds" in text and "1970" not in text
    view = specs["shop/marts/payment_reconciliation"].metadata[MODEL.rendered_query].md_str
    assert '"shop"."payments"."transactions"' in view


def test_every_model_has_core_metadata(specs):
    for key, spec in specs.items():
        md = spec.metadata
        assert md[TABLE.table_name] == key.replace("/", "."), key
        assert md[TABLE.column_schema].columns, key
        for name in (MODEL.kind, MODEL.cron, MODEL.dialect, MODEL.grain):
            assert md[name], (key, name)


# --- job and validation -------------------------------------------------------------------


def test_sqlmesh_job_selects_all_assets_and_checks(defs):
    job = defs.resolve_job_def("sqlmesh_job")
    ops = {node.name for node in job.graph.nodes}  # one op per asset, named after its key
    assert ops == {key.replace("/", "__") for key in KEYS}
    checks = job.asset_layer.asset_graph.asset_check_keys
    assert len(checks) == 30
    assert job.tags["dagster/retry_on_asset_or_op_failure"] == "false"


def test_definitions_validate_loadable(defs):
    dg.Definitions.validate_loadable(defs)


DEFS_FILE = """\
from dg_sqlmesh import sqlmesh_definitions_factory

defs = sqlmesh_definitions_factory(
    project_dir={project!r}, external_asset_mapping="raw/{{node.schema}}/{{node.name}}"
)
"""


def _validate_cli(defs_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "dagster"), "definitions", "validate", "-f", str(defs_file)],
        cwd=defs_file.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_definitions_validate_cli(shop_project, tmp_path):
    good = tmp_path / "good_defs.py"
    good.write_text(DEFS_FILE.format(project=str(shop_project)))
    result = _validate_cli(good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr

    # The same check fails when the definitions cannot load.
    broken = shop_project / "models" / "marts" / "product_sales.sql"
    broken.write_text(broken.read_text().replace("'dagster:tier:silver'", "'dagster:tier:'"))
    result = _validate_cli(good)
    assert result.returncode != 0
    assert "dagster:tier:" in result.stdout + result.stderr


# --- code versions ------------------------------------------------------------------------


def test_code_version_is_sqlmesh_data_hash(shop, specs):
    from sqlmesh import Context

    config, gateway = load_config(shop, None)
    context = Context(paths=[shop], config=config, gateway=gateway)
    try:
        for key, spec in specs.items():
            _, schema, table = key.split("/")
            model = context.get_model(f"{schema}.{table}")
            assert spec.code_version == model.data_hash, key
    finally:
        context.close()
    assert len({spec.code_version for spec in specs.values()}) == len(specs)


def _edit(project: Path, rel: str, old: str, new: str) -> None:
    path = project / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_sql_change_changes_only_that_models_code_version(shop_project):
    before = code_versions(shop_project)
    # stg_products has a downstream model (product_sales): its code version must not move.
    _edit(
        shop_project,
        "models/staging/stg_products.sql",
        "TRIM(product_name) AS product_name",
        "UPPER(TRIM(product_name)) AS product_name",
    )
    after = code_versions(shop_project)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"shop/staging/stg_products"}


def test_metadata_and_comment_changes(shop_project):
    """What SQLMesh's data hash (0.236) counts as a change of the model's logic.

    * The MODEL block's description, tags, owner, grain and column_descriptions feed
      SQLMesh's *metadata* hash only: the code version does not change (the asset's
      description does).
    * The query's text is hashed as written: an inline ``/* column comment */`` (which
      SQLMesh also reads as the column's description) changes the data hash, and so
      the code version, although SQLMesh's plan would call it a metadata-only change.
    """
    rel = "models/marts/daily_revenue.sql"
    key = "shop/marts/daily_revenue"
    base = code_versions(shop_project)

    _edit(shop_project, rel, "description 'Daily order volume", "description 'Daily order count")
    _edit(shop_project, rel, "'dagster:tier:gold',", "'dagster:tier:platinum',")
    specs = specs_by_key(build_defs(shop_project))
    assert specs[key].description.startswith("Daily order count")
    assert specs[key].tags["tier"] == "platinum"
    assert {k: s.code_version for k, s in specs.items()} == base

    _edit(shop_project, rel, "/* Units sold that day. */", "/* Units sold per day. */")
    after = code_versions(shop_project)
    assert {k for k in base if base[k] != after[k]} == {key}


# --- no warehouse access at load time -----------------------------------------------------


def test_loading_definitions_does_not_touch_the_database(shop_project):
    db = shop_project / "shop.duckdb"
    assert not db.exists()
    defs = build_defs(shop_project)
    dg.Definitions.validate_loadable(defs)
    defs.resolve_job_def("sqlmesh_job")
    assert not db.exists()
    assert not list(shop_project.glob("*.duckdb*"))


@pytest.mark.parametrize(
    ("audit_name", "expected"),
    [
        ("not_null", "not_null"),
        ("assert-positive.v2", "assert_positive_v2"),
        ("prix_élevé", "prix__lev_"),
    ],
)
def test_check_name_is_a_valid_dagster_name(audit_name, expected):
    from dg_sqlmesh.project.description import AuditInfo
    from dg_sqlmesh.translation.checks import check_name

    name = check_name(AuditInfo(name=audit_name, blocking=True))
    assert name == expected
    dg.AssetCheckSpec(name=name, asset="some_asset")  # Dagster accepts it
