"""What a :class:`~dg_sqlmesh.SQLMeshTranslator` is asked to do beyond its methods' defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SQLMeshTranslatorSettings:
    """What a :class:`SQLMeshTranslator` is asked to do beyond its methods' defaults.

    Attributes:
        external_asset_mapping: template for the asset keys of external models,
            e.g. ``"raw/{node.schema}/{node.name}"``.
        automation_from_cron: give every model an automation condition that
            follows its SQLMesh cron (see ``dg_sqlmesh.translation.automation``).
        freshness_from_cron: give every model a freshness policy from its SQLMesh cron
            (see ``dg_sqlmesh.translation.freshness``).

    Example:
        >>> SQLMeshTranslatorSettings(freshness_from_cron=True).automation_from_cron
        False
    """

    external_asset_mapping: str | None = None
    automation_from_cron: bool = False
    freshness_from_cron: bool = False
