"""The factories take every option as a typed keyword, with the options' own defaults.

The options are declared once (``dg_sqlmesh.definitions.options``: descriptions, types,
defaults, the resource's config and the component's YAML schema); the factories repeat
their names in their signatures so that an IDE completes them and a type checker checks
them. This test keeps the two the same.
"""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from dg_sqlmesh import (
    SQLMeshProjectComponent,
    SQLMeshResource,
    build_sqlmesh_asset_specs,
    sqlmesh_assets_factory,
    sqlmesh_definitions_factory,
)
from dg_sqlmesh.definitions.options import AssetOptions, DefinitionsOptions, RunOptions

NOT_OPTIONS = {"sqlmesh_resource", "project_dir", "translator", "executor"}


def keywords(function) -> dict[str, object]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in NOT_OPTIONS}


def defaults(model: type[BaseModel]) -> dict[str, object]:
    return {name: field.default for name, field in model.model_fields.items()}


@pytest.mark.parametrize(
    ("function", "model"),
    [
        (sqlmesh_assets_factory, AssetOptions),
        (build_sqlmesh_asset_specs, AssetOptions),
        (sqlmesh_definitions_factory, DefinitionsOptions),
    ],
)
def test_a_factory_takes_exactly_the_options_with_their_defaults(function, model):
    found = keywords(function)
    assert found == defaults(model)
    for parameter in inspect.signature(function).parameters.values():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.annotation is not inspect.Parameter.empty


def test_the_resource_and_the_component_take_the_same_options():
    assert set(defaults(RunOptions)) <= set(SQLMeshResource.model_fields)
    assert set(defaults(DefinitionsOptions)) <= set(SQLMeshProjectComponent.model_fields)
