""" "Materialize all" as a user meets it: `dagster dev` (webserver and daemon) on a fresh copy
of the example, a backfill of all assets and all partitions launched through GraphQL as the
UI launches it, then the same again with nothing due.

Regression: the plan of the first run evaluated the partitioned `marts.daily_revenue`, which
was reported as an unpartitioned materialization, and the backfill failed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
from helpers.dagster_dev import dagster_dev
from helpers.harness import copy_project

from dg_sqlmesh.metadata import RUN, TABLE

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop"
DAILY_REVENUE = dg.AssetKey(["shop", "marts", "daily_revenue"])


def _rows_per_day(project: Path) -> Counter:
    with duckdb.connect(str(project / "shop.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT CAST(order_date AS DATE), COUNT(*) FROM marts.daily_revenue GROUP BY 1"
        ).fetchall()
    return Counter({day.isoformat(): n for day, n in rows})


def _materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> list:
    return instance.fetch_materializations(key, limit=10_000).records


def _check_statuses(instance: dg.DagsterInstance, run_ids: set[str]) -> dict[str, str]:
    """The status of each check execution planned by the given runs, by check."""
    found = {}
    for run_id in run_ids:
        planned = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        ).records
        for record in planned:
            key = record.event_log_entry.dagster_event.event_specific_data.asset_check_key
            history = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
            for execution in history:
                if execution.run_id == run_id:
                    found[key.to_user_string()] = execution.status.value
    return found


def test_materialize_all_twice_from_the_ui_on_the_example(tmp_path):
    project = copy_project(EXAMPLE, tmp_path / "shop")
    home = tmp_path / "dagster_home"
    with dagster_dev(project / "definitions.py", home, {"SHOP_SQLMESH_APPLY_PLAN": "1"}) as dev:
        partitions = next(n["partitionKeys"] for n in dev.asset_nodes() if n["isPartitioned"])
        first = dev.wait_for_backfill(dev.materialize_all_partitions())
        assert first["status"] == "COMPLETED_SUCCESS", first
        stale_after_first = dev.stale(partitions)
        second = dev.wait_for_backfill(dev.materialize_all_partitions())
        assert second["status"] == "COMPLETED_SUCCESS", second
        stale_after_second = dev.stale(partitions)

    assert stale_after_first == {}
    assert stale_after_second == {}, "a run where nothing was due made assets stale"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = _materializations(instance, DAILY_REVENUE)
        assert records, "daily_revenue was never materialized"
        assert [r for r in records if r.partition_key is None] == [], (
            "a partitioned asset received an unpartitioned materialization"
        )
        # Each partition's latest row count is its rows in the warehouse.
        rows = _rows_per_day(project)
        latest = {}
        for record in sorted(records, key=lambda r: r.storage_id):
            latest[record.partition_key] = record.asset_materialization.metadata
        assert set(latest) == set(partitions)
        for key, metadata in latest.items():
            assert metadata[TABLE.row_count].value == rows.get(key, 0), key
            assert RUN.interval_count not in metadata
            assert RUN.duration_s not in metadata
        # No check that passed in the first backfill is skipped in the second.
        first_runs = {r["id"] for r in first["runs"]}
        second_runs = {r["id"] for r in second["runs"]}
        before = _check_statuses(instance, first_runs)
        after = _check_statuses(instance, second_runs)
        assert before and after
        passed = {k for k, v in before.items() if v == "SUCCEEDED"}
        skipped = {k for k, v in after.items() if v == "SKIPPED"}
        assert passed and not (passed & skipped), sorted(passed & skipped)
