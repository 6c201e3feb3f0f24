"""Audits of SQLMesh nodes that have no Dagster step: external models and standalone audits.

Each is a check on a model asset that reads it (see ``checks``). When a run materializes
that model, the leader adds the node to SQLMesh's selection, so SQLMesh runs its audits
in the run's one execution, as a bare ``sqlmesh run`` would; then the node's audit results
move onto the model's outcome, which reports them as its checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from dg_sqlmesh.execution.outcomes import ModelOutcome
from dg_sqlmesh.project.description import AuditInfo, ModelInfo, ProjectDescription


def standalone_nodes(description: ProjectDescription, nodes: Sequence[str]) -> dict[str, ModelInfo]:
    """The standalone audits among ``nodes``, described as a node with one audit: itself
    (so events about them settle like a model's)."""
    wanted = set(nodes)
    return {
        audit.name: ModelInfo(
            fqn=audit.name,
            name=audit.name,
            catalog="",
            schema="",
            table=audit.name,
            kind="AUDIT",
            depends_on=audit.depends_on,
            audits=(AuditInfo(name=audit.name, blocking=audit.blocking),),
        )
        for audit in description.standalone_audits
        if audit.name in wanted
    }


def host_audits(outcomes: dict[str, ModelOutcome], hosted: Mapping[str, Sequence[str]]) -> None:
    """Move each node's audit results onto its host model's outcome (marked with the node),
    and drop the node's own outcome: Dagster reports it through the host's checks."""
    for host, nodes in hosted.items():
        for node in nodes:
            found = outcomes.pop(node, None)
            if found is None or host not in outcomes:
                continue
            outcomes[host].audits.extend(
                dataclasses.replace(audit, node=node) for audit in found.audits
            )
