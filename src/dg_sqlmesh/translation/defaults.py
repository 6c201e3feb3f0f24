"""The default asset attributes of a SQLMesh model.

``SQLMeshTranslator``'s methods delegate to these functions, so a subclass that
overrides a method can still start from the default::

    class MyTranslator(SQLMeshTranslator):
        def get_tags(self, model):
            return {**default_tags(model), "team": "data"}
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

import dagster as dg

from dg_sqlmesh._compat.dagster import code_references
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.metadata import MODEL, TABLE
from dg_sqlmesh.project.description import ModelInfo
from dg_sqlmesh.translation.freshness import cron_freshness_policy
from dg_sqlmesh.translation.tags import TagProperties, is_valid_owner, parse_tags, sanitize_tag_part

_INVALID_KEY_CHAR = re.compile(r"[^A-Za-z0-9_]")
COLUMN_LINEAGE_KEY = TABLE.column_lineage
logger = logging.getLogger(__name__)


def key_segment(name: str) -> str:
    """A name made a valid asset key segment: quotes dropped, other odd characters ``_``.

    Example:
        >>> key_segment("events_*")
        'events__'
    """
    return _INVALID_KEY_CHAR.sub("_", name.strip('"`[]')) or "_"


def default_asset_key(model: ModelInfo) -> dg.AssetKey:
    """``catalog/schema/table`` of the model (catalog left out when there is none)."""
    parts = [model.catalog, model.schema, model.table]
    return dg.AssetKey([key_segment(p) for p in parts if p])


def external_asset_key(model: ModelInfo, template: str | None) -> dg.AssetKey:
    """The key of an external model: the default key, or ``template`` rendered.

    ``template`` is a Jinja (``{{ node.schema }}``) or format (``{node.schema}``)
    string over ``node.catalog``, ``node.schema``, ``node.name`` and ``node.fqn``;
    ``/`` separates key segments.

    Example:
        ``"raw/{node.schema}/{node.name}"`` maps ``payments.transactions`` to
        ``raw/payments/transactions``.
    """
    if not template:
        return default_asset_key(model)
    node = _Node(catalog=model.catalog, schema=model.schema, name=model.table, fqn=model.fqn)
    try:
        if "{{" in template or "{%" in template:
            import jinja2

            rendered = jinja2.Template(template, undefined=jinja2.StrictUndefined).render(node=node)
        else:
            rendered = template.format(node=node)
    except Exception as exc:  # AttributeError, KeyError, ValueError, jinja2 errors
        raise SQLMeshDefinitionError(
            f"external_asset_mapping '{template}' could not be rendered for the external "
            f"model {model.name}: {exc}. It can use node.catalog, node.schema, node.name "
            "and node.fqn, e.g. 'raw/{node.schema}/{node.name}'."
        ) from exc
    return dg.AssetKey([key_segment(p) for p in rendered.split("/") if p])


class _Node:
    def __init__(self, **values: str) -> None:
        self.__dict__.update(values)


@functools.lru_cache(maxsize=16384)
def _parsed_tags(tags: tuple[str, ...], name: str, path: str | None) -> TagProperties:
    return parse_tags(tags, model=name, path=path)


def _tag_properties(model: ModelInfo) -> TagProperties:
    """The model's tag convention, parsed once: five defaults below read it per model."""
    return _parsed_tags(tuple(model.tags), model.name, model.path)


def default_group_name(model: ModelInfo) -> str | None:
    return _tag_properties(model).group_name


def default_description(model: ModelInfo) -> str | None:
    tagged = _tag_properties(model).description
    return tagged or model.description


def default_owners(model: ModelInfo) -> list[str] | None:
    """Owners from ``dagster:owner:`` tags, or None to let the factory decide."""
    owners = _tag_properties(model).owners
    return list(owners) or None


def model_owner(model: ModelInfo) -> list[str]:
    """The SQLMesh ``owner`` of the model, as a Dagster owner."""
    if not model.owner:
        return []
    owner = model.owner.strip()
    return [owner if is_valid_owner(owner) else f"team:{sanitize_tag_part(owner)}"]


def default_tags(model: ModelInfo) -> dict[str, str]:
    return dict(_tag_properties(model).tags)  # a copy: the parsed properties are shared


def default_kinds(model: ModelInfo) -> set[str]:
    kinds = {"sqlmesh"}
    if model.engine and model.engine != "unknown":
        kinds.add(model.engine)
    kinds.update(_tag_properties(model).kinds)
    return kinds


CODE_REFERENCES = "dagster/code_references"


def default_metadata(model: ModelInfo) -> dict[str, Any]:
    table = ".".join(p for p in (model.catalog, model.schema, model.table) if p)
    metadata: dict[str, Any] = {
        TABLE.table_name: table,
        TABLE.column_schema: dg.TableSchema(
            columns=[
                dg.TableColumn(name=c.name, type=c.type, description=c.description)
                for c in model.columns
            ]
        ),
        MODEL.model: model.name,
        MODEL.kind: model.kind,
    }
    optional = {
        MODEL.cron: model.cron,
        MODEL.cron_tz: getattr(model, "cron_tz", None),
        MODEL.dialect: model.dialect,
        MODEL.interval_unit: model.interval_unit,
        MODEL.time_column: model.time_column,
        MODEL.grain: ", ".join(model.grain) or None,
        MODEL.file: model.path,
    }
    metadata.update({k: v for k, v in optional.items() if v})
    if model.source:  # the UI links to the file; link_code_references_to_git, to the repo
        metadata[CODE_REFERENCES] = code_references(
            model.source, model.line, f"SQLMesh model {model.name}"
        )
    if model.rendered_query:
        metadata[MODEL.rendered_query] = dg.MetadataValue.md(f"```sql\n{model.rendered_query}\n```")
    return metadata


def default_column_lineage(
    model: ModelInfo, upstream_keys: Mapping[str, dg.AssetKey]
) -> dg.TableColumnLineage | None:
    """The model's column lineage with the asset keys of its upstream models.

    ``upstream_keys`` maps each upstream model's fully qualified name (external models
    included) to its asset key. None when the model has no known lineage, an upstream
    has no key, or no column reads an upstream column.
    """
    lineage = getattr(model, "column_lineage", None)
    if not lineage:
        return None
    deps_by_column: dict[str, list[dg.TableColumnDep]] = {}
    for column, deps in lineage.items():
        if not deps:
            continue
        column_deps = []
        for fqn, upstream_column in deps:
            key = upstream_keys.get(fqn)
            if key is None:
                logger.debug("No column lineage for model %s: no asset key for %s", model.name, fqn)
                return None
            column_deps.append(dg.TableColumnDep(asset_key=key, column_name=upstream_column))
        deps_by_column[column] = column_deps
    return dg.TableColumnLineage(deps_by_column=deps_by_column) if deps_by_column else None


def default_freshness_policy(model: ModelInfo, from_cron: bool = False) -> Any | None:
    """A freshness policy from the model's cron when ``from_cron`` or the model's tag
    ``dagster:freshness:cron`` asks for one (``dagster:freshness:none`` never does)."""
    tagged = _tag_properties(model).freshness
    if tagged == "none" or (tagged is None and not from_cron):
        return None
    return cron_freshness_policy(model)
