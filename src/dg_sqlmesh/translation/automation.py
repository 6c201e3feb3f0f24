"""Per-model automation: each asset requests itself when its SQLMesh cron ticks.

The alternative to the adaptive schedule (``dg_sqlmesh.scheduling.schedules``): instead of one
schedule deciding what is due, every model asset carries an automation condition
that follows the model's own cron, evaluated by Dagster's automation sensor.

Enable it with ``automation_from_cron=True`` on the factories, or with
``SQLMeshTranslator(automation_from_cron=True)``.
"""

from __future__ import annotations

import dagster as dg

from dg_sqlmesh.project.description import ModelInfo
from dg_sqlmesh.translation.cron import dagster_cron


def cron_automation_condition(model: ModelInfo) -> dg.AutomationCondition:
    """Request the model once after each tick of its SQLMesh cron.

    True when a tick of the model's cron (in its ``cron_tz``, UTC by default) has
    passed since the asset was last requested or updated, and neither the asset nor
    one of its upstream assets is in a run that is still going.

    Unlike ``AutomationCondition.on_cron``, it does not wait for every upstream asset
    to be updated since the tick, which matches how SQLMesh decides: a model is due
    when its own cron interval has elapsed. Upstream models due at the same tick are
    requested by the same evaluation, so they run first in the same run, and
    external models (which Dagster never sees updated) do not block it forever.

    Example:
        >>> from dg_sqlmesh import ModelInfo
        >>> model = ModelInfo(
        ...     fqn='"db"."s"."t"', name="s.t", catalog="db", schema="s", table="t",
        ...     kind="FULL", cron="@hourly",
        ... )
        >>> cron_automation_condition(model).get_label()
        'sqlmesh_cron(@hourly, UTC)'
    """
    if model.is_external or model.is_embedded or not model.cron:
        raise ValueError(f"{model.name} has no cron: external models are never run by SQLMesh")
    cron = dagster_cron(model.cron)
    tz = getattr(model, "cron_tz", None) or "UTC"
    condition = (
        dg.AutomationCondition.in_latest_time_window()
        & dg.AutomationCondition.cron_tick_passed(cron, tz).since_last_handled()
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.any_deps_in_progress()
    )
    return condition.with_label(f"sqlmesh_cron({model.cron}, {tz})")
