"""Which Dagster partitions definition a SQLMesh model's asset gets.

A model whose intervals SQLMesh fills one at a time can be a time-partitioned asset: one
Dagster partition per SQLMesh interval (its ``interval_unit``, in UTC as SQLMesh's
intervals are), from the model's ``start`` (``model_defaults.start`` included). That is an
``INCREMENTAL_BY_TIME_RANGE`` model with an absolute start, that neither fills partial
intervals (``allow_partials``) nor reads its own past (a self-referencing model, whose
intervals cannot be restated one by one). Every other model stays unpartitioned.

Partitions are opt-in: the factories' ``partitioned=True`` partitions every model that can
be, and the model tag ``dagster:partitioned:true|false`` decides for one model. Models
with equal definitions share one definition object.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dagster as dg

from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project.description import ModelInfo
from dg_sqlmesh.translation.tags import parse_tags

logger = logging.getLogger(__name__)

PARTITIONABLE_KINDS = ("INCREMENTAL_BY_TIME_RANGE",)

# SQLMesh interval unit -> (Dagster cron of the partition boundaries, partition key format)
_UNITS = {
    "year": ("0 0 1 1 *", "%Y-%m-%d"),
    "month": ("0 0 1 * *", "%Y-%m-%d"),
    "day": ("0 0 * * *", "%Y-%m-%d"),
    "hour": ("0 * * * *", "%Y-%m-%d-%H:%M"),
    "half_hour": ("*/30 * * * *", "%Y-%m-%d-%H:%M"),
    "quarter_hour": ("*/15 * * * *", "%Y-%m-%d-%H:%M"),
    "five_minute": ("*/5 * * * *", "%Y-%m-%d-%H:%M"),
}

_SHARED: dict[tuple[str, str, datetime, datetime | None], dg.TimeWindowPartitionsDefinition] = {}


def why_not_partitionable(model: ModelInfo) -> str | None:
    """Why the model's intervals cannot be Dagster partitions; None when they can."""
    if model.is_external:
        return "it is an external model"
    if model.kind not in PARTITIONABLE_KINDS:
        return (
            f"it is a {model.kind} model (only {', '.join(PARTITIONABLE_KINDS)} models fill "
            "their intervals one by one)"
        )
    if model.allow_partials:
        return "it allows partial intervals (allow_partials), which are no fixed partitions"
    if model.depends_on_self:
        return "it reads its own past, so one interval cannot be restated alone"
    if model.interval_unit not in _UNITS:
        return f"its interval unit '{model.interval_unit}' has no Dagster equivalent"
    if not model.start:
        return "it has no start (set one on the model or in model_defaults)"
    if _absolute(model.start) is None:
        return f"its start '{model.start}' is relative; Dagster partitions need a fixed start"
    return None


def model_partitions_def(
    model: ModelInfo, partitioned: bool = False
) -> dg.TimeWindowPartitionsDefinition | None:
    """The partitions definition of the model's asset, or None for an unpartitioned asset.

    ``partitioned`` is the project's choice; the model tag ``dagster:partitioned:`` wins.

    Raises:
        SQLMeshDefinitionError: the model is tagged ``dagster:partitioned:true`` but cannot
            be partitioned (a FULL model, say).

    Example:
        >>> model = ModelInfo(
        ...     fqn='"db"."s"."t"', name="s.t", catalog="db", schema="s", table="t",
        ...     kind="INCREMENTAL_BY_TIME_RANGE", interval_unit="day", start="2026-01-01",
        ... )
        >>> model_partitions_def(model, partitioned=True).get_first_partition_key()
        '2026-01-01'
    """
    tagged = None
    if any("partitioned" in tag for tag in model.tags):  # parse only what can say so
        tagged = parse_tags(model.tags, model=model.name, path=model.path).partitioned
    wanted = partitioned if tagged is None else tagged
    if not wanted:
        return None
    reason = why_not_partitionable(model)
    if reason is not None:
        if tagged:
            where = f" ({model.path})" if model.path else ""
            raise SQLMeshDefinitionError(
                f"Model {model.name}{where} is tagged 'dagster:partitioned:true' but cannot be "
                f"partitioned: {reason}. Remove the tag, or change the model."
            )
        logger.debug("Model %s is not partitioned: %s", model.name, reason)
        return None
    cron, fmt = _UNITS[model.interval_unit or ""]
    start = _floor(_absolute(model.start or ""), model.interval_unit or "")  # type: ignore[arg-type]
    end = _exclusive_end(model.end)
    key = (cron, fmt, start, end)
    if key not in _SHARED:
        _SHARED[key] = dg.TimeWindowPartitionsDefinition(
            cron_schedule=cron, fmt=fmt, start=start, end=end, timezone="UTC"
        )
    return _SHARED[key]


def _absolute(value: str) -> datetime | None:
    """``value`` as a UTC datetime when it names a fixed time (a date, an ISO time, epoch
    milliseconds, as SQLMesh reads them); None for a relative one ("1 week ago")."""
    text = value.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _exclusive_end(value: str | None) -> datetime | None:
    """A model's ``end`` as the exclusive end of its partitions (a date ends with its day,
    as SQLMesh reads it)."""
    if not value:
        return None
    end = _absolute(value)
    if end is None:
        return None
    text = value.strip()
    return end + timedelta(days=1) if len(text) == 10 and not text.isdigit() else end


def _floor(value: datetime, unit: str) -> datetime:
    """The start of the interval ``value`` falls in: SQLMesh's first interval."""
    value = value.replace(second=0, microsecond=0)
    if unit == "year":
        return value.replace(month=1, day=1, hour=0, minute=0)
    if unit == "month":
        return value.replace(day=1, hour=0, minute=0)
    if unit == "day":
        return value.replace(hour=0, minute=0)
    if unit == "hour":
        return value.replace(minute=0)
    step = {"half_hour": 30, "quarter_hour": 15, "five_minute": 5}[unit]
    return value.replace(minute=value.minute - value.minute % step)
