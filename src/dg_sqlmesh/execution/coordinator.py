"""Cross-process coordination: one leader per Dagster run, an outcome store, and an
environment lock.

Under Dagster's multiprocess executor every step is its own process, so the state
that says "SQLMesh already ran for this run, here is what happened" cannot live in
memory. It lives in a small SQLite database in the Dagster instance's storage
folder, which every step process of the instance can open. Leader election is an
``INSERT`` on the run's primary key; outcomes are rows keyed by run and model.

The environment lock is an OS file lock (``flock``), released by the kernel when
its holder dies, so a killed run never leaves the environment locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dg_sqlmesh.execution.outcomes import ModelOutcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    leader_step TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL,
    finished REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS outcomes (
    run_id TEXT NOT NULL,
    fqn TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, fqn)
);
CREATE TABLE IF NOT EXISTS executions (
    run_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    started REAL NOT NULL
);
"""

HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 120.0
KEEP_RECORDS_SECONDS = 7 * 24 * 3600.0


class LeaderLost(RuntimeError):
    """The step executing SQLMesh for this run died before recording its outcome."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    leader_step: str
    host: str
    pid: int
    heartbeat: float
    finished: float | None
    error: str | None


class RunCoordinator:
    """Leader election and outcome store for the runs of one Dagster instance."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "runs.sqlite"
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            yield conn
        finally:
            conn.close()

    def claim(self, run_id: str, step_key: str) -> bool:
        """Try to become the run's leader. Exactly one caller per run gets True."""
        now = time.time()
        with self._connect() as conn:
            self._prune(conn, now - KEEP_RECORDS_SECONDS)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO runs (run_id, leader_step, host, pid, started, heartbeat)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, step_key, socket.gethostname(), os.getpid(), now, now),
            )
            return cursor.rowcount == 1

    @staticmethod
    def _prune(conn: sqlite3.Connection, before: float) -> None:
        """Forget runs older than a week: their steps have long reported."""
        old = "SELECT run_id FROM runs WHERE started < ?"
        conn.execute(f"DELETE FROM outcomes WHERE run_id IN ({old})", (before,))
        conn.execute("DELETE FROM executions WHERE started < ?", (before,))
        conn.execute("DELETE FROM runs WHERE started < ?", (before,))

    def record_execution(self, run_id: str, environment: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO executions (run_id, environment, started) VALUES (?, ?, ?)",
                (run_id, environment, time.time()),
            )

    def executions(self, run_id: str) -> int:
        """How many SQLMesh executions were started for ``run_id`` (for tests and audits)."""
        with self._connect() as conn:
            row = conn.execute("SELECT COUNT(*) FROM executions WHERE run_id = ?", (run_id,))
            return int(row.fetchone()[0])

    @contextlib.contextmanager
    def heartbeat(self, run_id: str) -> Iterator[None]:
        """Keep the leader's heartbeat fresh while SQLMesh runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                with contextlib.suppress(sqlite3.Error), self._connect() as conn:
                    conn.execute(
                        "UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time(), run_id)
                    )

        thread = threading.Thread(target=beat, name="dg-sqlmesh-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=HEARTBEAT_SECONDS)

    def publish(
        self, run_id: str, outcomes: dict[str, ModelOutcome], error: str | None = None
    ) -> None:
        """Store the run's outcomes and mark it finished, in one transaction."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO outcomes (run_id, fqn, data) VALUES (?, ?, ?)",
                [(run_id, fqn, json.dumps(o.to_dict())) for fqn, o in outcomes.items()],
            )
            conn.execute(
                "UPDATE runs SET finished = ?, error = ? WHERE run_id = ?",
                (time.time(), error, run_id),
            )
            conn.execute("COMMIT")

    def record(self, run_id: str) -> RunRecord | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT run_id, leader_step, host, pid, heartbeat, finished, error"
                " FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        return None if row is None else RunRecord(*row)

    def outcome(self, run_id: str, fqn: str) -> ModelOutcome | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT data FROM outcomes WHERE run_id = ? AND fqn = ?", (run_id, fqn)
            ).fetchone()
        return None if row is None else ModelOutcome.from_dict(json.loads(row[0]))

    def wait_for_leader(
        self,
        run_id: str,
        *,
        poll_seconds: float = 0.2,
        on_wait: Callable[[RunRecord], None] | None = None,
    ) -> RunRecord:
        """Block until the run's leader has published, or raise :class:`LeaderLost`."""
        delay = 0.02
        announced = False
        while True:
            record = self.record(run_id)
            if record is None:
                raise LeaderLost(f"No step of run {run_id} claimed the SQLMesh execution.")
            if record.finished is not None:
                return record
            if not announced and on_wait is not None:
                on_wait(record)
                announced = True
            if _is_dead(record):
                raise LeaderLost(
                    f"Step '{record.leader_step}' (pid {record.pid} on {record.host}) was "
                    "executing SQLMesh for this run and stopped before recording what happened. "
                    "No outcome can be reported; re-execute the run to complete the work."
                )
            time.sleep(delay)
            delay = min(poll_seconds, delay * 2)


def _is_dead(record: RunRecord) -> bool:
    if time.time() - record.heartbeat > STALE_AFTER_SECONDS:
        return True
    if record.host != socket.gethostname():
        return False
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class EnvironmentBusy(RuntimeError):
    """Another run kept the environment locked longer than we were willing to wait."""


@contextlib.contextmanager
def environment_lock(
    directory: str | Path,
    key: str,
    *,
    holder: str,
    timeout_seconds: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock on a SQLMesh environment across processes.

    ``key`` identifies the environment (project, gateway, environment name); the
    holder's description is written into the lock file so that waiters can say who
    they are waiting for.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = directory / f"environment-{digest}.lock"
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_seconds
        announced = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                current = handle.read().strip() or "another run"
                if time.monotonic() >= deadline:
                    raise EnvironmentBusy(
                        f"{key} is still being run by {current} after waiting "
                        f"{timeout_seconds:.0f} s. Wait for that run to finish, or raise "
                        "SQLMeshResource(environment_lock_timeout=...)."
                    ) from None
                if not announced and on_wait is not None:
                    on_wait(current)
                    announced = True
                time.sleep(0.5)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(holder)
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
