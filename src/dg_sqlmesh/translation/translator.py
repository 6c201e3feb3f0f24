"""SQLMeshTranslator: how a SQLMesh model becomes a Dagster asset spec.

Subclass it and override one method per attribute. Each default lives in a
function of ``dg_sqlmesh.translation.defaults`` (exported as ``dg_sqlmesh.default_*``) so a
subclass can reuse it::

    class MyTranslator(SQLMeshTranslator):
        def get_asset_key(self, model):
            return dg.AssetKey(["warehouse", model.schema, model.table])
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import dagster as dg

from dg_sqlmesh.project.description import ModelInfo
from dg_sqlmesh.translation.automation import cron_automation_condition
from dg_sqlmesh.translation.checks import default_check_specs
from dg_sqlmesh.translation.defaults import (
    COLUMN_LINEAGE_KEY,
    default_asset_key,
    default_column_lineage,
    default_description,
    default_freshness_policy,
    default_group_name,
    default_kinds,
    default_metadata,
    default_owners,
    default_tags,
    external_asset_key,
    key_segment,
    model_owner,
)
from dg_sqlmesh.translation.translator_settings import SQLMeshTranslatorSettings

_DEFAULT_SETTINGS = SQLMeshTranslatorSettings()


class SQLMeshTranslator:
    """Decides how each SQLMesh model appears in Dagster. Subclass to customise.

    One method per asset attribute, each taking the model's :class:`~dg_sqlmesh.ModelInfo`;
    each default is a ``dg_sqlmesh.default_*`` function an override can start from. In
    the examples, ``model`` is the ``ModelInfo`` of a model ``shop.orders`` (catalog
    ``db``, ``@daily``).

    Args:
        external_asset_mapping: shorthand for the field of ``settings`` of that name.
        automation_from_cron: shorthand for the field of ``settings`` of that name.
        freshness_from_cron: shorthand for the field of ``settings`` of that name.
        settings: everything the translator is asked to do, in one object
            (:class:`SQLMeshTranslatorSettings`); read it as ``self.settings``.

    Example:
        >>> class Prefixed(SQLMeshTranslator):
        ...     def get_asset_key(self, model):
        ...         return super().get_asset_key(model).with_prefix("warehouse")
        >>> Prefixed().get_asset_key(model).to_user_string()
        'warehouse/db/shop/orders'
    """

    def __init__(
        self,
        external_asset_mapping: str | None = None,
        automation_from_cron: bool = False,
        freshness_from_cron: bool = False,
        *,
        settings: SQLMeshTranslatorSettings | None = None,
    ) -> None:
        shorthands = {
            "external_asset_mapping": external_asset_mapping,
            "automation_from_cron": automation_from_cron,
            "freshness_from_cron": freshness_from_cron,
        }
        self._settings = replace(
            settings or _DEFAULT_SETTINGS, **{k: v for k, v in shorthands.items() if v}
        )

    @property
    def settings(self) -> SQLMeshTranslatorSettings:
        """The translator's settings (the defaults when a subclass skipped ``__init__``)."""
        return getattr(self, "_settings", None) or _DEFAULT_SETTINGS

    def with_settings(self, **changes: Any) -> SQLMeshTranslator:
        """A copy of this translator (same class, same attributes) with ``settings``
        changed as ``changes`` say; this one is left as it is.

        Example:
            >>> translator = SQLMeshTranslator()
            >>> translator.with_settings(freshness_from_cron=True).settings.freshness_from_cron
            True
            >>> translator.settings.freshness_from_cron
            False
        """
        changed = copy.copy(self)
        changed._settings = replace(self.settings, **changes)
        return changed

    def get_asset_key(self, model: ModelInfo) -> dg.AssetKey:
        """The asset key of a (non-external) model. Default: catalog/schema/table.

        Example:
            >>> class BySchema(SQLMeshTranslator):
            ...     def get_asset_key(self, model):
            ...         return dg.AssetKey(["warehouse", model.schema, model.table])
            >>> BySchema().get_asset_key(model).to_user_string()
            'warehouse/shop/orders'
        """
        return default_asset_key(model)

    def get_external_asset_key(self, model: ModelInfo) -> dg.AssetKey:
        """The asset key of an external model, an upstream we never materialize.

        Default: ``settings.external_asset_mapping`` rendered, or catalog/schema/table.

        Example:
            >>> class FromRaw(SQLMeshTranslator):
            ...     def get_external_asset_key(self, model):
            ...         return dg.AssetKey(["raw", model.table])
            >>> FromRaw().get_external_asset_key(model).to_user_string()
            'raw/orders'
        """
        return external_asset_key(model, self.settings.external_asset_mapping)

    def get_group_name(self, model: ModelInfo) -> str | None:
        """The group; None falls back to the factory's group_name, then the schema.

        Example:
            >>> class ByKind(SQLMeshTranslator):
            ...     def get_group_name(self, model):
            ...         return model.kind.lower()
            >>> ByKind().get_group_name(model)
            'full'
        """
        return default_group_name(model)

    def get_description(self, model: ModelInfo) -> str | None:
        """The asset description. Default: the ``dagster:description`` tag, then the
        model's own description.

        Example:
            >>> class Described(SQLMeshTranslator):
            ...     def get_description(self, model):
            ...         return super().get_description(model) or f"SQLMesh model {model.name}"
            >>> Described().get_description(model)
            'SQLMesh model shop.orders'
        """
        return default_description(model)

    def get_owners(self, model: ModelInfo) -> list[str] | None:
        """Owners; None falls back to the factory's owners, then the model's owner.

        Example:
            >>> class Owned(SQLMeshTranslator):
            ...     def get_owners(self, model):
            ...         return [f"team:{model.schema}"]
            >>> Owned().get_owners(model)
            ['team:shop']
        """
        return default_owners(model)

    def get_tags(self, model: ModelInfo) -> Mapping[str, str]:
        """Dagster tags. Default: the model's ``dagster:<key>:<value>`` and plain tags.

        Example:
            >>> class Tagged(SQLMeshTranslator):
            ...     def get_tags(self, model):
            ...         return {**super().get_tags(model), "layer": model.schema}
            >>> Tagged().get_tags(model)
            {'layer': 'shop'}
        """
        return default_tags(model)

    def get_kinds(self, model: ModelInfo) -> set[str]:
        """Kinds shown on the asset. Default: ``sqlmesh``, the engine, ``dagster:kind`` tags.

        Example:
            >>> class WithKind(SQLMeshTranslator):
            ...     def get_kinds(self, model):
            ...         return super().get_kinds(model) | {"warehouse"}
            >>> sorted(WithKind().get_kinds(model))
            ['duckdb', 'sqlmesh', 'warehouse']
        """
        return default_kinds(model)

    def get_metadata(self, model: ModelInfo) -> Mapping[str, Any]:
        """Definition metadata. A ``dagster/column_lineage`` entry here replaces
        :meth:`get_column_lineage`'s.

        Example:
            >>> class WithCron(SQLMeshTranslator):
            ...     def get_metadata(self, model):
            ...         return {**super().get_metadata(model), "team/cron": model.cron}
            >>> WithCron().get_metadata(model)["team/cron"]
            '@daily'
        """
        return default_metadata(model)

    def get_column_lineage(
        self, model: ModelInfo, upstream_keys: Mapping[str, dg.AssetKey]
    ) -> dg.TableColumnLineage | None:
        """The ``dagster/column_lineage`` metadata; None for none.

        ``upstream_keys``: the final asset key of each upstream model (external ones
        included) by fully qualified name, as the asset's dependencies name them.

        Example:
            >>> class NoLineage(SQLMeshTranslator):
            ...     def get_column_lineage(self, model, upstream_keys):
            ...         return None
            >>> NoLineage().get_column_lineage(model, {}) is None
            True
        """
        return default_column_lineage(model, upstream_keys)

    def get_freshness_policy(self, model: ModelInfo) -> Any | None:
        """None by default; a policy from the model's cron with ``freshness_from_cron``
        or the model tag ``dagster:freshness:cron`` (a Dagster ``FreshnessPolicy``).

        Example:
            >>> class AlwaysFresh(SQLMeshTranslator):
            ...     def get_freshness_policy(self, model):
            ...         return default_freshness_policy(model, from_cron=True)
            >>> AlwaysFresh().get_freshness_policy(model).deadline_cron
            '@daily'
        """
        return default_freshness_policy(model, self.settings.freshness_from_cron)

    def get_code_version(self, model: ModelInfo) -> str | None:
        """SQLMesh's data hash of the model: changes exactly when its logic does.

        Example:
            >>> class Unversioned(SQLMeshTranslator):
            ...     def get_code_version(self, model):
            ...         return None
            >>> Unversioned().get_code_version(model) is None
            True
        """
        return model.data_hash

    def get_check_specs(self, model: ModelInfo, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        """One check per audit; return fewer to hide audits from Dagster.

        Example:
            >>> class BlockingOnly(SQLMeshTranslator):
            ...     def get_check_specs(self, model, asset_key):
            ...         return [s for s in super().get_check_specs(model, asset_key) if s.blocking]
            >>> BlockingOnly().get_check_specs(model, dg.AssetKey("orders"))
            []
        """
        return default_check_specs(model, asset_key)

    def get_automation_condition(self, model: ModelInfo) -> dg.AutomationCondition | None:
        """None by default; the model's SQLMesh cron with ``automation_from_cron``.

        Example:
            >>> class Eager(SQLMeshTranslator):
            ...     def get_automation_condition(self, model):
            ...         return dg.AutomationCondition.eager()
            >>> Eager().get_automation_condition(model).get_label()
            'eager'
        """
        if self.settings.automation_from_cron:
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
        """The whole spec. Override and call ``.replace_attributes(...)`` on super()'s.

        Example:
            >>> class Grouped(SQLMeshTranslator):
            ...     def get_asset_spec(self, model, **kwargs):
            ...         spec = super().get_asset_spec(model, **kwargs)
            ...         return spec.replace_attributes(group_name="orders")
            >>> Grouped().get_asset_spec(model).group_name
            'orders'
        """
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
            metadata=metadata,
            code_version=self.get_code_version(model),
            automation_condition=self.get_automation_condition(model),
            **self._described(model, default_group, default_owners),
            **extra,
        )

    def get_external_asset_spec(
        self,
        model: ModelInfo,
        *,
        default_group: str | None = None,
        default_owners: list[str] | None = None,
    ) -> dg.AssetSpec:
        """The spec of a declared external model (``external_models.yaml``): an external
        asset with what the translator says of it (description, columns, group, kinds,
        owners, tags), and nothing only a model SQLMesh runs has (code version, automation,
        freshness). Override and call ``.replace_attributes(...)`` on super()'s.

        Example:
            >>> class Sources(SQLMeshTranslator):
            ...     def get_external_asset_spec(self, model, **kwargs):
            ...         spec = super().get_external_asset_spec(model, **kwargs)
            ...         return spec.replace_attributes(group_name="sources")
            >>> Sources().get_external_asset_spec(model).group_name
            'sources'
        """
        return dg.AssetSpec(
            key=self.get_external_asset_key(model),
            metadata=self.get_metadata(model),
            **self._described(model, default_group, default_owners),
        )

    def _described(
        self, model: ModelInfo, default_group: str | None, default_owners: list[str] | None
    ) -> dict[str, Any]:
        """The attributes every spec takes from the translator's methods, with defaults."""
        owners = self.get_owners(model)
        if owners is None:
            owners = list(default_owners) if default_owners else model_owner(model)
        return {
            "description": self.get_description(model),
            "group_name": self.get_group_name(model) or default_group or key_segment(model.schema),
            "owners": owners,
            "tags": self.get_tags(model),
            "kinds": self.get_kinds(model),
        }
