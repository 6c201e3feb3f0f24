"""What a dagster-dbt user reaches for, in SQLMesh's vocabulary: an ``AssetSelection``
from a SQLMesh model selection, and the asset key of a model (and back)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import dagster as dg

from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.execution.settings import SQLMeshProject
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.translation.selection import Selection, select_models
from dg_sqlmesh.translation.specs import asset_graph_of


def build_sqlmesh_asset_selection(
    assets: Sequence[dg.AssetsDefinition],
    *,
    sqlmesh_resource: SQLMeshProject,
    select: Selection = None,
    exclude: Selection = None,
) -> dg.AssetSelection:
    """The assets (and their checks) of the SQLMesh models ``select`` selects and
    ``exclude`` does not, among ``assets``, in SQLMesh's selector syntax (as
    ``sqlmesh plan --select-model`` takes it), resolved from the cached description.

    Example:
        >>> daily = build_sqlmesh_asset_selection(  # doctest: +SKIP
        ...     assets, sqlmesh_resource=resource, select="tag:daily", exclude="raw.*"
        ... )
        >>> job = dg.define_asset_job("daily", selection=daily)  # doctest: +SKIP
    """
    graph = asset_graph_of(sqlmesh_resource.describe(), assets)
    chosen = select_models(graph.description, select, exclude)
    keys = [spec.key for fqn, spec in graph.specs.items() if fqn in chosen]
    return dg.AssetSelection.assets(*keys) | dg.AssetSelection.checks_for_assets(*keys)


def get_asset_key_for_model(assets: Sequence[dg.AssetsDefinition], model: str) -> dg.AssetKey:
    """The asset key of the SQLMesh model named ``model`` (``schema.model``, as SQLMesh
    names it) among ``assets``, for wiring a Dagster asset downstream of it.

    Example:
        >>> @dg.asset(deps=[get_asset_key_for_model(assets, "marts.daily_revenue")])
        ... def revenue_report(): ...  # doctest: +SKIP
    """
    keys = _keys_by_model(assets)
    if model in keys:
        return keys[model]
    close = difflib.get_close_matches(model, list(keys), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise SQLMeshDefinitionError(
        f"No asset of SQLMesh model '{model}' among the {len(assets)} assets given.{hint}"
    )


def get_model_for_asset_key(assets: Sequence[dg.AssetsDefinition], key: dg.AssetKey) -> str:
    """The name of the SQLMesh model whose asset is ``key`` (the reverse of
    :func:`get_asset_key_for_model`)."""
    for model, found in _keys_by_model(assets).items():
        if found == key:
            return model
    raise SQLMeshDefinitionError(
        f"{key.to_user_string()} is not the asset of a SQLMesh model among the assets given."
    )


def _keys_by_model(assets: Sequence[dg.AssetsDefinition]) -> dict[str, dg.AssetKey]:
    found = {}
    for asset in assets:
        for spec in asset.specs:
            name = spec.metadata.get(MODEL.model)
            name = getattr(name, "value", name)  # a MetadataValue or the plain text
            if isinstance(name, str):
                found[name] = spec.key
    return found
