"""SQLMesh's internals the leader needs to run SQLMesh and hear what it did: its console
base class, its notification events and its model selector, which we subclass.

Imported only by the step that executes SQLMesh (``execution.console``), so loading
definitions never imports them. Checked against SQLMesh 0.236.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlmesh.core.console import NoopConsole
from sqlmesh.core.notification_target import NotificationEvent
from sqlmesh.core.selector import NativeSelector

from dg_sqlmesh._compat.sqlmesh import expand_in_chunks

__all__ = ["ExactSelector", "NoopConsole", "NotificationEvent"]


class ExactSelector(NativeSelector):
    """SQLMesh's native selector, matching a model's exact FQN before normalising names.

    SQLMesh normalises every selected name with the project's default dialect, so the
    FQN of a model in another dialect can match nothing, or another model: a Snowflake
    model ``sales."DailyTotals"`` is ``"DB"."SALES"."DailyTotals"``, which DuckDB's
    normalisation turns into ``"db"."sales"."dailytotals"``. The run selects by FQN, as
    SQLMesh's snapshots name the models, so an exact match is the model meant.
    ``on_resolved`` receives what every selection matched.
    """

    def __init__(
        self, *args: Any, on_resolved: Callable[[set[str]], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_resolved = on_resolved

    def expand_model_selections(
        self, model_selections: Iterable[str], models: dict[str, Any] | None = None
    ) -> set[str]:
        selected = expand_in_chunks(
            lambda chunk: super(ExactSelector, self).expand_model_selections(chunk, models),
            model_selections,
        )
        if self._on_resolved is not None:
            self._on_resolved(set(selected))
        return selected

    def _pattern_to_model_fqns(self, pattern: str, all_models: dict[str, Any]) -> set[str]:
        if pattern in all_models:
            return {pattern}
        return super()._pattern_to_model_fqns(pattern, all_models)


class CleanupConsole(NoopConsole):
    """Collects what SQLMesh's janitor drops (``Console.update_cleanup_progress``, called
    with each view, schema and table) and the warnings it logs. Checked against SQLMesh
    0.236."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[str] = []
        self.warnings: list[str] = []

    def update_cleanup_progress(self, object_name: str) -> None:
        self.dropped.append(str(object_name))

    def log_warning(self, short_message: str, long_message: str | None = None) -> None:
        self.warnings.append(long_message or short_message)


def quiet_console() -> NoopConsole:
    """A SQLMesh console that prints nothing (a plan computed for review only)."""
    return NoopConsole()
