"""What one model's Dagster step does.

The first SQLMesh step of a run to be launched becomes the run's leader (see
``coordinator``): it executes SQLMesh once for every SQLMesh model the run selected and
publishes the outcomes in the run's event log.
Every step, the leader included, then reports its own model from that record:
a materialization only for data SQLMesh really wrote (or confirmed up to date),
check results for the audits that ran, and a failure otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from dg_sqlmesh.dagster_compat import run_step_keys, selected_asset_keys
from dg_sqlmesh.errors import SQLMeshRunFailure
from dg_sqlmesh.execution.coordinator import Published, RunCoordinator
from dg_sqlmesh.execution.guard import environment_id, hold_environment
from dg_sqlmesh.execution.intervals import run_window
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.execution.progress import live_progress
from dg_sqlmesh.execution.report import report, report_beyond_selection
from dg_sqlmesh.specs import SQLMeshAssetGraph


def sqlmesh_step(
    context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph, fqn: str
) -> Iterator[Any]:
    """Run (if leader) or wait for the run's SQLMesh execution, then report ``fqn``."""
    if graph.specs[fqn].key not in context.selected_asset_keys:
        raise _checks_without_asset(graph, fqn)
    step_key = graph.op_names[fqn]
    coordinator: RunCoordinator = context.resources.sqlmesh_results.coordinator(
        context.instance, context.run, lambda: _materializing_steps(context, graph)
    )
    published = coordinator.local()
    if published is None:
        leader = coordinator.leader(step_key)
        if leader == step_key:
            published = _lead(context, graph, coordinator, step_key)
        else:
            published = _follow(context, coordinator, leader)
    if published.error is not None:
        raise SQLMeshRunFailure(
            description=f"The run's SQLMesh execution failed: {published.error}",
            allow_retries=False,
        )
    outcome = published.outcomes.get(fqn) or ModelOutcome(
        fqn=fqn, detail="SQLMesh did not report this model"
    )
    leader = published.leader_step
    yield from report(context, graph, fqn, outcome, replay=leader != step_key, leader_step=leader)


def _materializing_steps(context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph) -> set[str]:
    """The steps of SQLMesh models whose assets the run's job materializes (a step can run
    for a model's checks alone: never the leader, SQLMesh does not run that model)."""
    assets = selected_asset_keys(context)
    return {
        graph.op_names[fqn]
        for fqn, spec in graph.specs.items()
        if assets is None or spec.key in assets
    }


def selected_models(context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph) -> list[str]:
    """The SQLMesh models (FQNs, DAG order) whose assets this run materializes.

    A step can run for a model's checks alone; that model is not SQLMesh's to run.
    """
    step_keys = run_step_keys(context)
    if step_keys is None:  # fail closed: guessing could write models the run did not select
        raise SQLMeshRunFailure(
            description=(
                "Cannot tell which steps this run executes: Dagster's execution plan "
                "snapshot of the run could not be read, so SQLMesh was not run (running "
                "every model could write models the run did not select). This Dagster "
                "version may store plans differently; see dg_sqlmesh.dagster_compat."
            ),
            allow_retries=False,
        )
    assets = selected_asset_keys(context)  # None: every asset of the steps
    return [
        fqn
        for fqn, op_name in graph.op_names.items()
        if op_name in step_keys and (assets is None or graph.specs[fqn].key in assets)
    ]


def _checks_without_asset(graph: SQLMeshAssetGraph, fqn: str) -> SQLMeshRunFailure:
    key = graph.specs[fqn].key.to_user_string()
    return SQLMeshRunFailure(
        description=(
            f"{graph.model(fqn).name}: its checks were selected without its asset. SQLMesh "
            "runs a model's audits when it evaluates the model, and evaluating it would "
            f"write the table this run did not select. Materialize {key} to run its checks."
        ),
        allow_retries=False,
    )


def _lead(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    coordinator: RunCoordinator,
    step_key: str,
) -> Published:
    # Imported here: only the leader needs SQLMesh, so loading definitions and the
    # other steps never pay for importing it.
    from dg_sqlmesh.execution.runner import execute

    resource = context.resources.sqlmesh
    description = graph.description
    try:
        selection = selected_models(context, graph)
    except SQLMeshRunFailure as exc:
        coordinator.publish(step_key, {}, error=_failure_text(exc))
        raise
    own = next(f for f, op in graph.op_names.items() if op == step_key)
    if own not in selection:
        selection.append(own)
    attempts = iter(range(1, 1_000_000))
    started = time.monotonic()
    try:
        window = run_window(context.run.tags, graph, selection)
        context.log.info(
            f"Executing SQLMesh once for this run's {len(selection)} selected model(s) "
            f"in environment '{resource.environment}'"
            + ("" if window is None or not window.bounded else f", for {window.describe()}")
        )
        with (
            hold_environment(
                context.instance,
                context.run_id,
                environment_id(description.project_dir, description.gateway, resource.environment),
                description=(
                    f"SQLMesh environment '{resource.environment}' of {description.project_dir} "
                    f"(gateway {description.gateway})"
                ),
                timeout_seconds=resource.environment_lock_timeout,
                log=_logger(context),
            ),
            live_progress(context.log) as progress,
        ):
            report = execute(
                resource,
                description,
                selection,
                log=progress,
                on_execution=lambda: coordinator.record_execution(
                    step_key, next(attempts), len(selection)
                ),
                audited_nodes=graph.audited_nodes,
                window=window,
            )
    except BaseException as exc:
        coordinator.publish(step_key, {}, error=_failure_text(exc))
        raise
    for changed, change in report.unapplied_changes.items():
        if changed in report.outcomes:
            report.outcomes[changed].unapplied_change = change
    for changed, held in report.held.items():
        if changed in report.outcomes:
            report.outcomes[changed].held_code_version = held.data_hash
            report.outcomes[changed].held_columns = held.columns
    summary = _summary(report.outcomes, time.monotonic() - started)
    context.log.info(summary)
    published = coordinator.publish(step_key, report.outcomes, summary=summary)
    report_beyond_selection(context, graph, report.beyond_selection)
    return published


def _summary(outcomes: dict[str, ModelOutcome], seconds: float) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome.state.value] = counts.get(outcome.state.value, 0) + 1
    if outcomes and set(counts) == {ModelState.UP_TO_DATE.value}:
        return (
            f"Nothing was due: the {len(outcomes)} selected model(s) are up to date; SQLMesh "
            f"evaluated nothing ({seconds:.1f} s)"
        )
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return (
        f"Executed SQLMesh for {len(outcomes)} model(s) in {seconds:.1f} s: "
        f"{states or 'nothing selected'}"
    )


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, dg.Failure) and exc.description:
        return exc.description
    return f"{type(exc).__name__}: {exc}"


def _follow(
    context: dg.AssetExecutionContext, coordinator: RunCoordinator, leader: str
) -> Published:
    # Raises LeaderLost (a run failure, not retried) when the leader stopped first.
    return coordinator.wait_for(
        leader,
        on_wait=lambda: context.log.info(
            f"Waiting for step '{leader}', which executes SQLMesh for this run"
        ),
    )


def _logger(context: dg.AssetExecutionContext):  # noqa: ANN202
    log = context.log

    def emit(level: str, message: str) -> None:
        getattr(log, level if level in {"info", "warning", "error", "debug"} else "info")(message)

    return emit
