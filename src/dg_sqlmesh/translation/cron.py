"""Cron arithmetic: SQLMesh crons as Dagster reads them, how often they fire, the finest.

SQLMesh crons are croniter expressions (SQLMesh's own cron library); Dagster's
schedules, automation conditions and freshness policies read the common ones too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dg_sqlmesh.errors import SQLMeshDefinitionError

if TYPE_CHECKING:
    from dg_sqlmesh.project.description import ModelInfo

# SQLMesh crons are croniter expressions. Dagster reads the common aliases too; the
# rare ones are spelled out so the schedule shows a cron every tool understands.
_CRON_ALIASES = {
    "@midnight": "@daily",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_REFERENCE = datetime(2024, 1, 1)  # a fixed start makes the cron comparison deterministic
_SAMPLES = 64


def dagster_cron(cron: str) -> str:
    """A SQLMesh cron written the way Dagster schedules and conditions expect it.

    Example:
        >>> dagster_cron("@daily"), dagster_cron("@annually"), dagster_cron("*/15 * * * *")
        ('@daily', '0 0 1 1 *', '*/15 * * * *')
    """
    cron = " ".join(cron.split())
    return _CRON_ALIASES.get(cron.lower(), cron)


def cron_interval(cron: str, cron_tz: str | None = None) -> tuple[timedelta, timedelta]:
    """How often a cron fires: its smallest and its mean gap between two ticks.

    Measured over the next ticks from a fixed date with croniter (SQLMesh's own
    cron library), so irregular crons (``0 9-17 * * 1-5``) compare by their busiest
    stretch.

    Example:
        >>> cron_interval("@hourly")[0] < cron_interval("@daily")[0]
        True
    """
    from croniter import croniter

    start = _REFERENCE.replace(tzinfo=ZoneInfo(cron_tz or "UTC"))
    ticks = croniter(cron, start)
    times = [ticks.get_next(datetime) for _ in range(_SAMPLES)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return min(gaps), sum(gaps, timedelta()) / len(gaps)


@dataclass(frozen=True)
class ChosenCron:
    """The cron an adaptive schedule ticks on, and why."""

    cron: str  # as Dagster reads it
    sqlmesh_cron: str  # as the models declare it
    timezone: str
    models: tuple[str, ...]  # model names that use it
    others: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other crons -> models

    def explain(self) -> str:
        users = listed(self.models)
        text = (
            f"Ticks on '{self.cron}' ({self.timezone}), the finest cron among the project's "
            f"models: {users} {'runs' if len(self.models) == 1 else 'run'} on "
            f"'{self.sqlmesh_cron}'."
        )
        if self.others:
            rest = "; ".join(f"'{c}': {listed(m)}" for c, m in self.others.items())
            text += f" Coarser crons, picked up by the first tick after they elapse: {rest}."
        return text


def finest_cron(models: Iterable[ModelInfo]) -> ChosenCron:
    """The cron with the smallest interval among the non-external models.

    Ties go to the cron with the smaller mean interval, then to the one most models
    use. The timezone is the model's ``cron_tz`` (UTC when unset).

    Example:
        >>> from dg_sqlmesh import load_project
        >>> finest_cron(load_project("examples/shop").models).cron  # doctest: +SKIP
        '@daily'
    """
    by_cron: dict[tuple[str, str], list[str]] = {}
    for model in models:
        if model.is_external or not model.cron:
            continue
        tz = getattr(model, "cron_tz", None) or "UTC"
        by_cron.setdefault((" ".join(model.cron.split()), tz), []).append(model.name)
    if not by_cron:
        raise SQLMeshDefinitionError(
            "The SQLMesh project has no model with a cron, so an adaptive schedule has nothing "
            "to follow. Add a model, or leave enable_schedule off."
        )

    def rank(item: tuple[tuple[str, str], list[str]]) -> tuple:
        (cron, tz), names = item
        try:
            smallest, mean = cron_interval(cron, tz)
        except Exception as exc:  # croniter's errors: CroniterBadCronError, ValueError...
            raise SQLMeshDefinitionError(
                f"The cron '{cron}' of model(s) {listed(names)} could not be read: {exc}"
            ) from exc
        return (smallest, mean, -len(names), cron, tz)

    ranked = sorted(by_cron.items(), key=rank)
    (cron, tz), names = ranked[0]
    others = {f"{c}" if t == tz else f"{c} ({t})": tuple(m) for (c, t), m in ranked[1:]}
    return ChosenCron(
        cron=dagster_cron(cron), sqlmesh_cron=cron, timezone=tz, models=tuple(names), others=others
    )


def listed(names: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` names, comma-separated, and how many more there are.

    Example:
        >>> listed(["a", "b", "c"], 2)
        'a, b and 1 more'
    """
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
