"""Standalone audits and external models' audits are checks, and runs execute them.

A standalone audit is a check on the most downstream model asset it reads (the others it
reads are the check's additional dependencies); an external model's audits are checks on
the first model that reads it, named ``<table>__<audit>``, depending on the external
asset. Both carry the audit's name and SQLMesh's blocking flag, and a run materializing
the host model has SQLMesh run them, as a bare ``sqlmesh run`` does.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import copy_project

from dg_sqlmesh.metadata import AUDIT
from dg_sqlmesh.project.cache import load_description
from dg_sqlmesh.translation.specs import build_asset_graph, resolve_translator

PROJECTS = Path(__file__).parent / "projects"
ORDERS = '"warehouse"."shop"."orders"'
PAYMENTS = '"warehouse"."raw"."payments"'
PAID = '"warehouse"."shop"."paid_orders"'


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
    assert standalone.metadata[AUDIT.standalone] is True

    (external,) = graph.check_specs[PAID]
    assert external.name == "payments__not_null"
    assert external.asset_key == dg.AssetKey(["warehouse", "shop", "paid_orders"])
    assert [d.asset_key for d in external.additional_deps] == [
        dg.AssetKey(["warehouse", "raw", "payments"])
    ]
    assert external.blocking is True  # SQLMesh's audits block by default
    assert graph.audited_nodes == {PAID: [PAYMENTS], ORDERS: ["payments_match_orders"]}


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
        if spec.metadata.get(AUDIT.standalone)
    ]
    assert len(found) == 1
    host, others = found[0]
    assert {host, *others} == {"warehouse/main/orders", "warehouse/main/raw_customers"}


def payments_project(tmp_path, rows: str) -> Path:
    import duckdb
    from helpers.harness import plan_project

    project = copy_project(PROJECTS / "standalone_audits", tmp_path / "proj")
    with duckdb.connect(str(project / "warehouse.duckdb")) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute(
            "CREATE TABLE raw.payments AS SELECT * FROM (VALUES "
            f"{rows}) AS t(payment_id, order_id, amount)"
        )
    plan_project(project)
    return project


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_run_executes_standalone_and_external_audits(tmp_path, instance, executor):
    from helpers.harness import check_evaluations, run_in_process, run_multiprocess

    project = payments_project(tmp_path, "(1, 1, 10), (2, 2, 25)")
    run = run_in_process if executor == "in_process" else run_multiprocess

    result = run(project, instance)

    assert result.success
    checks = check_evaluations(instance, result.run_id)
    assert {k: (c["passed"], c["severity"]) for k, c in checks.items()} == {
        ("warehouse/shop/paid_orders", "payments__not_null"): (True, "ERROR"),
        ("warehouse/shop/orders", "payments_match_orders"): (True, "WARN"),
    }


def test_a_failing_external_audit_is_reported_with_its_rows(tmp_path, instance):
    from helpers.harness import check_evaluations, materialized, run_in_process, step_failures

    project = payments_project(tmp_path, "(1, 1, 10), (NULL, 2, 25)")  # fails not_null

    result = run_in_process(project, instance)

    assert not result.success
    checks = check_evaluations(instance, result.run_id)
    external = checks[("warehouse/shop/paid_orders", "payments__not_null")]
    assert (external["passed"], external["severity"]) == (False, "ERROR")
    assert external["metadata"][AUDIT.failing_rows] == 1
    # As in a bare `sqlmesh run`, SQLMesh evaluates nothing that reads the external table
    # whose blocking audit failed, the standalone audit included: it reports no result.
    assert ("warehouse/shop/orders", "payments_match_orders") not in checks
    assert set(materialized(instance, result.run_id)) == {"warehouse/shop/orders"}
    failures = step_failures(instance, result.run_id)
    assert set(failures) == {"warehouse__shop__paid_orders"}
    assert (
        "skipped because upstream raw.payments failed" in failures["warehouse__shop__paid_orders"]
    )


def test_a_failing_standalone_audit_warns_with_its_rows(tmp_path, instance):
    from helpers.harness import check_evaluations, materialized, run_in_process

    project = payments_project(tmp_path, "(1, 1, 10), (3, 99, 5)")  # order 99 does not exist

    result = run_in_process(project, instance)

    assert result.success  # non-blocking
    checks = check_evaluations(instance, result.run_id)
    standalone = checks[("warehouse/shop/orders", "payments_match_orders")]
    assert (standalone["passed"], standalone["severity"]) == (False, "WARN")
    assert standalone["metadata"][AUDIT.failing_rows] == 1
    assert checks[("warehouse/shop/paid_orders", "payments__not_null")]["passed"] is True
    assert set(materialized(instance, result.run_id)) == {
        "warehouse/shop/orders",
        "warehouse/shop/paid_orders",
    }
