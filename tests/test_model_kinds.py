"""Models that are not tables: what each SQLMesh kind is in Dagster.

* EMBEDDED: inlined into its downstream queries, never written. An asset that keeps its
  lineage but cannot be materialized (no step), so no run ever claims it.
* VIEW: SQLMesh evaluates it like any model when its interval is due (the view is
  re-created where the engine needs it, and audited), so that run materializes it.
* SEED: written once, when a plan loads the file; a run finds nothing due: up to date.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from helpers.harness import copy_project, materialized, plan_project, query, step_failures

from dg_sqlmesh import sqlmesh_definitions_factory
from dg_sqlmesh.metadata import RUN

PROJECTS = Path(__file__).parent / "projects"
EMBEDDED = dg.AssetKey(["warehouse", "shop", "sales_raw"])
SALES = dg.AssetKey(["warehouse", "shop", "sales"])


def project(tmp_path: Path) -> Path:
    root = copy_project(PROJECTS / "model_kinds", tmp_path / "model_kinds")
    plan_project(root)
    return root


def test_an_embedded_model_keeps_its_lineage_and_is_never_materialized(tmp_path, instance):
    root = project(tmp_path)
    defs = sqlmesh_definitions_factory(project_dir=str(root))
    graph = defs.resolve_asset_graph()
    embedded = graph.get(EMBEDDED)
    assert not embedded.is_executable
    assert EMBEDDED in graph.get(SALES).parent_keys
    assert not graph.get_check_keys_for_assets({EMBEDDED})

    # "Materialize all" from the UI: the implicit asset job, the default executor.
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, raise_on_error=False)

    assert result.success, step_failures(instance, result.run_id)
    found = materialized(instance, result.run_id)
    assert set(found) == {
        "warehouse/shop/prices",
        "warehouse/shop/sales",
        "warehouse/shop/sales_view",
    }
    assert query(root / "warehouse.duckdb", "SELECT count(*) FROM shop.sales") == [(2,)]


def test_a_view_is_materialized_when_due_and_up_to_date_when_not(tmp_path, instance):
    root = project(tmp_path)  # planned without backfill: every interval is due
    job = sqlmesh_definitions_factory(project_dir=str(root)).resolve_job_def("sqlmesh_job")
    kinds = ["warehouse/shop/prices", "warehouse/shop/sales", "warehouse/shop/sales_view"]

    first = job.execute_in_process(instance=instance, raise_on_error=False)
    assert first.success
    found = materialized(instance, first.run_id)
    assert {k: m[RUN.state] for k, m in found.items()} == dict.fromkeys(kinds, "materialized")
    assert found["warehouse/shop/sales_view"][RUN.batches] == 1
    assert query(root / "warehouse.duckdb", "SELECT sum(revenue) FROM shop.sales_view") == [(14,)]

    # Nothing is due any more: the view and the seed are up to date, nothing claims new data.
    second = job.execute_in_process(instance=instance, raise_on_error=False)
    assert second.success
    found = materialized(instance, second.run_id)
    assert {k: m[RUN.state] for k, m in found.items()} == dict.fromkeys(kinds, "up_to_date")
