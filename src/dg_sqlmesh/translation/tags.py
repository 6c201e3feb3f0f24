"""The ``dagster:<property>:<value>`` model tag convention.

A SQLMesh model tag of this form sets a Dagster property of the model's asset:

============================  ===============================================
tag                           effect
============================  ===============================================
``dagster:group_name:marts``  asset group ``marts``
``dagster:owner:team:data``   owner ``team:data`` (repeatable; emails too)
``dagster:description:...``   asset description (overrides the model's)
``dagster:kind:finance``      extra kind shown in the UI (repeatable)
``dagster:freshness:cron``    freshness policy from the model's cron (``none``: never)
``dagster:row_count:false``   no ``dagster/row_count`` for this model (``true``: default)
``dagster:partitioned:true``  time partitions from the model's intervals (``false``: none)
``dagster:<key>:<value>``     Dagster tag ``<key>: <value>``
``pii`` (plain tag)           Dagster tag ``pii: ""``
============================  ===============================================
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dg_sqlmesh.errors import SQLMeshDefinitionError

PREFIX = "dagster"
RESERVED_PROPERTIES = (
    "group_name",
    "owner",
    "description",
    "kind",
    "freshness",
    "row_count",
    "partitioned",
)
FRESHNESS_VALUES = ("cron", "none")
ROW_COUNT_VALUES = ("true", "false")
PARTITIONED_VALUES = {"true": True, "false": False}

_VALID_GROUP = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TAG_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")
_MAX_TAG_LEN = 63


@dataclass(frozen=True)
class TagProperties:
    """What a model's tags say about its Dagster asset."""

    group_name: str | None = None
    owners: tuple[str, ...] = ()
    description: str | None = None
    kinds: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    freshness: str | None = None  # "cron" or "none"; None: the factory decides
    partitioned: bool | None = None  # None: the factory's ``partitioned`` decides


def sanitize_tag_part(text: str) -> str:
    """Make ``text`` a valid Dagster tag key or value (letters, digits, ``_.-``, 63 chars).

    Example:
        >>> sanitize_tag_part("data quality/critical")
        'data_quality_critical'
    """
    cleaned = _TAG_CHAR.sub("_", text.strip())
    return cleaned[:_MAX_TAG_LEN]


def is_valid_owner(owner: str) -> bool:
    """Whether Dagster accepts ``owner``: an email address or ``team:<name>``."""
    return bool(_EMAIL.match(owner)) or (owner.startswith("team:") and len(owner) > len("team:"))


def parse_tags(tags: Iterable[str], *, model: str, path: str | None = None) -> TagProperties:
    """Read the convention out of a model's tags.

    Raises:
        SQLMeshDefinitionError: a ``dagster:`` tag is malformed (no value, an empty
            property, a misspelled reserved property, an invalid group or owner).

    Example:
        >>> parse_tags(["dagster:group_name:marts", "pii"], model="marts.orders").group_name
        'marts'
    """
    group_name: str | None = None
    description: str | None = None
    owners: list[str] = []
    kinds: list[str] = []
    freshness: str | None = None
    partitioned: bool | None = None
    dagster_tags: dict[str, str] = {}

    def fail(tag: str, problem: str, fix: str) -> SQLMeshDefinitionError:
        where = f" ({path})" if path else ""
        return SQLMeshDefinitionError(
            f"Model {model}{where} has a malformed tag '{tag}': {problem}. {fix}"
        )

    for tag in tags:
        prefix, sep, rest = tag.partition(":")
        if not sep or prefix.strip().lower() != PREFIX:
            key = sanitize_tag_part(tag)
            if key:
                dagster_tags[key] = ""
            continue
        prop, sep, value = rest.partition(":")
        prop = prop.strip()
        value = value.strip()
        if not prop:
            raise fail(tag, "the property is empty", "Write it as 'dagster:<property>:<value>'.")
        if not sep or not value:
            raise fail(
                tag,
                f"property '{prop}' has no value",
                f"Write it as 'dagster:{prop}:<value>'.",
            )
        if prop == "group_name":
            if not _VALID_GROUP.match(value):
                raise fail(
                    tag,
                    f"'{value}' is not a valid Dagster group name",
                    "Use letters, digits and underscores only.",
                )
            group_name = value
        elif prop == "owner":
            if not is_valid_owner(value):
                raise fail(
                    tag,
                    f"'{value}' is not a valid Dagster owner",
                    "Use an email address or 'dagster:owner:team:<name>'.",
                )
            owners.append(value)
        elif prop == "description":
            description = value
        elif prop == "kind":
            kinds.append(value)
        elif prop == "freshness":
            if value.lower() not in FRESHNESS_VALUES:
                raise fail(
                    tag,
                    f"'{value}' is not a freshness source",
                    "Use 'dagster:freshness:cron' (a policy from the model's cron) or "
                    "'dagster:freshness:none' (no policy).",
                )
            freshness = value.lower()
        elif prop == "partitioned":
            if value.lower() not in PARTITIONED_VALUES:
                raise fail(
                    tag,
                    f"'{value}' is not true or false",
                    "Use 'dagster:partitioned:true' (Dagster partitions from the model's "
                    "intervals) or 'dagster:partitioned:false' (an unpartitioned asset).",
                )
            partitioned = PARTITIONED_VALUES[value.lower()]
        elif prop == "row_count":
            if value.lower() not in ROW_COUNT_VALUES:
                raise fail(
                    tag,
                    f"'{value}' is not true or false",
                    "Use 'dagster:row_count:false' to leave the model's table uncounted.",
                )
        else:
            near = difflib.get_close_matches(prop, RESERVED_PROPERTIES, n=1, cutoff=0.75)
            if near or prop.lower() in RESERVED_PROPERTIES or prop in {"group", "owners", "kinds"}:
                intended = near[0] if near else prop.lower().rstrip("s")
                if intended == "group":
                    intended = "group_name"
                raise fail(
                    tag,
                    f"unknown property '{prop}'",
                    f"Did you mean 'dagster:{intended}:{value}'?",
                )
            dagster_tags[sanitize_tag_part(prop)] = sanitize_tag_part(value)
    return TagProperties(
        group_name=group_name,
        owners=tuple(dict.fromkeys(owners)),
        description=description,
        kinds=tuple(dict.fromkeys(kinds)),
        tags=dagster_tags,
        freshness=freshness,
        partitioned=partitioned,
    )


def row_count_enabled(tags: Iterable[str]) -> bool:
    """False when the model's tags say ``dagster:row_count:false`` (its table is not
    counted after a run); the tags were validated when the project was described."""
    for tag in tags:
        prefix, _, rest = tag.partition(":")
        prop, _, value = rest.partition(":")
        if prefix.strip().lower() == PREFIX and prop.strip() == "row_count":
            return value.strip().lower() != "false"
    return True
