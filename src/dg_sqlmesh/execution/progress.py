"""The leader's live SQLMesh progress in the run log, at a cost that does not grow with
every batch.

Every log line is an event written to the Dagster instance (a few milliseconds each on
SQLite): one per evaluated batch made the leader of a 500-model run 4% slower than bare
``sqlmesh run``. Progress lines are gathered and written together at most once a
second; warnings and errors go at once, after what was gathered before them, so the order
is kept. Each model's own lines are also replayed in its step (``report``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg

FLUSH_SECONDS = 1.0

LogFn = Callable[[str, str], None]  # (level, message)
LEVELS = frozenset({"debug", "info", "warning", "error"})


def log_at(log: dg.DagsterLogManager, level: str, message: str) -> None:
    """Write ``message`` to a Dagster log at ``level`` (an unknown level is info)."""
    getattr(log, level if level in LEVELS else "info")(message)


@contextmanager
def live_progress(log: dg.DagsterLogManager) -> Iterator[LogFn]:
    """A ``(level, message)`` logger into ``log`` that batches info lines; flushed on exit."""
    lock = threading.Lock()
    pending: list[str] = []
    stop = threading.Event()

    def flush() -> None:
        with lock:
            lines = pending[:]
            pending.clear()
        if lines:
            log.info("\n".join(lines))

    def emit(level: str, message: str) -> None:
        if level == "info":
            with lock:
                pending.append(message)
            return
        flush()
        log_at(log, level, message)

    def flusher() -> None:
        while not stop.wait(FLUSH_SECONDS):
            flush()

    thread = threading.Thread(target=flusher, name="dg-sqlmesh-progress", daemon=True)
    thread.start()
    try:
        yield emit
    finally:
        stop.set()
        thread.join()
        flush()
