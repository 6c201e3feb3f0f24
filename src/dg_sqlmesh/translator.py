"""SQLMeshTranslator: how a SQLMesh model becomes a Dagster asset spec.

Subclass it and override one method per attribute. Each default lives in a
module-level function so a subclass can reuse it::

    class MyTranslator(SQLMeshTranslator):
        def get_asset_key(self, model):
            return dg.AssetKey(["warehouse", model.schema, model.table])
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

import dagster as dg

from dg_sqlmesh.automation import cron_automation_condition
from dg_sqlmesh.checks import default_check_specs
from dg_sqlmesh.description import ModelInfo
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.freshness import cron_freshness_policy
from dg_sqlmesh.tags import TagProperties, is_valid_owner, parse_tags, sanitize_tag_part

_INVALID_KEY_CHAR = re.compile(r"[^A-Za-z0-9_]")
COLUMN_LINEAGE_KEY = "dagster/column_lineage"
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


def default_metadata(model: ModelInfo) -> dict[str, Any]:
    table = ".".join(p for p in (model.catalog, model.schema, model.table) if p)
    metadata: dict[str, Any] = {
        "dagster/table_name": table,
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name=c.name, type=c.type, description=c.description)
                for c in model.columns
            ]
        ),
        "sqlmesh/model": model.name,
        "sqlmesh/kind": model.kind,
    }
    optional = {
        "sqlmesh/cron": model.cron,
        "sqlmesh/cron_tz": getattr(model, "cron_tz", None),
        "sqlmesh/dialect": model.dialect,
        "sqlmesh/interval_unit": model.interval_unit,
        "sqlmesh/time_column": model.time_column,
        "sqlmesh/grain": ", ".join(model.grain) or None,
        "sqlmesh/file": model.path,
    }
    metadata.update({k: v for k, v in optional.items() if v})
    if model.rendered_query:
        metadata["sqlmesh/rendered_query"] = dg.MetadataValue.md(
            f"```sql\n{model.rendered_query}\n```"
        )
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


class SQLMeshTranslator:
    """Decides how each SQLMesh model appears in Dagster. Subclass to customise.

    Args:
        external_asset_mapping: template for the asset keys of external models,
            e.g. ``"raw/{node.schema}/{node.name}"``.
        automation_condition_from_cron: give every model an automation condition that
            follows its SQLMesh cron (see ``dg_sqlmesh.automation``).
        freshness_from_cron: give every model a freshness policy from its SQLMesh cron
            (see ``dg_sqlmesh.freshness``).

    Example:
        >>> class Prefixed(SQLMeshTranslator):
        ...     def get_asset_key(self, model):
        ...         return super().get_asset_key(model).with_prefix("warehouse")
    """

    def __init__(
        self,
        external_asset_mapping: str | None = None,
        automation_condition_from_cron: bool = False,
        freshness_from_cron: bool = False,
    ) -> None:
        self.external_asset_mapping = external_asset_mapping
        self.automation_condition_from_cron = automation_condition_from_cron
        self.freshness_from_cron = freshness_from_cron

    def get_asset_key(self, model: ModelInfo) -> dg.AssetKey:
        """The asset key of a (non-external) model. Default: catalog/schema/table."""
        return default_asset_key(model)

    def get_external_asset_key(self, model: ModelInfo) -> dg.AssetKey:
        """The asset key of an external model, an upstream we never materialize."""
        return external_asset_key(model, getattr(self, "external_asset_mapping", None))

    def get_group_name(self, model: ModelInfo) -> str | None:
        """The group; None falls back to the factory's group_name, then the schema."""
        return default_group_name(model)

    def get_description(self, model: ModelInfo) -> str | None:
        return default_description(model)

    def get_owners(self, model: ModelInfo) -> list[str] | None:
        """Owners; None falls back to the factory's owners, then the model's owner."""
        return default_owners(model)

    def get_tags(self, model: ModelInfo) -> Mapping[str, str]:
        return default_tags(model)

    def get_kinds(self, model: ModelInfo) -> set[str]:
        return default_kinds(model)

    def get_metadata(self, model: ModelInfo) -> Mapping[str, Any]:
        """Definition metadata. A ``dagster/column_lineage`` entry here replaces
        :meth:`get_column_lineage`'s."""
        return default_metadata(model)

    def get_column_lineage(
        self, model: ModelInfo, upstream_keys: Mapping[str, dg.AssetKey]
    ) -> dg.TableColumnLineage | None:
        """The ``dagster/column_lineage`` metadata; None for none.

        ``upstream_keys``: the final asset key of each upstream model (external ones
        included) by fully qualified name, as the asset's dependencies name them.
        """
        return default_column_lineage(model, upstream_keys)

    def get_freshness_policy(self, model: ModelInfo) -> Any | None:
        """None by default; a policy from the model's cron with ``freshness_from_cron``
        or the model tag ``dagster:freshness:cron`` (a Dagster ``FreshnessPolicy``)."""
        return default_freshness_policy(model, getattr(self, "freshness_from_cron", False))

    def get_code_version(self, model: ModelInfo) -> str | None:
        """SQLMesh's data hash of the model: changes exactly when its logic does."""
        return model.data_hash

    def get_check_specs(self, model: ModelInfo, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        """One check per audit; return fewer to hide audits from Dagster."""
        return default_check_specs(model, asset_key)

    def get_automation_condition(self, model: ModelInfo) -> dg.AutomationCondition | None:
        """None by default; the model's SQLMesh cron with ``automation_condition_from_cron``."""
        # getattr: subclasses that skip super().__init__() have no attribute
        if getattr(self, "automation_condition_from_cron", False):
            return cron_automation_condition(model)
        return None

    def get_asset_spec(
        self,
        model: ModelInfo,
        *,
        deps: list[dg.AssetKey] | None = None,
        default_group: str | None = None,
        default_owners: list[str] | None = None,
    ) -> dg.AssetSpec:
        """The whole spec. Override and call ``.replace_attributes(...)`` on super()'s."""
        owners = self.get_owners(model)
        if owners is None:
            owners = list(default_owners) if default_owners else model_owner(model)
        metadata = dict(self.get_metadata(model))
        deps = list(deps or ())
        if COLUMN_LINEAGE_KEY not in metadata and len(deps) == len(model.depends_on):
            # build_asset_graph passes the dependencies in the order of depends_on
            upstream_keys = dict(zip(model.depends_on, deps, strict=True))
            lineage = self.get_column_lineage(model, upstream_keys)
            if lineage is not None:
                metadata[COLUMN_LINEAGE_KEY] = lineage
        freshness = self.get_freshness_policy(model)
        extra = {} if freshness is None else {"freshness_policy": freshness}
        return dg.AssetSpec(
            key=self.get_asset_key(model),
            deps=deps,
            description=self.get_description(model),
            group_name=self.get_group_name(model) or default_group or key_segment(model.schema),
            owners=owners,
            tags=self.get_tags(model),
            kinds=self.get_kinds(model),
            metadata=metadata,
            code_version=self.get_code_version(model),
            automation_condition=self.get_automation_condition(model),
            **extra,
        )


def with_cron_automation(translator: SQLMeshTranslator) -> SQLMeshTranslator:
    """A copy of ``translator`` whose models follow their SQLMesh cron
    (``dg_sqlmesh.automation.cron_automation_condition``).

    Example:
        >>> with_cron_automation(SQLMeshTranslator()).automation_condition_from_cron
        True
    """
    translator = copy.copy(translator)
    translator.automation_condition_from_cron = True
    return translator


def with_cron_freshness(translator: SQLMeshTranslator) -> SQLMeshTranslator:
    """A copy of ``translator`` giving every model a freshness policy from its cron.

    Example:
        >>> with_cron_freshness(SQLMeshTranslator()).freshness_from_cron
        True
    """
    translator = copy.copy(translator)
    translator.freshness_from_cron = True
    return translator
