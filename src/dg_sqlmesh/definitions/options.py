"""The options of a SQLMesh project in Dagster, declared once.

* :class:`RunOptions`: where and how SQLMesh runs; the fields of ``SQLMeshResource``.
* :class:`AssetOptions`: how the models appear as assets; the keywords of
  ``sqlmesh_assets_factory``.
* :class:`DefinitionsOptions`: both, and the schedule; the keywords of
  ``sqlmesh_definitions_factory`` and the attributes of ``SQLMeshProjectComponent``.

Each option's description here is the one the resource's config schema and the
component's YAML schema show; the factories take the same options as typed keywords
(``tests/test_options.py`` checks that their names and defaults are these).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dg_sqlmesh.errors import SQLMeshDefinitionError


class RunOptions(BaseModel):
    """Where SQLMesh runs (gateway, environment) and how a run treats it."""

    model_config = ConfigDict(extra="forbid")

    gateway: str | None = Field(
        default=None, description="SQLMesh gateway; the project's default if unset."
    )
    environment: str | None = Field(
        default=None,
        description=(
            "SQLMesh environment the runs execute. Default: prod, or in a Dagster+ branch "
            "deployment a development environment named after it (pr_<number>, else "
            "branch_<branch>)."
        ),
    )
    cache_dir: str | None = Field(
        default=None,
        description="Where the cached project description lives (default <project>/.cache).",
    )
    apply_plan: bool | None = Field(
        default=None,
        description=(
            "Apply a plan (with backfill) before running when the environment is missing or "
            "the project on disk differs from it. Refused for prod unless allow_prod_plan. "
            "Default: yes in a Dagster+ branch deployment, no elsewhere."
        ),
    )
    allow_prod_plan: bool = Field(
        default=False, description="Let apply_plan plan the prod environment too."
    )
    ignore_cron: bool = Field(
        default=False,
        description="Run missing intervals even if the model's cron has not elapsed yet.",
    )
    max_transient_retries: int = Field(
        default=3, description="Retries of a run whose failures are all transient."
    )
    retry_backoff_seconds: float = Field(
        default=2.0, description="First retry delay; doubles on each retry."
    )
    row_counts: bool = Field(
        default=True,
        description=(
            "Count the rows of each materialized table after a run (dagster/row_count), one "
            "query per run; turn off where a count costs money. A model's tag "
            "dagster:row_count:false leaves that model out."
        ),
    )
    environment_lock_timeout: float = Field(
        default=3600.0,
        description="How long a run waits for another run of the same environment to finish.",
    )


class AssetOptions(BaseModel):
    """How the models appear as Dagster assets (besides the translator's own choices)."""

    model_config = ConfigDict(extra="forbid")

    select: str | list[str] | None = Field(
        default=None,
        description=(
            "The models to define as assets, in SQLMesh's selector syntax (as `sqlmesh plan "
            "--select-model` takes it): names, wildcards (schema.*), tag:<tag>, +model / "
            "model+ (upstream / downstream), &, |, ^. All models by default. An expression "
            "matching no model is an error."
        ),
    )
    exclude: str | list[str] | None = Field(
        default=None, description="Models to leave out, in the same syntax as select."
    )
    external_asset_mapping: str | None = Field(
        default=None,
        description=(
            "Asset key template of external models over node.catalog, node.schema, "
            "node.name and node.fqn; '/' separates key segments, e.g. "
            "'raw/{node.schema}/{node.name}'."
        ),
    )
    group_name: str | None = Field(
        default=None,
        description="Group of models without a dagster:group_name tag (default: the schema).",
    )
    owners: list[str] | None = Field(
        default=None, description="Owners of models without a dagster:owner tag."
    )
    op_tags: dict[str, Any] | None = Field(default=None, description="Tags of every model's op.")
    automation_from_cron: bool = Field(
        default=False,
        description=(
            "Give each asset an automation condition following its model's cron "
            "(instead of enable_schedule)."
        ),
    )
    freshness_from_cron: bool = Field(
        default=False,
        description=(
            "Give each asset a freshness policy from its model's cron: overdue when an "
            "interval elapsed and was not filled by the next tick."
        ),
    )
    partitioned: bool = Field(
        default=False,
        description=(
            "Make every INCREMENTAL_BY_TIME_RANGE model with a fixed start a time-partitioned "
            "asset, one partition per SQLMesh interval; the model tag "
            "dagster:partitioned:true|false decides for one model."
        ),
    )
    compare_with: str | None = Field(
        default=None,
        description=(
            "SQLMesh environment each asset's sqlmesh/change tag compares the project with "
            "(breaking, non-breaking, forward-only, metadata, indirect-breaking, "
            "indirect-non-breaking, new, unchanged; as sqlmesh plan categorises them), e.g. "
            "prod in a branch deployment. Read from SQLMesh's state when the definitions "
            "load, so loading then connects to the state store; none by default."
        ),
    )
    pool: str | bool = Field(
        default=True,
        description=(
            "Dagster pool of every model's op: True for sqlmesh_<environment>, False for none. "
            "A limit of 1 on it makes Dagster queue a second run of the environment."
        ),
    )


class DefinitionsOptions(AssetOptions, RunOptions):
    """Everything ``sqlmesh_definitions_factory`` and the component take but the project."""

    enable_schedule: bool = Field(
        default=False,
        description="Add the adaptive schedule running due models on their SQLMesh cron.",
    )
    schedule_name: str = Field(
        default="sqlmesh_adaptive_schedule", description="Name of the adaptive schedule."
    )
    janitor_schedule: str | None = Field(
        default=None,
        description=(
            "Cron of a schedule running the sqlmesh_janitor job (expired environments and "
            "unused snapshots' tables removed); none by default."
        ),
    )

    def run_options(self) -> dict[str, Any]:
        """The options ``SQLMeshResource`` takes, as keywords (those left to the deployment,
        None, are not given: the resource decides them)."""
        values = {name: getattr(self, name) for name in RunOptions.model_fields}
        return {name: v for name, v in values.items() if v is not None or name not in _DEPLOYED}

    def asset_options(self) -> AssetOptions:
        return AssetOptions(**{name: getattr(self, name) for name in AssetOptions.model_fields})


OptionsT = TypeVar("OptionsT", bound=BaseModel)
_DEPLOYED = ("environment", "apply_plan")  # None: decided by the deployment


def parse_options(model: type[OptionsT], arguments: Mapping[str, Any], where: str) -> OptionsT:
    """The options among ``arguments`` (a factory's ``locals()``) checked against
    ``model``: a clear error naming each mistyped one.

    Example:
        >>> parse_options(AssetOptions, {"group_name": "marts", "translator": None}, "f").group_name
        'marts'
        >>> parse_options(AssetOptions, {"pool": 1.5}, "f")
        Traceback (most recent call last):
        ...
        dg_sqlmesh.errors.SQLMeshDefinitionError: f option 'pool': ...
    """
    try:
        return model(**{name: arguments[name] for name in model.model_fields if name in arguments})
    except ValidationError as exc:
        problems = {}
        for error in exc.errors():
            name = str(error["loc"][0])
            problems.setdefault(
                name, f"{where} option '{name}': {error['msg']} (got {error['input']!r})."
            )
        raise SQLMeshDefinitionError(" ".join(problems.values())) from None
