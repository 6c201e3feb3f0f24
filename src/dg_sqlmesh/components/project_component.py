"""``SQLMeshProjectComponent``: a SQLMesh project as a Dagster YAML component."""

# No `from __future__ import annotations`: dg.Resolvable reads the annotations at runtime.
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeAlias

import dagster as dg
from dagster.components import DefsStateConfig, DefsStateConfigArgs, ResolvedDefsStateConfig
from pydantic import Field

from dg_sqlmesh._compat.dagster import asset_attribute_changes, local_defs_state_available
from dg_sqlmesh.components.scaffolder import SQLMeshProjectScaffolder
from dg_sqlmesh.definitions.executor import sqlmesh_executor
from dg_sqlmesh.definitions.options import DefinitionsOptions
from dg_sqlmesh.definitions.project_definitions import project_definitions
from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.project.cache import CACHE_FORMAT
from dg_sqlmesh.project.description import ModelInfo, ProjectDescription
from dg_sqlmesh.project.dirs import resolve_project_dir
from dg_sqlmesh.project.load import load_project
from dg_sqlmesh.translation.translator import SQLMeshTranslator
from dg_sqlmesh.translation.translator_settings import SQLMeshTranslatorSettings

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
        changes = asset_attribute_changes(scoped, model_attributes)
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


class ComponentTranslator(SQLMeshTranslator):
    """The translator a component builds with: each model's spec goes through the
    component's :meth:`SQLMeshProjectComponent.get_asset_spec`; everything else is
    ``translator``'s (the component's :meth:`~SQLMeshProjectComponent.get_translator`)."""

    def __init__(self, component: "SQLMeshProjectComponent", translator: SQLMeshTranslator):
        self._component = component
        self._translator = translator

    @property
    def settings(self) -> SQLMeshTranslatorSettings:
        return self._translator.settings

    def with_settings(self, **changes: Any) -> "ComponentTranslator":
        return ComponentTranslator(self._component, self._translator.with_settings(**changes))

    def get_asset_spec(self, model: ModelInfo, **kwargs: Any) -> dg.AssetSpec:
        spec = self._translator.get_asset_spec(model, **kwargs)
        return self._component.get_asset_spec(model, spec)

    def get_external_asset_key(self, model: ModelInfo) -> dg.AssetKey:
        return self._translator.get_external_asset_key(model)

    def get_external_asset_spec(self, model: ModelInfo, **kwargs: Any) -> dg.AssetSpec:
        return self._translator.get_external_asset_spec(model, **kwargs)

    def get_check_specs(self, model: ModelInfo, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
        return self._translator.get_check_specs(model, asset_key)


def _described(option: str) -> str:
    return DefinitionsOptions.model_fields[option].description or ""


@dg.scaffold_with(SQLMeshProjectScaffolder)
class SQLMeshProjectComponent(dg.StateBackedComponent, dg.Resolvable, DefinitionsOptions):
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

    It is a state-backed component: ``dg utils refresh-defs-state`` (and ``dagster dev``,
    on each load) writes the project's description as the component's state; a code
    server builds the definitions from that state, without parsing the project with
    SQLMesh or connecting to a warehouse. Without state, it describes the project as
    :func:`~dg_sqlmesh.sqlmesh_definitions_factory` does (from its cache).

    In Python, override :meth:`get_translator` to start from your own
    :class:`dg_sqlmesh.SQLMeshTranslator`, or :meth:`get_asset_spec` to change each
    model's final spec.

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
    # The other attributes are DefinitionsOptions'; these two resolve differently in YAML.
    external_asset_mapping: Annotated[
        str | None,
        dg.Resolver(
            _unrendered,  # rendered per external model by dg_sqlmesh, not at load time
            model_field_type=str | None,
            inject_before_resolve=False,
            description=_described("external_asset_mapping"),
            examples=["raw/{node.schema}/{node.name}"],
        ),
    ] = None
    cache_dir: Annotated[
        str | None,
        dg.Resolver(
            _resolve_optional_path,
            model_field_type=str | None,
            description=_described("cache_dir") + " Relative to the folder of this defs.yaml.",
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

    defs_state: ResolvedDefsStateConfig = Field(
        default_factory=DefsStateConfigArgs.local_filesystem,
        description=(
            "Where the component's state (the project's description) is kept: "
            "LOCAL_FILESYSTEM (written by `dg utils refresh-defs-state` when the image is "
            "built), VERSIONED_STATE_STORAGE or LEGACY_CODE_SERVER_SNAPSHOTS."
        ),
    )

    @property
    def defs_state_config(self) -> DefsStateConfig:
        return DefsStateConfig.from_args(
            self.defs_state, default_key=f"SQLMeshProjectComponent[{Path(self.project).name}]"
        )

    def write_state_to_path(self, state_path: Path) -> None:
        """Describe the project with SQLMesh (files only: no state, no warehouse) and keep
        the description as the component's state."""
        description = load_project(self.project, self.gateway)
        payload = {"format": STATE_FORMAT, "description": description.to_dict()}
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(payload))

    def build_defs_from_state(
        self, context: dg.ComponentLoadContext, state_path: Path | None
    ) -> dg.Definitions:
        """What :func:`~dg_sqlmesh.sqlmesh_definitions_factory` returns for the attributes,
        built from the state's description when there is one."""
        translator = ComponentTranslator(self, self.get_translator())
        options = DefinitionsOptions(
            **{name: getattr(self, name) for name in DefinitionsOptions.model_fields}
        )
        return project_definitions(
            str(self.project), options, translator, sqlmesh_executor, _read_state(state_path)
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """From the state when there can be one; a component built in plain Python outside
        a ``dg`` project (no place for local state) describes the project as the factory
        does."""
        local = self.defs_state_config.management_type.value == "LOCAL_FILESYSTEM"
        if local and not local_defs_state_available(context.project_root):
            return self.build_defs_from_state(context, None)
        return super().build_defs(context)

    def get_translator(self) -> SQLMeshTranslator:
        """The translator building every model's spec before ``translation`` applies.

        Override in a subclass to use your own.

        Example:
            >>> class MyComponent(SQLMeshProjectComponent):
            ...     def get_translator(self):
            ...         return MyTranslator()  # doctest: +SKIP
        """
        return SQLMeshTranslator()

    def get_asset_spec(self, model: ModelInfo, spec: dg.AssetSpec) -> dg.AssetSpec:
        """The final spec of ``model``'s asset, from ``spec``, the one the translator built:
        ``translation`` applied. Override in a subclass to change every model's spec.

        Example:
            >>> class Tagged(SQLMeshProjectComponent):
            ...     def get_asset_spec(self, model, spec):
            ...         spec = super().get_asset_spec(model, spec)
            ...         return spec.merge_attributes(tags={"team": model.schema})
        """
        return spec if self.translation is None else self.translation(spec, model)


STATE_FORMAT = CACHE_FORMAT  # the description's own format: another is not read


def _read_state(state_path: Path | None) -> ProjectDescription | None:
    """The description kept as the component's state; None without a usable one."""
    if state_path is None or not state_path.is_file():
        return None
    try:
        payload = json.loads(state_path.read_text())
        if payload.get("format") != STATE_FORMAT:
            return None
        return ProjectDescription.from_dict(payload["description"])
    except (OSError, ValueError, KeyError, TypeError):  # a state of another version: describe
        return None


__all__ = ["ComponentTranslator", "SQLMeshProjectComponent", "SQLMeshTranslationFn"]
