"""What each materialization tells about its run, on a real DuckDB project: the table's
row count (``dagster/row_count``, equal to ``count(*)`` in the warehouse), and the run's
facts as numbers the UI plots (duration, batches, intervals). Counting is enrichment: a
count that fails is a warning, never a failed run; and it can be turned off.
"""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from helpers.harness import copy_project, plan_project, query, run_in_process, run_multiprocess

PROJECT = Path(__file__).parent / "projects" / "metadata"
COUNTED = ("orders", "daily_events")  # tables
NOT_COUNTED = ("big_orders", "order_totals")  # a view; a table tagged dagster:row_count:false


@pytest.fixture
def project(tmp_path) -> Path:
    root = copy_project(PROJECT, tmp_path / "metadata")
    plan_project(root)
    return root


def key(name: str) -> str:
    return f"warehouse/shop/{name}"


def metadata_of(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """Asset key string -> materialization metadata (MetadataValue objects)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    found = {}
    for record in records:
        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
        found[mat.asset_key.to_user_string()] = dict(mat.metadata)
    return found


def warnings_of(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        e.message
        for e in instance.all_logs(run_id)
        if e.level >= 30 and e.message  # logging.WARNING
    ]


def count(db: Path, name: str) -> int:
    return query(db, f"SELECT count(*) FROM shop.{name}")[0][0]


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_row_counts_equal_the_warehouse_and_run_facts_are_numbers(project, instance, executor):
    db = project / "warehouse.duckdb"
    run = run_in_process if executor == "in_process" else run_multiprocess
    result = run(project, instance)
    assert result.success
    shown = metadata_of(instance, result.run_id)
    assert set(shown) == {key(n) for n in COUNTED + NOT_COUNTED}
    for name in COUNTED:
        row_count = shown[key(name)]["dagster/row_count"]
        assert isinstance(row_count, dg.IntMetadataValue)
        assert row_count.value == count(db, name) > 0
    for name in NOT_COUNTED:
        assert "dagster/row_count" not in shown[key(name)], name
    # DuckDB reports no rows written (SQLMesh tracks them on PostgreSQL, Snowflake, ...):
    # the key is absent rather than wrong.
    assert not [n for n, m in shown.items() if "sqlmesh/rows_written" in m]
    assert not [n for n, m in shown.items() if "sqlmesh/bytes_processed" in m]

    events = shown[key("daily_events")]
    days = query(db, "SELECT count(DISTINCT event_date) FROM shop.daily_events")[0][0]
    assert days > 7  # the project starts before the last seven days
    assert isinstance(events["sqlmesh/interval_count"], dg.IntMetadataValue)
    assert events["sqlmesh/interval_count"].value == days
    assert events["sqlmesh/batches"].value == math.ceil(days / 7)  # batch_size 7
    assert isinstance(events["sqlmesh/batches"], dg.IntMetadataValue)
    for name in COUNTED:
        duration = shown[key(name)]["sqlmesh/duration_s"]
        assert isinstance(duration, dg.FloatMetadataValue)
        assert 0 <= duration.value < 60


def test_the_switch_turns_counting_off(project, instance, monkeypatch):
    from dg_sqlmesh.execution import row_counts

    def never(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("counted although row_counts=False")

    monkeypatch.setattr(row_counts, "count_tables", never)
    result = run_in_process(project, instance, row_counts=False)
    assert result.success
    shown = metadata_of(instance, result.run_id)
    assert len(shown) == 4
    assert not [n for n, m in shown.items() if "dagster/row_count" in m]
    assert not [w for w in warnings_of(instance, result.run_id) if "not counted" in w]


def test_a_count_that_raises_is_a_warning_not_a_failure(project, instance, monkeypatch):
    from dg_sqlmesh.execution import row_counts

    def broken(adapter, tables):  # noqa: ANN001, ANN202
        raise RuntimeError("warehouse refused the count")

    monkeypatch.setattr(row_counts, "count_tables", broken)
    result = run_in_process(project, instance)
    assert result.success
    shown = metadata_of(instance, result.run_id)
    assert len(shown) == 4
    assert not [n for n, m in shown.items() if "dagster/row_count" in m]
    assert all(shown[key(n)]["sqlmesh/state"].value == "materialized" for n in COUNTED)
    warned = [w for w in warnings_of(instance, result.run_id) if "warehouse refused" in w]
    assert any("shop.orders: rows not counted" in w for w in warned)


def test_a_table_dropped_behind_sqlmeshs_back_costs_only_its_own_count(project, instance):
    db = project / "warehouse.duckdb"
    assert run_in_process(project, instance).success
    (table,) = query(
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'sqlmesh__shop' "
        "AND table_name LIKE 'shop__orders__%'",
    )
    with duckdb.connect(str(db)) as conn:
        conn.execute(f'DROP TABLE sqlmesh__shop."{table[0]}"')

    second = run_in_process(project, instance)  # nothing due: every model up to date
    assert second.success
    shown = metadata_of(instance, second.run_id)
    assert all(m["sqlmesh/state"].value == "up_to_date" for m in shown.values())
    assert "dagster/row_count" not in shown[key("orders")]
    assert shown[key("daily_events")]["dagster/row_count"].value == count(db, "daily_events")
    warned = warnings_of(instance, second.run_id)
    assert any("shop.orders: rows not counted" in w for w in warned)


def test_row_counts_in_a_dev_environment(tmp_path, instance):
    """A dev environment's tables are found as SQLMesh resolves them (its views in
    ``<schema>__dev`` name the same rows)."""
    project = copy_project(PROJECT, tmp_path / "dev")
    plan_project(project, "dev")
    db = project / "warehouse.duckdb"
    result = run_in_process(project, instance, environment="dev")
    assert result.success
    shown = metadata_of(instance, result.run_id)
    for name in COUNTED:
        expected = query(db, f"SELECT count(*) FROM shop__dev.{name}")[0][0]
        assert shown[key(name)]["dagster/row_count"].value == expected > 0
