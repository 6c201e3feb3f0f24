"""Tests for the throwaway-PostgreSQL helper (tests/helpers/pg_server.py) and smoke tests
that Dagster instance storage and a SQLMesh gateway both work against it."""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import pg_server  # noqa: E402
from helpers.pg_server import PostgresServer, postgres_available  # noqa: E402

_reason = postgres_available()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


def _select_one(server: PostgresServer, dbname: str) -> int:
    conn = server.connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_start_create_restart_crash_and_cleanup():
    with PostgresServer() as server:
        assert server.host == "127.0.0.1" and server.user == "postgres"
        port = server.port
        assert port and server.is_running()
        server.create_database("app")
        assert _select_one(server, "app") == 1

        server.execute("CREATE TABLE t (x int)", dbname="app")
        server.execute("INSERT INTO t VALUES (42)", dbname="app")

        # Clean restart with a short outage, same port.
        server.restart(down_seconds=0.2)
        assert server.port == port and server.is_running()
        assert _select_one(server, "app") == 1

        # Simulated crash: SIGKILL everything, then crash recovery on start.
        server.kill_hard()
        assert not server.is_running()
        import psycopg2

        with pytest.raises(psycopg2.OperationalError):
            server.connect("app", connect_timeout=2)
        server.start()
        assert server.port == port
        assert server.execute("SELECT x FROM t", dbname="app") == [(42,)]

        # Background outage: the server comes back by itself.
        thread = server.outage(0.3, delay=0.05)
        thread.join(timeout=30)
        assert thread.error is None and server.is_running()
        assert _select_one(server, "app") == 1

        pid = pg_server._read_postmaster_pid(server.data_dir)
        children = pg_server._children_of(pid)
        base_dir = server.base_dir

    # Context exit stops every process and removes the temp dir.
    assert not pg_server._pid_alive(pid)
    assert not any(pg_server._pid_alive(c) for c in children)
    assert not base_dir.exists()


def test_port_collision_is_retried(monkeypatch):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    real_free_port = pg_server._free_port
    ports = iter([taken])
    # First probe returns a port that is already bound; the retry must pick another.
    monkeypatch.setattr(
        pg_server, "_free_port", lambda host: next(ports, None) or real_free_port(host)
    )
    try:
        with PostgresServer() as server:
            assert server.port != taken
            assert _select_one(server, "postgres") == 1
    finally:
        blocker.close()


def test_dagster_instance_on_postgres(pg, tmp_path, monkeypatch):
    import dagster as dg

    pg.create_database("dagster_storage")
    (tmp_path / "dagster.yaml").write_text(
        textwrap.dedent(
            f"""\
            storage:
              postgres:
                postgres_db:
                  hostname: {pg.host}
                  port: {pg.port}
                  username: {pg.user}
                  password: {pg.password}
                  db_name: dagster_storage
                  # SQLAlchemy >= 2.1 maps plain "postgresql://" to psycopg (v3), which
                  # is not installed; dagster-postgres only depends on psycopg2.
                  scheme: postgresql+psycopg2
            telemetry:
              enabled: false
            """
        )
    )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    @dg.asset
    def hello() -> int:
        return 1

    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = dg.materialize([hello], instance=instance)
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey("hello"))
        assert event is not None and event.run_id == result.run_id
    finally:
        instance.dispose()

    # The events really live in Postgres.
    rows = pg.execute(
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
        (result.run_id, "ASSET_MATERIALIZATION"),
        dbname="dagster_storage",
    )
    assert rows == [(1,)]


def test_sqlmesh_postgres_gateway(pg, tmp_path):
    from sqlmesh import Context

    pg.create_database("warehouse")
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            gateways:
              pg:
                connection:
                  type: postgres
                  host: {pg.host}
                  port: {pg.port}
                  user: {pg.user}
                  password: {pg.password}
                  database: warehouse
            default_gateway: pg
            model_defaults:
              dialect: postgres
            """
        )
    )
    (project / "models" / "one.sql").write_text(
        "MODEL (name demo.one, kind FULL);\n\nSELECT 1 AS x\n"
    )

    context = Context(paths=str(project))
    try:
        context.plan(auto_apply=True, no_prompts=True)
    finally:
        context.close()

    assert pg.execute("SELECT x FROM demo.one", dbname="warehouse") == [(1,)]
    # SQLMesh state also went to this gateway's database.
    assert pg.execute(
        "SELECT count(*) > 0 FROM information_schema.tables WHERE table_schema = 'sqlmesh'",
        dbname="warehouse",
    ) == [(True,)]
