"""Transient/persistent classification on the real exception types SQLMesh and drivers raise."""

from __future__ import annotations

import duckdb
import psycopg2
import pytest
from sqlglot import exp
from sqlmesh.utils.errors import AuditError, NodeAuditsErrors

from dg_sqlmesh import ErrorClass, classify_error


def wrapped(cause: BaseException) -> Exception:
    """As SQLMesh reports it: its own error raised from the driver's."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("Execution failed for node") from inner
    except RuntimeError as outer:
        return outer


def duckdb_error(sql: str, path: str | None = None) -> Exception:
    conn = duckdb.connect(path or ":memory:")
    try:
        conn.execute(sql)
    except duckdb.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("expected an error")


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("[Errno 111] Connection refused"),
        TimeoutError("timed out"),
        psycopg2.OperationalError("server closed the connection unexpectedly"),
        psycopg2.OperationalError(
            'connection to server at "127.0.0.1", port 5999 failed: Connection refused'
        ),
    ],
)
def test_transient(error):
    assert classify_error(wrapped(error))[0] is ErrorClass.TRANSIENT


def test_duckdb_lock_is_transient(tmp_path):
    path = str(tmp_path / "db.duckdb")
    holder = duckdb.connect(path)
    try:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            message = pool.apply(_lock_message, (path,))
    finally:
        holder.close()
    assert "lock" in message.lower()
    error_class, reason = classify_error(wrapped(duckdb.IOException(message)))
    assert error_class is ErrorClass.TRANSIENT
    assert "IOException" in reason


def _lock_message(path: str) -> str:
    try:
        duckdb.connect(path)
    except duckdb.Error as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize(
    "sql",
    ["SELEC 1", "SELECT * FROM no_such_table", "SELECT CAST('x' AS INT)", "SELECT error('boom')"],
)
def test_sql_errors_are_persistent(sql):
    error_class, reason = classify_error(wrapped(duckdb_error(sql)))
    assert error_class is ErrorClass.PERSISTENT
    assert reason


def test_wrong_password_is_persistent_although_operational():
    error = psycopg2.OperationalError('password authentication failed for user "postgres"')
    assert classify_error(wrapped(error))[0] is ErrorClass.PERSISTENT


def test_audit_failure_is_persistent():
    audit = AuditError(audit_name="not_null", audit_args={}, count=3, query=exp.select("1"))
    error_class, reason = classify_error(wrapped(NodeAuditsErrors([audit])))
    assert error_class is ErrorClass.PERSISTENT
    assert "audit" in reason


@pytest.mark.parametrize(
    "sql",
    [
        # A column whose name says "timeout" is still a binder error.
        "SELECT session_timeout FROM (SELECT 1 AS x)",
        "SELECT connect_timeout, read_timeout FROM (SELECT 1 AS x)",
        # A missing file is not worth retrying although DuckDB raises an IOException.
        "SELECT * FROM read_csv('/nonexistent/dg_sqlmesh/*.csv')",
    ],
)
def test_persistent_errors_that_look_transient(sql):
    error = duckdb_error(sql)
    error_class, reason = classify_error(wrapped(error))
    assert error_class is ErrorClass.PERSISTENT, reason


def _driver_error(type_name: str, message: str) -> Exception:
    """An error of a driver not installed here (PyMySQL), by its class name."""
    return type(type_name, (Exception,), {})(message)


@pytest.mark.parametrize(
    "message",
    [
        "(1054, \"Unknown column 'amount' in 'field list'\")",
        "(1045, \"Access denied for user 'etl'@'10.0.0.1' (using password: YES)\")",
        "(1146, \"Table 'shop.orders' doesn't exist\")",
    ],
)
def test_mysql_operational_errors_about_the_sql_are_persistent(message):
    error = _driver_error("OperationalError", message)
    assert classify_error(wrapped(error))[0] is ErrorClass.PERSISTENT


@pytest.mark.parametrize(
    "message",
    [
        "canceling statement due to statement timeout",
        "timeout expired",
        "could not receive data from server: Connection timed out",
        "(2013, 'Lost connection to MySQL server during query (timed out)')",
    ],
)
def test_timeouts_are_transient(message):
    error = _driver_error("OperationalError", message)
    assert classify_error(wrapped(error))[0] is ErrorClass.TRANSIENT
