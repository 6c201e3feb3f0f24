"""What one model's Dagster step does.

The first SQLMesh step of a run to be launched becomes the run's leader (see
``coordinator``): it starts SQLMesh's one execution for every SQLMesh model the run
selected (``leader``), beside the steps. Every step, the leader included, then waits for
its own model's outcome only, published the moment it is final, and reports it: a
materialization only for data SQLMesh really wrote and audited (or confirmed up to
date), check results for the audits that ran, and a failure otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from dg_sqlmesh._compat.dagster import runs_every_step_here
from dg_sqlmesh.definitions.leader import lead
from dg_sqlmesh.errors import LeaderLost, SQLMeshRunFailure
from dg_sqlmesh.execution.background import (
    execution_of,
    stop_execution,
)
from dg_sqlmesh.execution.coordinator import Published, RunCoordinator
from dg_sqlmesh.execution.outcomes import ModelOutcome
from dg_sqlmesh.reporting.plans import report_beyond_selection
from dg_sqlmesh.reporting.report import report, report_checks_alone
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph

if TYPE_CHECKING:
    pass


def sqlmesh_step(
    context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph, fqn: str
) -> Iterator[Any]:
    """Start (if leader) or wait for the run's SQLMesh execution, then report ``fqn`` as
    soon as its outcome is published. A run interrupted here stops SQLMesh at its next
    batch."""
    try:
        yield from _step(context, graph, fqn)
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        stop_execution(context.run_id)
        raise


def _step(context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph, fqn: str) -> Iterator[Any]:
    alone = graph.specs[fqn].key not in context.selected_asset_keys  # its checks only
    step_key = graph.op_names[fqn]
    coordinator: RunCoordinator = context.resources.sqlmesh_results.coordinator(
        context.instance, context.run, lambda: set(graph.op_names.values())
    )
    local = coordinator.local()
    leader = local.leader_step if local is not None else coordinator.leader(step_key)
    leading_here = local is None and leader == step_key and _first_lead(coordinator, step_key)
    if leading_here:
        lead(context, graph, coordinator, step_key)
    published = _await(context, coordinator, leader, fqn)
    if fqn not in published.outcomes and published.error is not None:
        execution = execution_of(context.run_id) if leader == step_key else None
        if execution is not None:
            execution.join()  # the leader's step fails with the execution's own error
        raise SQLMeshRunFailure(
            description=f"The run's SQLMesh execution failed: {published.error}",
            allow_retries=False,
        )
    outcome = published.outcomes.get(fqn) or ModelOutcome(
        fqn=fqn, detail="SQLMesh did not report this model"
    )
    replay = leader != step_key or not leading_here  # its SQLMesh lines were logged elsewhere
    if alone:
        yield from report_checks_alone(
            context, graph, fqn, outcome, replay=replay, leader_step=leader
        )
    else:
        yield from report(context, graph, fqn, outcome, replay=replay, leader_step=leader)
    if leader == step_key:
        _finish_leading(context, graph)


def _first_lead(coordinator: RunCoordinator, step_key: str) -> bool:
    """Whether this attempt of the leader's step starts SQLMesh's execution: the first
    does. A run executes SQLMesh once, so an attempt the executor started again (Dask does
    when a worker dies; a retry policy after a failure) reports what the earlier attempt
    published, or follows it while it still gives signs of life, and otherwise fails,
    failing its followers."""
    earlier = coordinator.earlier_lead()
    if earlier is None:
        return True
    if earlier.published or coordinator.signs_of_life():
        return False
    raise LeaderLost(
        f"Step '{step_key}' began SQLMesh's execution for this run in process "
        f"{earlier.where.get('pid')} on {earlier.where.get('host')}, which stopped before "
        "publishing what happened (it was killed, or its worker was lost), and the executor "
        "started the step again. A run executes SQLMesh once: re-execute the run to "
        "complete the work; SQLMesh evaluates only what is missing."
    )


def _await(
    context: dg.AssetExecutionContext, coordinator: RunCoordinator, leader: str, fqn: str
) -> Published:
    """The published outcome of ``fqn`` (or the error that stopped SQLMesh), as soon as
    there is one. Raises LeaderLost (a run failure, not retried) when the leader stopped
    first."""
    execution = execution_of(context.run_id)
    return coordinator.wait_for(
        leader,
        fqn,
        on_wait=lambda: context.log.info(
            f"Waiting for step '{leader}', which executes SQLMesh for this run"
        ),
        leader_alive=execution.is_alive if execution is not None else lambda: True,
    )


def _finish_leading(context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph) -> None:
    """The leader's step lasts until SQLMesh's execution ends, unless every step of the
    run shares its process (the in-process executor): then the steps after it report
    while SQLMesh works, and the resource's teardown waits for the end. When the run
    applied a plan, what it evaluated beyond the selection is reported on this step, at
    the end."""
    execution = execution_of(context.run_id)
    if execution is None:
        return
    if (
        runs_every_step_here(context.instance, context.run_id)
        and not execution.keep_leader.is_set()
    ):
        return
    try:
        beyond = execution.join()
    except Exception:  # noqa: BLE001 - published to every step that still waited
        return
    except BaseException:
        execution.stop.set()
        raise
    published = context.resources.sqlmesh_results.coordinator(
        context.instance, context.run, ()
    ).local()
    report_beyond_selection(context, graph, beyond or {}, published.outcomes if published else {})
