"""What the run's leader step does: start SQLMesh's one execution for the run's selection,
beside the steps (``execution.background``), publishing each model's outcome as it
becomes final and the run's outcomes at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dagster as dg

from dg_sqlmesh._compat.dagster import checks_without_result
from dg_sqlmesh.constants import REVIEWED_PLAN_TAG
from dg_sqlmesh.definitions.plan_job import reviewed_plan_of
from dg_sqlmesh.definitions.run_selection import (
    checks_alone_models,
    partition_windows,
    selected_models,
)
from dg_sqlmesh.errors import SQLMeshRunFailure
from dg_sqlmesh.execution.background import (
    BackgroundExecution,
    cancellation_watched,
    start_execution,
)
from dg_sqlmesh.execution.coordinator import RunCoordinator
from dg_sqlmesh.execution.guard import hold_project_environment
from dg_sqlmesh.execution.intervals import RunWindow, run_window
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.execution.progress import live_progress, log_at
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph

if TYPE_CHECKING:
    from dg_sqlmesh.definitions.resource import SQLMeshResource
    from dg_sqlmesh.execution.progress import LogFn


def lead(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    coordinator: RunCoordinator,
    step_key: str,
) -> None:
    """Start SQLMesh's execution for the run's selection, beside the steps
    (``execution.background``); it publishes each outcome as it becomes final."""
    resource = context.resources.sqlmesh
    description = graph.description
    try:
        selection = selected_models(context, graph)
    except SQLMeshRunFailure as exc:
        coordinator.publish(step_key, {}, error=failure_text(exc))
        raise
    alone = checks_alone_models(context, graph)
    own = next(f for f, op in graph.op_names.items() if op == step_key)
    if own not in selection and own not in alone:
        own_alone = graph.specs[own].key not in context.selected_asset_keys
        (alone if own_alone else selection).append(own)
    try:  # the partitions the run names, as SQLMesh intervals (execution.intervals)
        window = run_window(context.run.tags, graph, selection)
        reviewed_run = context.run.tags.get(REVIEWED_PLAN_TAG)
        reviewed = (
            (reviewed_run, reviewed_plan_of(context.instance, reviewed_run))
            if reviewed_run
            else None
        )
    except SQLMeshRunFailure as exc:
        coordinator.publish(step_key, {}, error=failure_text(exc))
        raise
    if selection:
        context.log.info(
            f"Executing SQLMesh once for this run's {len(selection)} selected model(s) "
            f"in environment '{resource.environment}'"
            + (f", for {window.describe()}" if window is not None and window.bounded else "")
            + (f", and the audits of {len(alone)} model(s) checked alone" if alone else "")
        )
    else:
        context.log.info(
            f"Running SQLMesh's audits of {len(alone)} model(s) whose checks were selected "
            f"without their asset, in environment '{resource.environment}' (nothing evaluated)"
        )
    # Reported the moment SQLMesh finishes them: models whose outcome is their own batches.
    live = [fqn for fqn in selection if not graph.audited_nodes.get(fqn)]
    log, instance, run_id = context.log, context.instance, context.run_id

    def work(execution: BackgroundExecution) -> dict[str, ModelOutcome]:
        started = time.monotonic()
        coordinator.record_leading(step_key)  # before any work: a restarted step sees it
        # The leader's sign of life lasts until the run's outcomes are published.
        with cancellation_watched(instance, run_id, execution.stop, beat=coordinator.beat):
            try:
                with (
                    hold_project_environment(
                        instance,
                        run_id,
                        resource,
                        description,
                        log=lambda level, message: log_at(log, level, message),
                    ),
                    live_progress(log) as progress,
                ):
                    outcomes, summary, beyond = _execute(
                        resource,
                        graph,
                        coordinator,
                        step_key,
                        selection,
                        alone,
                        progress,
                        started,
                        window,
                        unaudited=lambda keys: checks_without_result(instance, keys),
                        live=live,
                        stop=execution.stop,
                        on_planned=execution.keep_leader.set,
                        reviewed=reviewed,
                    )
            except BaseException as exc:  # re-raised: followers must not wait for a dead leader
                coordinator.publish(step_key, {}, error=failure_text(exc))
                raise
            log.info(summary)
            coordinator.publish(step_key, outcomes, summary=summary)
        return beyond

    coordinator.open_board(step_key)
    start_execution(run_id, work)


def _execute(
    resource: SQLMeshResource,
    graph: SQLMeshAssetGraph,
    coordinator: RunCoordinator,
    step_key: str,
    selection: list[str],
    alone: list[str],
    log: LogFn,
    started: float,
    window: RunWindow | None = None,
    unaudited: Callable[[list[dg.AssetCheckKey]], set[dg.AssetCheckKey]] = lambda keys: set(),
    live: list[str] | None = None,
    stop: threading.Event | None = None,
    on_planned: Callable[[], None] = lambda: None,
    reviewed: tuple[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, ModelOutcome], str, dict[str, ModelOutcome]]:
    """SQLMesh's run of ``selection`` (with row counts) and the audits of ``alone``: the
    run's outcomes, a line summing them up, and what a plan evaluated beyond the run's
    selection."""
    # Imported here: only the leader needs SQLMesh, so loading definitions and the
    # other steps never pay for importing it.
    from dg_sqlmesh.execution.checks_alone import audit_alone, run_checks_alone
    from dg_sqlmesh.execution.environment import ReviewedPlan
    from dg_sqlmesh.execution.plan_review import PlanReview
    from dg_sqlmesh.execution.row_counts import RowCounter, count_partition_rows, count_rows
    from dg_sqlmesh.execution.runner import execute

    description = graph.description
    models = description.models_by_fqn
    hosted = {fqn: graph.audited_nodes.get(fqn, []) for fqn in alone}
    if not selection:
        outcomes = run_checks_alone(resource, description, alone, log=log, audited_nodes=hosted)
        seconds = time.monotonic() - started
        summary = f"Ran the audits of {len(alone)} model(s) checked alone ({seconds:.1f} s)"
        return outcomes, summary, {}
    audited: dict[str, ModelOutcome] = {}

    def after_run(sqlmesh_context: Any, outcomes: dict[str, ModelOutcome]) -> None:
        # On the connection SQLMesh ran with, before the leader closes it.
        if resource.row_counts:
            count_rows(sqlmesh_context, resource.environment, outcomes, models, log)
            count_partition_rows(
                sqlmesh_context,
                resource.environment,
                outcomes,
                partition_windows(graph, outcomes, window),
                models,
                log,
            )
        audited.update(
            audit_alone(
                sqlmesh_context,
                resource.environment,
                alone,
                models,
                log,
                project_dir=description.project_dir,
                audited_nodes=hosted,
            )
        )
        _audit_up_to_date_without_results(
            sqlmesh_context, resource, graph, outcomes, unaudited, log
        )

    counter = RowCounter(resource.environment, live or (), models, log)

    def on_final(sqlmesh_context: Any, outcomes: list[ModelOutcome]) -> set[str]:
        # From SQLMesh's thread, on its connection: the rows, then every step. An up-to-date
        # model whose checks have no result yet waits: its audits run at the end.
        idle = [o.fqn for o in outcomes if o.state is ModelState.UP_TO_DATE]
        keys = [spec.key for fqn in idle for spec in graph.check_specs.get(fqn, ())]
        missing = unaudited(keys) if keys else set()
        ready = [
            o
            for o in outcomes
            if not any(spec.key in missing for spec in graph.check_specs.get(o.fqn, ()))
        ]
        if not ready:
            return set()
        if resource.row_counts:
            for outcome in ready:
                counter.count(sqlmesh_context, outcome)
            partitioned = {o.fqn: o for o in ready if graph.specs[o.fqn].partitions_def}
            if partitioned:
                with counter.lock:
                    count_partition_rows(
                        sqlmesh_context,
                        resource.environment,
                        partitioned,
                        partition_windows(graph, partitioned, window),
                        models,
                        log,
                    )
        coordinator.publish_live(step_key, {o.fqn: o for o in ready})
        return {o.fqn for o in ready}

    attempts = iter(range(1, 1_000_000))
    report = execute(
        resource,
        description,
        selection,
        log=log,
        on_execution=lambda: coordinator.record_execution(step_key, next(attempts), len(selection)),
        audited_nodes=graph.audited_nodes,
        after_run=after_run,
        window=window,
        live=live or (),
        on_final=on_final,
        stop=stop,
        on_planned=on_planned,
        reviewed=(
            ReviewedPlan(reviewed[0], PlanReview.from_dict(reviewed[1])) if reviewed else None
        ),
    )
    summary = _summary(report.outcomes, time.monotonic() - started)
    if alone:
        summary += f"; the audits of {len(alone)} model(s) checked alone"
    for fqn in alone:
        audited.setdefault(
            fqn,
            ModelOutcome(fqn=fqn, error="SQLMesh's execution stopped before auditing the model"),
        )
    return {**report.outcomes, **audited}, summary, report.beyond_selection


def _audit_up_to_date_without_results(
    sqlmesh_context: Any,
    resource: SQLMeshResource,
    graph: SQLMeshAssetGraph,
    outcomes: dict[str, ModelOutcome],
    unaudited: Callable[[list[dg.AssetCheckKey]], set[dg.AssetCheckKey]],
    log: LogFn,
) -> None:
    """Nothing was due for a model whose checks Dagster has no result for (an environment
    built outside Dagster): there is nothing to carry over, so its audits run on the table
    as it is (read only, as checks executed alone), and its checks show a real result."""
    from dg_sqlmesh.execution.checks_alone import audit_alone

    idle = [
        fqn
        for fqn, outcome in outcomes.items()
        if outcome.state is ModelState.UP_TO_DATE and graph.check_specs.get(fqn)
    ]
    keys = [spec.key for fqn in idle for spec in graph.check_specs[fqn]]
    missing = unaudited(keys) if keys else set()
    wanted = [f for f in idle if any(s.key in missing for s in graph.check_specs[f])]
    if not wanted:
        return
    log(
        "info",
        f"Nothing was due for {len(wanted)} model(s) whose checks have no earlier result; "
        "running their audits on the tables as they are",
    )
    audited = audit_alone(
        sqlmesh_context,
        resource.environment,
        wanted,
        graph.description.models_by_fqn,
        log,
        project_dir=graph.description.project_dir,
        audited_nodes={fqn: graph.audited_nodes.get(fqn, []) for fqn in wanted},
    )
    for fqn, outcome in audited.items():
        if not outcome.error:
            outcomes[fqn].audits = outcome.audits


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


def failure_text(exc: BaseException) -> str:
    if isinstance(exc, dg.Failure) and exc.description:
        return exc.description
    return f"{type(exc).__name__}: {exc}"
