"""SQLMeshTranslator: how a SQLMesh model becomes a Dagster asset spec.

Subclass it and override one method per attribute. Each default lives in a
function of ``dg_sqlmesh.defaults`` (exported as ``dg_sqlmesh.default_*``) so a
subclass can reuse it::

    class MyTranslator(SQLMeshTranslator):
        def get_asset_key(self, model):
            return dg.AssetKey(["warehouse", model.schema, model.table])
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import dagster as dg

from dg_sqlmesh.automation import cron_automation_condition
from dg_sqlmesh.checks import default_check_specs
from dg_sqlmesh.defaults import (
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
from dg_sqlmesh.description import ModelInfo


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
