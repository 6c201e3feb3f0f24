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
from helpers.harness import (
    copy_project,
    materialization_metadata,
    plan_project,
    query,
    run_in_process,
    run_multiprocess,
)

from dg_sqlmesh.metadata import RUN, TABLE

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
    shown = materialization_metadata(instance, result.run_id)
    assert set(shown) == {key(n) for n in COUNTED + NOT_COUNTED}
    for name in COUNTED:
        row_count = shown[key(name)][TABLE.row_count]
        assert isinstance(row_count, dg.IntMetadataValue)
        assert row_count.value == count(db, name) > 0
    for name in NOT_COUNTED:
        assert TABLE.row_count not in shown[key(name)], name
    # DuckDB reports no rows written (SQLMesh tracks them on PostgreSQL, Snowflake, ...):
    # the key is absent rather than wrong.
    assert not [n for n, m in shown.items() if RUN.rows_written in m]
    assert not [n for n, m in shown.items() if RUN.bytes_processed in m]

    events = shown[key("daily_events")]
    days = query(db, "SELECT count(DISTINCT event_date) FROM shop.daily_events")[0][0]
    assert days > 7  # the project starts before the last seven days
    assert isinstance(events[RUN.interval_count], dg.IntMetadataValue)
    assert events[RUN.interval_count].value == days
    assert events[RUN.batches].value == math.ceil(days / 7)  # batch_size 7
    assert isinstance(events[RUN.batches], dg.IntMetadataValue)
    for name in COUNTED:
        duration = shown[key(name)][RUN.duration_s]
        assert isinstance(duration, dg.FloatMetadataValue)
        assert 0 <= duration.value < 60


def test_the_switch_turns_counting_off(project, instance, monkeypatch):
    from dg_sqlmesh.execution import row_counts

    def never(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("counted although row_counts=False")

    monkeypatch.setattr(row_counts, "count_tables", never)
    result = run_in_process(project, instance, row_counts=False)
    assert result.success
    shown = materialization_metadata(instance, result.run_id)
    assert len(shown) == 4
    assert not [n for n, m in shown.items() if TABLE.row_count in m]
    assert not [w for w in warnings_of(instance, result.run_id) if "not counted" in w]


def test_a_count_that_raises_is_a_warning_not_a_failure(project, instance, monkeypatch):
    from dg_sqlmesh.execution import row_counts

    def broken(adapter, tables):  # noqa: ANN001, ANN202
        raise RuntimeError("warehouse refused the count")

    monkeypatch.setattr(row_counts, "count_tables", broken)
    result = run_in_process(project, instance)
    assert result.success
    shown = materialization_metadata(instance, result.run_id)
    assert len(shown) == 4
    assert not [n for n, m in shown.items() if TABLE.row_count in m]
    assert all(shown[key(n)][RUN.state].value == "materialized" for n in COUNTED)
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
    shown = materialization_metadata(instance, second.run_id)
    assert all(m[RUN.state].value == "up_to_date" for m in shown.values())
    assert TABLE.row_count not in shown[key("orders")]
    assert shown[key("daily_events")][TABLE.row_count].value == count(db, "daily_events")
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
    shown = materialization_metadata(instance, result.run_id)
    for name in COUNTED:
        expected = query(db, f"SELECT count(*) FROM shop__dev.{name}")[0][0]
        assert shown[key(name)][TABLE.row_count].value == expected > 0
