"""Everything on PostgreSQL: the example shop project on its ``postgres`` gateway (warehouse
and SQLMesh state), the Dagster instance's storage, the multiprocess executor."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import copy_project, materialized, partition_materializations, run_multiprocess
from helpers.pg_server import PostgresServer, postgres_available
from helpers.reliability import coordinator_runs, executions_of

from dg_sqlmesh import load_project
from dg_sqlmesh.metadata import RUN, TABLE

_reason = postgres_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop"


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_instance(pg, tmp_path):
    """A Dagster instance whose run, event log and schedule storage live in ``pg``."""
    pg.drop_database("dagster_shop")
    pg.create_database("dagster_shop")
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(
        temp_dir=str(home), overrides={"storage": pg.dagster_storage("dagster_shop")}
    ) as instance:
        yield instance


@pytest.fixture
def shop_on_pg(pg, tmp_path, monkeypatch):
    """A copy of the shop example whose ``postgres`` gateway points at ``pg``, planned."""
    pg.drop_database("shop")
    pg.create_database("shop")
    for name, value in {
        "SHOP_PG_HOST": pg.host,
        "SHOP_PG_PORT": str(pg.port),
        "SHOP_PG_USER": pg.user,
        "SHOP_PG_PASSWORD": pg.password,
        "SHOP_PG_DATABASE": "shop",
    }.items():
        monkeypatch.setenv(name, value)  # inherited by the step processes
    project = copy_project(EXAMPLE, tmp_path / "shop")
    plan(project, "postgres")
    return project


def plan(project: Path, gateway: str) -> None:
    """Create prod with SQLMesh itself, leaving every interval to the Dagster run."""
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    from dg_sqlmesh.project.config import load_config

    set_console(NoopConsole())
    config, gateway_name = load_config(project, gateway)
    context = Context(paths=[project], config=config, gateway=gateway_name)
    try:
        context.plan("prod", auto_apply=True, no_prompts=True, skip_backfill=True)
    finally:
        context.close()


def test_shop_on_postgres_with_dagster_on_postgres_multiprocess(pg, shop_on_pg, pg_instance):
    assert type(pg_instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(pg_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    models = [m for m in load_project(shop_on_pg, "postgres").models if not m.is_external]
    assert len(models) == 12

    result = run_multiprocess(
        shop_on_pg,
        pg_instance,
        max_concurrent=4,
        gateway="postgres",
        external_asset_mapping="raw/{node.schema}/{node.name}",
    )
    assert result.success

    # one SQLMesh execution for the whole run, by one leader step
    assert executions_of(pg_instance, result.run_id) == 1
    (leader,) = coordinator_runs(pg_instance)
    assert leader["run_id"] == result.run_id and leader["attempt"] == 1

    # every model is shown materialized, and its table is in PostgreSQL with rows
    shown = materialized(pg_instance, result.run_id)
    assert set(shown) == {f"shop/{m.schema}/{m.table}" for m in models}
    for key, metadata in shown.items():
        assert metadata[RUN.state] == "materialized", key
        _, schema, table = key.split("/")
        (count,) = pg.execute(f"SELECT COUNT(*) FROM {schema}.{table}", dbname="shop")[0]
        assert count > 0, f"{key} shown materialized but {schema}.{table} holds no rows"
    # row counts: every table's count(*), and on PostgreSQL SQLMesh reports the rows each
    # batch wrote: a first run writes every row its table holds
    views = {"shop/staging/stg_products", "shop/staging/stg_customers"}
    by_partition = partition_materializations(pg_instance, result.run_id)
    for key, metadata in shown.items():
        _, schema, table = key.split("/")
        if key in by_partition:  # partitioned: each partition counts its own rows
            (count,) = pg.execute(f"SELECT COUNT(*) FROM {schema}.{table}", dbname="shop")[0]
            rows = [m[TABLE.row_count] for m in by_partition[key].values()]
            assert sum(rows) == count and max(rows) < count, (key, rows)
            continue
        if key in views:
            assert TABLE.row_count not in metadata, key
            continue
        (count,) = pg.execute(f"SELECT COUNT(*) FROM {schema}.{table}", dbname="shop")[0]
        assert metadata[TABLE.row_count] == count, key
        assert metadata[RUN.rows_written] == count, key

    # SQLMesh's state and Dagster's event log are in PostgreSQL too
    tables = pg.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'sqlmesh'",
        dbname="shop",
    )
    assert {"_snapshots", "_environments", "_intervals", "_versions"} <= {t for (t,) in tables}
    events = pg.execute(
        "SELECT COUNT(*), COUNT(partition) FROM event_logs "
        "WHERE run_id = %s AND dagster_event_type = %s",
        (result.run_id, "ASSET_MATERIALIZATION"),
        dbname="dagster_shop",
    )
    # one per unpartitioned model, and one per day (interval) of the partitioned
    # marts.daily_revenue, from the example's start to yesterday: never an unpartitioned one
    days = (datetime.now(UTC).date() - date(2026, 11, 20)).days
    ((total, partitions),) = events
    assert (total - partitions, partitions) == (11, days)
    # the incremental models hold each grain once
    for sql in (
        "SELECT COUNT(*) - COUNT(DISTINCT order_id) FROM staging.stg_orders",
        "SELECT COUNT(*) - COUNT(DISTINCT order_date) FROM marts.daily_revenue",
    ):
        assert pg.execute(sql, dbname="shop") == [(0,)]
