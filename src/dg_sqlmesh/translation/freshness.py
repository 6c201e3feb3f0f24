"""Freshness policies from SQLMesh crons: the UI shows a model overdue when it is.

SQLMesh makes a model's interval due when its cron ticks, and the next run fills it.
The policy :func:`cron_freshness_policy` builds says exactly that in Dagster's terms:
by each tick of the model's cron (in its ``cron_tz``), the asset must have been
materialized since the previous tick. A model whose interval elapsed and was not
filled before the following tick turns overdue (``FAIL``) until it materializes.

Opt in with ``SQLMeshTranslator(freshness_from_cron=True)``, with
``freshness_from_cron: true`` on the component, or per model with the tag ``dagster:freshness:cron``
(``dagster:freshness:none`` keeps a model without one).

Dagster 1.12 and later export the policy as ``dagster.FreshnessPolicy``; Dagster 1.11
has it as a preview, ``dagster.preview.freshness.FreshnessPolicy``. Both are used the
same way.
"""

from __future__ import annotations

import functools
from typing import Any

from dg_sqlmesh._compat.dagster import smallest_cron_interval
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project.description import ModelInfo
from dg_sqlmesh.translation.cron import cron_interval, dagster_cron

FRESHNESS_TAG = "dagster:freshness:cron"


def freshness_policy_class() -> Any:
    """Dagster's cron-capable ``FreshnessPolicy`` class (1.12+: top level; 1.11: preview).

    Raises:
        SQLMeshDefinitionError: the installed Dagster has no cron freshness policy.
    """
    try:
        from dagster import FreshnessPolicy  # 1.12+; on 1.11 an ImportError (renamed)
    except ImportError:
        FreshnessPolicy = None  # noqa: N806
    if FreshnessPolicy is None or not hasattr(FreshnessPolicy, "cron"):
        try:
            from dagster.preview.freshness import FreshnessPolicy  # 1.11
        except ImportError:
            FreshnessPolicy = None  # noqa: N806
    if FreshnessPolicy is None or not hasattr(FreshnessPolicy, "cron"):
        import dagster

        raise SQLMeshDefinitionError(
            f"Freshness policies from SQLMesh crons need Dagster's FreshnessPolicy.cron "
            f"(Dagster 1.11 or later); the installed Dagster {dagster.__version__} has none. "
            "Upgrade Dagster, or leave freshness_from_cron off and remove "
            f"'{FRESHNESS_TAG}' model tags."
        )
    return FreshnessPolicy


def cron_freshness_policy(model: ModelInfo) -> Any:
    """The freshness policy of ``model``: materialized between two ticks of its cron.

    ``deadline_cron`` is the model's cron as Dagster reads it, ``timezone`` its
    ``cron_tz`` (UTC by default), and ``lower_bound_delta`` the smallest gap between
    two ticks of that cron.

    Raises:
        SQLMeshDefinitionError: an external model (SQLMesh never runs it), or Dagster
            has no cron freshness policy.

    Example:
        >>> model = ModelInfo(
        ...     fqn='"db"."s"."t"', name="s.t", catalog="db", schema="s", table="t",
        ...     kind="FULL", cron="@hourly", cron_tz="Europe/Paris",
        ... )
        >>> policy = cron_freshness_policy(model)
        >>> policy.deadline_cron, policy.timezone, policy.lower_bound_delta
        ('@hourly', 'Europe/Paris', datetime.timedelta(seconds=3600))
    """
    if model.is_external or model.is_embedded or not model.cron:
        raise SQLMeshDefinitionError(
            f"{model.name} has no cron: external models are never run by SQLMesh, so they "
            "get no freshness policy from a cron."
        )
    return _policy(dagster_cron(model.cron), getattr(model, "cron_tz", None) or "UTC")


@functools.lru_cache(maxsize=256)
def _policy(cron: str, timezone: str) -> Any:
    # One policy per distinct cron: Dagster samples a thousand ticks to validate each one.
    return freshness_policy_class().cron(
        deadline_cron=cron,
        lower_bound_delta=smallest_cron_interval(cron, timezone)
        or min(cron_interval(cron, timezone)[0], cron_interval(cron)[0]),
        timezone=timezone,
    )
