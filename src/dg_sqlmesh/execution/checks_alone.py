"""Checks executed without their asset ("Execute" on a check in the UI).

SQLMesh audits a model when it evaluates it; a run that selects a model's checks but not
its asset must not evaluate it (that would write the table). Instead the run's leader
runs SQLMesh's audits of those models against their tables as they are, once for all of
them, on the environment's version of each model (as ``sqlmesh audit`` does, through
the snapshot evaluator's ``audit``: only ``SELECT``s, nothing written, SQLMesh's state
untouched). An audit covers every interval the environment holds for the model. The
results travel in the published outcomes like any other; each step reports its checks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh import engine_dialect
from dg_sqlmesh._compat.sqlmesh_state import audit_snapshot, environment_snapshots, intervals_held
from dg_sqlmesh.errors import plain_text, plan_command
from dg_sqlmesh.execution.outcomes import AuditOutcome, ModelOutcome
from dg_sqlmesh.project.describe import describe_audits
from dg_sqlmesh.project.description import ModelInfo, ProjectDescription

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.execution.console import LogFn
    from dg_sqlmesh.execution.settings import SQLMeshProject

ALONE_DETAIL = "checks run alone: SQLMesh audited the table as it is, nothing was evaluated"


def run_checks_alone(
    resource: SQLMeshProject,
    description: ProjectDescription,
    fqns: Iterable[str],
    *,
    log: LogFn,
    audited_nodes: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, ModelOutcome]:
    """Audit ``fqns`` in a SQLMesh context of their own (a run that materializes nothing)."""
    from dg_sqlmesh.execution.console import EventRecorder

    recorder = EventRecorder(description.models_by_fqn, log)
    context = resource.create_context(console=recorder.console)
    try:
        return audit_alone(
            context,
            resource.environment,
            fqns,
            description.models_by_fqn,
            log,
            project_dir=description.project_dir,
            audited_nodes=audited_nodes,
        )
    finally:
        context.close()


def audit_alone(
    context: Context,
    environment: str,
    fqns: Iterable[str],
    models: Mapping[str, ModelInfo],
    log: LogFn,
    *,
    project_dir: str = "<project>",
    audited_nodes: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, ModelOutcome]:
    """Run the audits of each of ``fqns`` on its table as the environment holds it, and
    those of the nodes whose checks are on its asset (``audited_nodes``: fqn -> external
    models and standalone audits, see ``execution.audited_nodes``).

    Never raises: a model whose audits could not run gets an outcome with the error.
    """
    outcomes = {fqn: ModelOutcome(fqn=fqn, detail=ALONE_DETAIL) for fqn in fqns}
    if not outcomes:
        return outcomes
    try:
        snapshots, deployability = _environment_snapshots(context, environment)
    except Exception as exc:  # noqa: BLE001 - reported on every model's step
        for outcome in outcomes.values():
            _failed(outcome, exc, "could not read the environment")
        return outcomes
    if snapshots is None:
        for outcome in outcomes.values():
            outcome.error = (
                f"SQLMesh environment '{environment}' does not exist: create it with "
                f"{plan_command(project_dir, environment)} and materialize the model "
                "before running its checks"
            )
        return outcomes
    for fqn, outcome in outcomes.items():
        name = models[fqn].name if fqn in models else fqn
        snapshot = snapshots.get(fqn)
        if snapshot is None or not snapshot.is_model:
            outcome.error = (
                f"the model is not in SQLMesh environment '{environment}' yet; apply a plan "
                f"({plan_command(project_dir, environment)}) and materialize it first"
            )
            continue
        started = time.monotonic()
        try:
            outcome.audits = _audit(context, snapshot, snapshots, deployability)
            for node in (audited_nodes or {}).get(fqn, ()):
                outcome.audits += _audit_node(
                    context, node, snapshot, snapshots, deployability, log
                )
        except _NoData as exc:
            outcome.error = plain_text(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - the step says why
            _failed(outcome, exc, "its audits failed to run")
            log("error", f"{name}: audits failed to run: {exc}")
            continue
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        for audit in outcome.audits:
            verdict = "passed" if audit.passed else f"failed ({audit.failing_rows} failing rows)"
            line = f"{name}: audit {audit.name} run alone {verdict}"
            outcome.log.append(["info" if audit.passed else "warning", line, time.time()])
            log("info" if audit.passed else "warning", line)
    return outcomes


class _NoData(Exception):
    pass


def _environment_snapshots(context: Context, environment: str) -> tuple[dict[str, Any] | None, Any]:
    """The environment's snapshots by name (with their intervals), and its deployability
    index, as SQLMesh's scheduler computes them for a run of the environment."""
    read = environment_snapshots(context.state_reader, environment)
    if read is None:
        return None, None
    snapshots, deployability = read
    return {s.name: s for s in snapshots.values()}, deployability


def _window(snapshot: Any, deployability: Any) -> tuple[int, int] | None:
    """The span of every interval the environment holds for ``snapshot``."""
    intervals = intervals_held(snapshot, deployability)
    if not intervals:
        return None
    return min(start for start, _ in intervals), max(end for _, end in intervals)


def _audit(
    context: Context, snapshot: Any, snapshots: dict[str, Any], deployability: Any
) -> list[AuditOutcome]:
    window = _window(snapshot, deployability)
    if window is None:
        raise _NoData(
            "the model has no data in the environment yet: materialize it before running "
            "its checks alone"
        )
    described = describe_audits(snapshot.model)
    results = audit_snapshot(context, snapshot, snapshots, deployability, window)
    # One result per audit, in the model's order: the same order ``describe_audits`` reads.
    return [
        _outcome(context, info.name, dict(info.args), result)
        for info, result in zip(described, results, strict=False)
        if not getattr(result, "skipped", False)
    ]


def _audit_node(
    context: Context,
    name: str,
    host: Any,
    snapshots: dict[str, Any],
    deployability: Any,
    log: LogFn,
) -> list[AuditOutcome]:
    """The audits of a node checked on ``host``'s asset (an external model, a standalone
    audit), over the node's intervals, or its host's when it has none (an external model;
    a standalone audit that never ran)."""
    node = snapshots.get(name)
    if node is None:
        log("warning", f"{name} is not in the environment: its audits were not run")
        return []
    window = _window(node, deployability) or _window(host, deployability)
    results = audit_snapshot(context, node, snapshots, deployability, window)
    if node.is_model:
        described = [(info.name, dict(info.args)) for info in describe_audits(node.model)]
    else:  # a standalone audit: its one audit is itself
        described = [(name, {})] * len(results)
    return [
        dataclasses.replace(_outcome(context, audit, args, result), node=name)
        for (audit, args), result in zip(described, results, strict=False)
        if not getattr(result, "skipped", False)
    ]


def _outcome(context: Context, name: str, args: dict[str, str], result: Any) -> AuditOutcome:
    count = int(result.count or 0)
    dialect = engine_dialect(context)
    return AuditOutcome(
        name=name,
        blocking=bool(result.blocking),  # SQLMesh's: a dev preview never blocks
        passed=count == 0,
        args=args,
        failing_rows=count,
        query=result.query.sql(dialect=dialect, pretty=True) if result.query else None,
    )


def _failed(outcome: ModelOutcome, exc: BaseException, what: str) -> None:
    outcome.fail(exc, f"{what}: {type(exc).__name__}: {plain_text(exc)}")
