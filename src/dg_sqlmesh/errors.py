"""Error types, and the transient/persistent classification of run-time failures.

Every error the library raises is a :class:`DagsterSQLMeshError`. Definition-time
mistakes (a missing project, a malformed tag, two models on one asset key) raise
:class:`SQLMeshDefinitionError`, a ``DagsterInvalidDefinitionError`` whose message names
the problem and the fix. Run-time failures raise :class:`SQLMeshRunFailure`, a
``dagster.Failure`` carrying the classification in its metadata; those no retry of the
same step can fix (a model's error, a missing environment, an environment busy for too
long, a lost leader) are raised with ``allow_retries=False``.
"""

from __future__ import annotations

import enum
import re
import socket
from collections.abc import Iterator

import dagster as dg

from dg_sqlmesh.constants import PROD


class DagsterSQLMeshError(Exception):
    """The root of every error dg-sqlmesh raises."""


class SQLMeshDefinitionError(DagsterSQLMeshError, dg.DagsterInvalidDefinitionError):
    """The SQLMesh project cannot be turned into Dagster definitions."""


class SQLMeshRunFailure(DagsterSQLMeshError, dg.Failure):
    """A model (or SQLMesh itself) failed during a run."""


class SQLMeshEnvironmentError(SQLMeshRunFailure):
    """The SQLMesh environment to run is missing or cannot be used."""


class EnvironmentBusy(SQLMeshRunFailure):
    """Another run kept the SQLMesh environment busy longer than this run would wait."""

    def __init__(self, description: str) -> None:
        super().__init__(description=description, allow_retries=False)


class LeaderLost(SQLMeshRunFailure):
    """The step executing SQLMesh for this run stopped before publishing its outcome."""

    def __init__(self, description: str) -> None:
        super().__init__(description=description, allow_retries=False)


class ErrorClass(enum.StrEnum):
    """Whether retrying the same work may succeed."""

    TRANSIENT = "transient"
    PERSISTENT = "persistent"


# Exception class names (anywhere in the cause chain) raised by SQLMesh's engine
# adapters and the DB drivers they wrap when the failure is about reaching the
# database rather than about the SQL. Names, not imports: the drivers are optional.
_TRANSIENT_TYPE_NAMES = frozenset(
    {
        "OperationalError",  # psycopg2 / sqlite3: connection dropped, server closed, lock timeout
        "InterfaceError",  # psycopg2: connection already closed
        "AdminShutdown",
        "SerializationFailure",
        "DeadlockDetected",
        "LockNotAvailable",
        "QueryCanceled",
        "ConnectionException",  # duckdb
        "IOException",  # duckdb: "Could not set lock on file"
        "TimeoutError",
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "BrokenPipeError",
    }
)

_TRANSIENT_MESSAGE = re.compile(
    r"could not set lock on file|conflicting lock|database is locked|lock timeout|"
    r"deadlock detected|could not serialize access|connection (?:refused|reset|timed out|"
    r"to server .* failed)|server closed the connection|terminating connection|"
    r"connection already closed|the database system is (?:starting up|shutting down)|"
    r"network is unreachable|\btimed out\b|\b(?:statement|lock|connect|connection|read|query) "
    r"timeout\b|timeout expired",
    re.IGNORECASE,
)

# Some driver errors share a transient type with persistent causes (psycopg2 raises
# OperationalError for a wrong password and for a dropped connection alike).
_PERSISTENT_MESSAGE = re.compile(
    r"password authentication failed|role .* does not exist|database .* does not exist|"
    r"permission denied|syntax error|catalog error|binder error|parser error|"
    r"does not exist|doesn't exist|conversion error|constraint|unknown (?:column|database|table)|"
    r"access denied|no files found",
    re.IGNORECASE,
)


def cause_chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then its causes (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_error(error: BaseException) -> tuple[ErrorClass, str]:
    """Classify a failure as transient (worth retrying) or persistent, and say why.

    Walks the exception's cause chain. Audit failures, SQL and binder errors and
    missing objects are persistent; dropped connections, refused connections, lock
    and network timeouts are transient.

    Example:
        >>> classify_error(ConnectionRefusedError("connection refused"))[0]
        <ErrorClass.TRANSIENT: 'transient'>
    """
    chain = list(cause_chain(error))
    for exc in chain:
        if type(exc).__name__ in {"NodeAuditsErrors", "AuditError"}:
            return ErrorClass.PERSISTENT, f"audit failure ({type(exc).__name__})"
    for exc in chain:
        text = str(exc)
        name = type(exc).__name__
        if _PERSISTENT_MESSAGE.search(text) and not _TRANSIENT_MESSAGE.search(text):
            continue
        if name in _TRANSIENT_TYPE_NAMES or isinstance(exc, (socket.timeout, ConnectionError)):
            return ErrorClass.TRANSIENT, f"{name}: {_first_line(text)}"
        if _TRANSIENT_MESSAGE.search(text):
            return ErrorClass.TRANSIENT, f"{name}: {_first_line(text)}"
    root = chain[-1] if chain else error
    return ErrorClass.PERSISTENT, f"{type(root).__name__}: {_first_line(str(root))}"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:300]


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain_text(error: BaseException | str) -> str:
    """An error's text without the terminal escape codes some engines put in it (DuckDB
    underlines the offending SQL: ``\\x1b[4mAS\\x1b[0m``), for the UI and the run log."""
    return _TERMINAL_CODES.sub("", str(error))


def plan_command(project_dir: object, environment: str) -> str:
    """The ``sqlmesh`` command that creates or updates ``environment`` (a dev environment
    holds every model, changed or not, so that it can run them all)."""
    unmodified = "" if environment.lower() == PROD else " --include-unmodified"
    return f"`sqlmesh -p {project_dir} plan {environment}{unmodified}`"


def dagster_plan_option(environment: str) -> str:
    """The resource options that let a run apply that plan itself (prod needs two)."""
    prod = ", allow_prod_plan=True" if environment.lower() == PROD else ""
    return f"SQLMeshResource(apply_plan=True{prod})"
