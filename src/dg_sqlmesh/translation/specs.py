"""The one path from a described SQLMesh project to Dagster specs.

Shared by the asset factory, the definitions factory and the component.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import dagster as dg

from dg_sqlmesh.errors import SQLMeshDefinitionError
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.project.description import ModelInfo, ProjectDescription
from dg_sqlmesh.translation.checks import hosted_check_spec, standalone_check_spec
from dg_sqlmesh.translation.defaults import key_segment
from dg_sqlmesh.translation.partitions import model_partitions_def
from dg_sqlmesh.translation.translator import SQLMeshTranslator


@dataclass
class SQLMeshAssetGraph:
    """Specs of every non-external model, and the maps between models and keys."""

    description: ProjectDescription
    specs: dict[str, dg.AssetSpec] = field(default_factory=dict)  # by model fqn
    check_specs: dict[str, list[dg.AssetCheckSpec]] = field(default_factory=dict)
    external_keys: dict[str, dg.AssetKey] = field(default_factory=dict)
    # fqn -> the SQLMesh nodes without a step (external models, standalone audits) whose
    # audits are checks on that model's asset: SQLMesh runs them when it runs the model.
    audited_nodes: dict[str, list[str]] = field(default_factory=dict)
    op_names: dict[str, str] = field(default_factory=dict)  # fqn -> op name
    # EMBEDDED models: SQLMesh inlines them into their downstream queries and never writes
    # them, so they keep their place in the lineage but have no step (never materialized).
    embedded_specs: dict[str, dg.AssetSpec] = field(default_factory=dict)
    # Declared external models: assets without a step, materialized outside SQLMesh.
    external_specs: dict[str, dg.AssetSpec] = field(default_factory=dict)
    # Models left out of this graph by a selection that are assets all the same.
    known_models: frozenset[str] = frozenset()

    def only(self, fqns: Collection[str], *, keep_known: bool = False) -> SQLMeshAssetGraph:
        """The graph of the models ``fqns`` only: the others are not assets (a selected
        model's dependency on one stays, as an asset key defined elsewhere). With
        ``keep_known``, :attr:`known` still names every model of this graph (a schedule
        over a selection knows the others are assets too)."""
        kept = set(fqns)
        return replace(
            self,
            known_models=self.known if keep_known else frozenset(),
            specs={f: s for f, s in self.specs.items() if f in kept},
            check_specs={f: c for f, c in self.check_specs.items() if f in kept},
            audited_nodes={f: n for f, n in self.audited_nodes.items() if f in kept},
            op_names={f: n for f, n in self.op_names.items() if f in kept},
        )

    @property
    def known(self) -> frozenset[str]:
        """The models that are assets: this graph's, and those a selection left out."""
        return self.known_models | frozenset(self.specs)

    @property
    def fqn_by_key(self) -> dict[dg.AssetKey, str]:
        return {spec.key: fqn for fqn, spec in self.specs.items()}

    @property
    def fqn_by_op_name(self) -> dict[str, str]:
        return {name: fqn for fqn, name in self.op_names.items()}

    def model(self, fqn: str) -> ModelInfo:
        return self.description.models_by_fqn[fqn]


def resolve_translator(
    translator: SQLMeshTranslator | type | None,
    external_asset_mapping: str | None = None,
    *,
    automation_from_cron: bool = False,
    freshness_from_cron: bool = False,
) -> SQLMeshTranslator:
    """The translator to build specs with: the given one (or the default) with the
    factory's options applied to its settings."""
    if translator is None:
        translator = SQLMeshTranslator()
    elif isinstance(translator, type):
        raise SQLMeshDefinitionError(
            f"translator= got the class {translator.__name__}, not an instance. "
            f"Pass {translator.__name__}() instead."
        )
    changes: dict[str, object] = {}
    if external_asset_mapping:
        changes["external_asset_mapping"] = external_asset_mapping
    if automation_from_cron:
        changes["automation_from_cron"] = True
    if freshness_from_cron:
        changes["freshness_from_cron"] = True
    if changes:
        translator = translator.with_settings(**changes)
    return translator


def build_asset_graph(
    description: ProjectDescription,
    translator: SQLMeshTranslator,
    *,
    group_name: str | None = None,
    owners: list[str] | None = None,
    partitioned: bool = False,
) -> SQLMeshAssetGraph:
    """Turn a project description into asset and check specs (one per model/audit).

    ``partitioned``: time partitions for every model that can have them (see
    ``dg_sqlmesh.translation.partitions``); a model's ``dagster:partitioned:`` tag decides for it.
    """

    graph = SQLMeshAssetGraph(description=description)
    models = description.models_by_fqn
    claimed: dict[dg.AssetKey, str] = {}

    def claim(key: dg.AssetKey, fqn: str) -> dg.AssetKey:
        other = claimed.setdefault(key, fqn)
        if other != fqn:
            raise SQLMeshDefinitionError(
                f"Models {_name(models, other)} and {_name(models, fqn)} both map to asset key "
                f"{key.to_user_string()}. Give them distinct keys (override "
                "SQLMeshTranslator.get_asset_key or external_asset_mapping)."
            )
        return key

    def upstream_key(fqn: str) -> dg.AssetKey:
        model = models.get(fqn)
        if model is not None and model.is_embedded:
            return graph.embedded_specs[fqn].key
        if model is not None and not model.is_external:
            return graph.specs[fqn].key
        if fqn not in graph.external_keys:
            external = model or _undeclared(fqn)
            graph.external_keys[fqn] = claim(translator.get_external_asset_key(external), fqn)
        return graph.external_keys[fqn]

    for model in description.models:  # DAG order: parents first
        if model.is_external:
            continue
        deps = [upstream_key(parent) for parent in model.depends_on]
        spec = translator.get_asset_spec(
            model, deps=deps, default_group=group_name, default_owners=owners
        )
        if spec.partitions_def is None:  # a translator's own choice stands
            partitions_def = model_partitions_def(model, partitioned)
            if partitions_def is not None:
                spec = spec.replace_attributes(partitions_def=partitions_def)
        claim(spec.key, model.fqn)
        if model.is_embedded:  # no step: nothing can run or claim it
            graph.embedded_specs[model.fqn] = spec.replace_attributes(automation_condition=None)
            continue
        graph.specs[model.fqn] = spec
        graph.check_specs[model.fqn] = list(translator.get_check_specs(model, spec.key))
    readers = _first_readers(graph)
    for model in description.models:
        host = readers.get(model.fqn)
        if not (model.is_external and model.audits and host):
            continue  # an external model nothing reads: no run would audit it
        specs = graph.check_specs[host]
        for spec in translator.get_check_specs(model, upstream_key(model.fqn)):
            specs.append(
                hosted_check_spec(
                    spec,
                    graph.specs[host].key,
                    node=model.fqn,
                    label=model.table,
                    taken=[s.name for s in specs],
                )
            )
        graph.audited_nodes.setdefault(host, []).append(model.fqn)
    _add_standalone_checks(graph, upstream_key, readers)
    graph.op_names = _op_names(graph.specs)
    graph.external_specs = {
        fqn: translator.get_external_asset_spec(
            models[fqn], default_group=group_name, default_owners=owners
        ).replace_attributes(key=key)  # the key its readers depend on, claimed above
        for fqn, key in graph.external_keys.items()
        if fqn in models
    }
    return graph


def asset_graph_of(
    description: ProjectDescription, assets: Sequence[dg.AssetsDefinition]
) -> SQLMeshAssetGraph:
    """The graph of the SQLMesh model assets among ``assets``, as they were built (keys,
    partitions and checks included): each model's op names its model in the op tag
    ``sqlmesh/model``. Schedules and sensors read the assets this way instead of
    translating the project a second time. Other assets are left out.

    Raises:
        SQLMeshDefinitionError: when no asset of ``assets`` is a model of ``description``.
    """
    graph = SQLMeshAssetGraph(description=description)
    fqn_by_name = {model.name: model.fqn for model in description.models}
    for asset in assets:
        if not asset.is_executable:
            continue
        fqn = fqn_by_name.get(asset.op.tags.get(MODEL.model, ""))
        if fqn is None:
            continue
        (spec,) = asset.specs
        graph.specs[fqn] = spec
        graph.check_specs[fqn] = list(asset.check_specs)
        graph.op_names[fqn] = asset.op.name
    if not graph.specs:
        raise SQLMeshDefinitionError(
            f"None of the {len(assets)} assets given is a model of the SQLMesh project "
            f"in {description.project_dir}. Pass the assets sqlmesh_assets_factory built for it."
        )
    return graph


def _first_readers(graph: SQLMeshAssetGraph) -> dict[str, str]:
    """For each model, the first model with a step (DAG order) that reads it."""
    readers: dict[str, str] = {}
    for model in graph.description.models:
        if model.fqn in graph.specs:
            for parent in model.depends_on:
                readers.setdefault(parent, model.fqn)
    return readers


def _add_standalone_checks(
    graph: SQLMeshAssetGraph,
    upstream_key,  # noqa: ANN001
    readers: dict[str, str],
) -> None:
    """Each standalone audit becomes a check on the most downstream model it reads, or,
    when it reads only tables without a step, on the first model reading one of them."""
    order = {m.fqn: i for i, m in enumerate(graph.description.models)}
    for audit in graph.description.standalone_audits:
        reads = sorted(audit.depends_on, key=lambda fqn: (order.get(fqn, -1), fqn))
        own = [fqn for fqn in reads if fqn in graph.specs]
        hosts = own[-1:] or [readers[fqn] for fqn in reads if fqn in readers][:1]
        if not hosts:
            continue  # reads nothing a model with a step reads: no run would audit it
        specs = graph.check_specs[hosts[0]]
        specs.append(
            standalone_check_spec(
                audit,
                graph.specs[hosts[0]].key,
                [upstream_key(fqn) for fqn in reads],
                taken=[s.name for s in specs],
            )
        )
        graph.audited_nodes.setdefault(hosts[0], []).append(audit.name)


def _name(models: dict[str, ModelInfo], fqn: str) -> str:
    model = models.get(fqn)
    if model is None:
        return fqn
    return f"{model.name} ({model.path})" if model.path else model.name


def _undeclared(fqn: str) -> ModelInfo:
    """A dependency that is neither a model nor a declared external model."""
    from sqlglot import exp  # not at import time: cached loads never need sqlglot

    table = exp.to_table(fqn)
    return ModelInfo(
        fqn=fqn,
        name=table.sql(),
        catalog=table.catalog,
        schema=table.db,
        table=table.name,
        kind="EXTERNAL",
        is_external=True,
    )


def _op_names(specs: dict[str, dg.AssetSpec]) -> dict[str, str]:
    names: dict[str, str] = {}
    used: set[str] = set()
    for fqn, spec in specs.items():
        base = "__".join(key_segment(p) for p in spec.key.path)
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        names[fqn] = name
    return names
