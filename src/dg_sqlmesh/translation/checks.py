"""SQLMesh audits as Dagster asset check specs (the results of a run are built in
``execution/check_results.py``).

A model's audits are checks on its asset. An audit of a node without a step of its own
is a check on a model asset that runs it: an external model's audits are checks on the
first model (in SQLMesh's DAG order) that reads it, a standalone audit is a check on the
most downstream model it reads (or on the first model reading the external tables it
reads). The run that materializes that model has SQLMesh run the audit too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import dagster as dg

from dg_sqlmesh.metadata import AUDIT, MODEL
from dg_sqlmesh.project.description import AuditInfo, ModelInfo, StandaloneAuditInfo

# Dagster names are ``[A-Za-z0-9_]+``; anything else in an audit name becomes ``_``.
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")

# Check metadata: the SQLMesh node (an external model's FQN, a standalone audit's name)
# an audit belongs to, when it is not the asset's own model.
AUDITED_NODE = AUDIT.audited_node


def check_name(audit: AuditInfo) -> str:
    """The Dagster check name of an audit: its name, made a valid Dagster name."""
    return _NOT_NAME_CHAR.sub("_", audit.name)


def default_check_specs(model: ModelInfo, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """One ``AssetCheckSpec`` per audit; blocking audits make blocking checks."""
    specs: dict[str, dg.AssetCheckSpec] = {}
    for audit in model.audits:
        name = check_name(audit)
        if name in specs:  # the same audit twice with other arguments
            name = f"{name}_{len(specs)}"
        specs[name] = dg.AssetCheckSpec(
            name=name,
            asset=asset_key,
            description=_describe(audit),
            blocking=audit.blocking,
            metadata={
                AUDIT.audit: audit.name,
                AUDIT.blocking: audit.blocking,
                AUDIT.audit_args: dict(audit.args),
            },
        )
    return list(specs.values())


def standalone_check_spec(
    audit: StandaloneAuditInfo,
    asset_key: dg.AssetKey,
    reads: Sequence[dg.AssetKey] = (),
    *,
    taken: Sequence[str] = (),
) -> dg.AssetCheckSpec:
    """The check of a standalone audit, on ``asset_key`` (the most downstream asset it
    reads), depending on the other assets it ``reads``. Never blocking: SQLMesh does
    not allow a blocking standalone audit."""
    name = _NOT_NAME_CHAR.sub("_", audit.name)
    if name in taken:  # a model audit of the same name on the same asset
        name = f"{name}_standalone"
    metadata = {
        AUDIT.audit: audit.name,
        AUDIT.blocking: audit.blocking,
        AUDIT.audit_args: {},
        AUDIT.standalone: True,
        AUDITED_NODE: audit.name,
        **({MODEL.file: audit.path} if audit.path else {}),
    }
    return dg.AssetCheckSpec(
        name=name,
        asset=asset_key,
        additional_deps=[key for key in reads if key != asset_key],
        description=audit.description or f"SQLMesh standalone audit {audit.name}, non-blocking",
        blocking=audit.blocking,
        metadata=metadata,
    )


def hosted_check_spec(
    spec: dg.AssetCheckSpec,
    host_key: dg.AssetKey,
    *,
    node: str,
    label: str,
    taken: Sequence[str] = (),
) -> dg.AssetCheckSpec:
    """An external model's audit check (``spec``, on the external key) moved onto the
    model asset ``host_key`` that reads it first, named ``<label>__<check>``."""
    name = f"{_NOT_NAME_CHAR.sub('_', label)}__{spec.name}"
    if name in taken:
        name = f"{name}_{len(taken)}"
    return dg.AssetCheckSpec(
        name=name,
        asset=host_key,
        additional_deps=[spec.asset_key],
        description=f"{spec.description or spec.name}, on {label}",
        blocking=spec.blocking,
        metadata={**spec.metadata, AUDITED_NODE: node},
    )


def _describe(audit: AuditInfo) -> str:
    args = ", ".join(f"{k} := {v}" for k, v in audit.args.items())
    kind = "blocking" if audit.blocking else "non-blocking"
    return f"SQLMesh audit {audit.name}({args}), {kind}"
