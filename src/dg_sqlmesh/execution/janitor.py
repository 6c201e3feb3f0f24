"""SQLMesh's janitor: remove expired environments (their views and schemas) and the
tables of snapshots no environment uses any more, per ``environment_ttl`` and
``snapshot_ttl``; and invalidate one named environment first (a closed pull request's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmesh.utils.date import now_timestamp

from dg_sqlmesh._compat.sqlmesh_run import CleanupConsole
from dg_sqlmesh.constants import PROD
from dg_sqlmesh.errors import SQLMeshRunFailure
from dg_sqlmesh.execution.progress import LogFn
from dg_sqlmesh.execution.settings import SQLMeshProject


@dataclass
class JanitorReport:
    """What the janitor removed."""

    invalidated: str | None = None  # the environment invalidated first, if it existed
    environments: list[str] = field(default_factory=list)  # expired ones removed
    objects: list[str] = field(default_factory=list)  # views, schemas and tables dropped

    def summary(self) -> str:
        parts = []
        if self.invalidated:
            parts.append(f"invalidated environment '{self.invalidated}'")
        parts.append(
            f"removed {len(self.environments)} expired environment(s)"
            + (f" ({', '.join(self.environments)})" if self.environments else "")
        )
        parts.append(f"dropped {len(self.objects)} warehouse object(s)")
        return "SQLMesh janitor: " + "; ".join(parts)


def run_janitor(
    project: SQLMeshProject,
    *,
    log: LogFn,
    invalidate: str | None = None,
    ignore_ttl: bool = False,
) -> JanitorReport:
    """Run SQLMesh's janitor on the project's state (``sqlmesh janitor``); with
    ``invalidate``, expire that environment first (``sqlmesh invalidate``) so this run
    removes it. Prod is never invalidated."""
    report = JanitorReport()
    console = CleanupConsole()
    context: Any = project.create_context(console=console)
    try:
        if invalidate is not None:
            name = invalidate.strip().lower()
            if name == PROD:
                raise SQLMeshRunFailure(
                    description="The janitor never invalidates prod: name a development "
                    "environment (a closed pull request's, say) in invalidate_environment.",
                    allow_retries=False,
                )
            if context.state_sync.get_environment(name) is None:
                log("info", f"Environment '{name}' does not exist (nothing to invalidate)")
            else:
                context.invalidate_environment(name)
                report.invalidated = name
                log("info", f"Invalidated environment '{name}': the janitor removes it now")
        expired = context.state_sync.get_expired_environments(current_ts=now_timestamp())
        report.environments = sorted(e.name for e in expired)
        context.run_janitor(ignore_ttl=ignore_ttl)
    finally:
        context.close()
    report.objects = console.dropped
    for warning in console.warnings:
        log("warning", warning)
    return report
