"""``SQLMeshProjectComponent``: a SQLMesh project as a Dagster YAML component."""

# No `from __future__ import annotations`: dg.Resolvable reads the annotations at runtime.
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias

import dagster as dg
from dagster.components.resolved.core_models import resolve_asset_spec_update_kwargs_to_mapping

from dg_sqlmesh.assets import sqlmesh_definitions_factory
from dg_sqlmesh.components.scaffolder import SQLMeshProjectScaffolder
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.freshness import with_cron_freshness
from dg_sqlmesh.project import ModelInfo, resolve_project_dir
from dg_sqlmesh.translator import SQLMeshTranslator

#: ``(spec the translator built, model) -> final spec``.
SQLMeshTranslationFn: TypeAlias = Callable[[dg.AssetSpec, ModelInfo], dg.AssetSpec]

# AssetSpec attributes that `translation:` merges into the spec's; the others replace.
_MERGED_ATTRIBUTES = ("metadata", "tags")


def _resolve_project(context: dg.ResolutionContext, value: str) -> str:
    """``project:`` made absolute against the defs.yaml folder, and checked."""
    path = context.resolve_source_relative_path(context.resolve_value(value, as_type=str))
    try:
        return str(resolve_project_dir(path))
    except SQLMeshDefinitionError as exc:
        raise SQLMeshDefinitionError(
            f"SQLMeshProjectComponent attribute 'project: {value}' (relative to the folder of "
            f"defs.yaml): {exc}"
        ) from exc


def _unrendered(context: dg.ResolutionContext, value: str | None) -> str | None:
    return value


def _resolve_optional_path(context: dg.ResolutionContext, value: str | None) -> str | None:
    if value is None:
        return None
    return str(context.resolve_source_relative_path(context.resolve_value(value, as_type=str)))


def _resolve_translation(
    context: dg.ResolutionContext, attributes: Any
) -> SQLMeshTranslationFn | None:
    """``translation:`` as a function, its ``{{ node.* }}`` templates rendered per model."""
    if attributes is None:
        return None
    at_path = context.at_path("translation")

    def translate(spec: dg.AssetSpec, model: ModelInfo) -> dg.AssetSpec:
        scoped = at_path.with_scope(node=model, spec=spec)
        model_attributes = attributes
        if isinstance(attributes, str):  # a template rendering to a mapping or an AssetSpec
            model_attributes = scoped.resolve_value(attributes)
            if isinstance(model_attributes, dg.AssetSpec):
                return model_attributes
            if not isinstance(model_attributes, Mapping):
                raise SQLMeshDefinitionError(
                    f"SQLMeshProjectComponent translation '{attributes}' rendered to "
                    f"{type(model_attributes).__name__} for model {model.name}; it must render "
                    "to a mapping of asset attributes or an AssetSpec."
                )
            model_attributes = dg.AssetAttributesModel(**model_attributes)
        changes = dict(resolve_asset_spec_update_kwargs_to_mapping(scoped, model_attributes))
        if "code_version" in changes:
            changes["code_version"] = str(changes["code_version"])
        prefix = changes.pop("key_prefix", None)
        if prefix:
            changes["key"] = dg.AssetKey.from_coercible(changes.get("key", spec.key)).with_prefix(
                prefix
            )
        merged = {k: changes.pop(k) for k in _MERGED_ATTRIBUTES if k in changes}
        return spec.replace_attributes(**changes).merge_attributes(**merged)

    return translate


class _TranslationMixin:
    """Put every spec of the translator it is mixed into through ``_dg_translation``."""

    _dg_translation: SQLMeshTranslationFn

    def get_asset_spec(self, model: ModelInfo, **kwargs: Any) -> dg.AssetSpec:
        return self._dg_translation(super().get_asset_spec(model, **kwargs), model)


def with_translation(
    translator: SQLMeshTranslator, translation: SQLMeshTranslationFn
) -> SQLMeshTranslator:
    """A copy of ``translator`` whose specs go through ``translation`` afterwards.

    The copy is an instance of a subclass of the translator's own class, so every
    other method and attribute (``external_asset_mapping``, ...) stays the translator's.

    Example:
        >>> def tag(spec, model):
        ...     return spec.merge_attributes(tags={"team": "data"})
        >>> with_translation(SQLMeshTranslator(), tag).external_asset_mapping is None
        True
    """
    cls = type(translator)
    translated = copy.copy(translator)
    translated.__class__ = type(f"Translated{cls.__name__}", (_TranslationMixin, cls), {})
    translated._dg_translation = translation
    return translated


@dg.scaffold_with(SQLMeshProjectScaffolder)
@dataclass
class SQLMeshProjectComponent(dg.Component, dg.Resolvable):
    """A SQLMesh project: one Dagster asset per model, its audits as asset checks.

    The definitions are exactly those of :func:`dg_sqlmesh.sqlmesh_definitions_factory`
    for the same arguments: the model assets, the job ``sqlmesh_job``, the resources
    ``sqlmesh`` and ``sqlmesh_results``, and with ``enable_schedule`` the adaptive
    schedule. Scaffold one with
    ``dg scaffold defs dg_sqlmesh.SQLMeshProjectComponent <name> --project-path <dir>``.

    ``translation`` changes the asset attributes Dagster-style (``key``, ``key_prefix``,
    ``group_name``, ``tags``, ``metadata``, ``owners``, ``kinds``, ``description``, ...)
    after the translator and the ``dagster:`` model tags. Its templates see ``node``,
    the model's :class:`dg_sqlmesh.ModelInfo` (``node.name`` the SQLMesh model name,
    ``node.catalog``, ``node.schema``, ``node.table``, ``node.kind``, ``node.cron``,
    ``node.tags``, ...), and ``spec``, the asset spec built so far. Tags and metadata
    are merged into the spec's; the other attributes replace theirs. Asset checks and
    downstream dependencies follow translated keys.

    In Python, override :meth:`get_translator` to start from your own
    :class:`dg_sqlmesh.SQLMeshTranslator`.

    Example:
        .. code-block:: yaml

            # src/my_project/defs/warehouse/defs.yaml
            type: dg_sqlmesh.SQLMeshProjectComponent
            attributes:
              project: ../../../../sqlmesh_project   # relative to this file's folder
              gateway: duckdb
              environment: prod
              external_asset_mapping: "raw/{node.schema}/{node.name}"
              group_name: warehouse
              enable_schedule: true
              translation:
                key_prefix: warehouse
                tags:
                  sqlmesh_kind: "{{ node.kind }}"
    """

    project: Annotated[
        str,
        dg.Resolver(
            _resolve_project,
            model_field_type=str,
            description=(
                "Folder of the SQLMesh project (holds its config file), relative to the folder "
                "of this defs.yaml or absolute."
            ),
            examples=["../../../../sqlmesh_project", "{{ context.project_root }}/sqlmesh"],
        ),
    ]
    gateway: Annotated[
        str | None,
        dg.Resolver.default(description="SQLMesh gateway; the project's default if unset."),
    ] = None
    environment: Annotated[
        str, dg.Resolver.default(description="SQLMesh environment the runs execute.")
    ] = "prod"
    external_asset_mapping: Annotated[
        str | None,
        dg.Resolver(
            _unrendered,  # rendered per external model by dg_sqlmesh, not at load time
            model_field_type=str | None,
            inject_before_resolve=False,
            description=(
                "Asset key template of external models over node.catalog, node.schema, "
                "node.name and node.fqn; '/' separates key segments."
            ),
            examples=["raw/{node.schema}/{node.name}"],
        ),
    ] = None
    group_name: Annotated[
        str | None,
        dg.Resolver.default(
            description="Group of models without a dagster:group_name tag (default: schema)."
        ),
    ] = None
    owners: Annotated[
        list[str] | None,
        dg.Resolver.default(description="Owners of models without a dagster:owner tag."),
    ] = None
    op_tags: Annotated[
        dict[str, Any] | None, dg.Resolver.default(description="Tags of every model's op.")
    ] = None
    enable_schedule: Annotated[
        bool,
        dg.Resolver.default(
            description="Add the adaptive schedule running due models on their SQLMesh cron."
        ),
    ] = False
    schedule_name: Annotated[
        str, dg.Resolver.default(description="Name of the adaptive schedule.")
    ] = "sqlmesh_adaptive_schedule"
    automation_from_cron: Annotated[
        bool,
        dg.Resolver.default(
            description=(
                "Give each asset an automation condition following its model's cron "
                "(instead of enable_schedule)."
            )
        ),
    ] = False
    freshness_from_cron: Annotated[
        bool,
        dg.Resolver.default(
            description=(
                "Give each asset a freshness policy from its model's cron: overdue when an "
                "interval elapsed and was not filled by the next tick."
            )
        ),
    ] = False
    partitioned: Annotated[
        bool,
        dg.Resolver.default(
            description=(
                "Make every INCREMENTAL_BY_TIME_RANGE model with a fixed start a time-partitioned "
                "asset, one partition per SQLMesh interval (tag dagster:partitioned:true|false "
                "decides per model)."
            )
        ),
    ] = False
    apply_plan: Annotated[
        bool,
        dg.Resolver.default(
            description="Apply a plan before running when the environment is missing or stale."
        ),
    ] = False
    allow_prod_plan: Annotated[
        bool, dg.Resolver.default(description="Let apply_plan plan the prod environment.")
    ] = False
    cache_dir: Annotated[
        str | None,
        dg.Resolver(
            _resolve_optional_path,
            model_field_type=str | None,
            description="Folder of the cached project description (default <project>/.cache).",
        ),
    ] = None
    translation: Annotated[
        SQLMeshTranslationFn | None,
        dg.Resolver(
            _resolve_translation,
            model_field_type=dg.AssetAttributesModel,
            inject_before_resolve=False,
            description=(
                "Asset attributes to set on every model's asset; templates see node (the "
                "model) and spec (the asset spec so far)."
            ),
            examples=[{"key_prefix": "warehouse", "group_name": "{{ node.schema }}"}],
        ),
    ] = None

    def get_translator(self) -> SQLMeshTranslator:
        """The translator building every model's spec before ``translation`` applies.

        Override in a subclass to use your own.

        Example:
            >>> class MyComponent(SQLMeshProjectComponent):
            ...     def get_translator(self):
            ...         return MyTranslator()  # doctest: +SKIP
        """
        return SQLMeshTranslator()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """What :func:`~dg_sqlmesh.sqlmesh_definitions_factory` returns for the attributes."""
        translator = self.get_translator()
        if self.freshness_from_cron:
            translator = with_cron_freshness(translator)
        if self.translation is not None:
            translator = with_translation(translator, self.translation)
        return sqlmesh_definitions_factory(
            project_dir=str(self.project),
            gateway=self.gateway,
            environment=self.environment,
            translator=translator,
            external_asset_mapping=self.external_asset_mapping,
            group_name=self.group_name,
            op_tags=self.op_tags,
            owners=self.owners,
            schedule_name=self.schedule_name,
            enable_schedule=self.enable_schedule,
            automation_from_cron=self.automation_from_cron,
            apply_plan=self.apply_plan,
            allow_prod_plan=self.allow_prod_plan,
            cache_dir=self.cache_dir,
            partitioned=self.partitioned,
        )


__all__ = ["SQLMeshProjectComponent", "SQLMeshTranslationFn", "with_translation"]
