"""What one model's Dagster step does.

The first SQLMesh step of a run to be launched becomes the run's leader (see
``coordinator``): it executes SQLMesh once for every SQLMesh model the run selected and
publishes the outcomes in the run's event log.
Every step, the leader included, then reports its own model from that record:
a materialization only for data SQLMesh really wrote (or confirmed up to date),
check results for the audits that ran, and a failure otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dg_sqlmesh.checks import check_results
from dg_sqlmesh.dagster_compat import latest_data_version, run_step_keys, selected_asset_keys
from dg_sqlmesh.errors import ErrorClass, SQLMeshRunFailure
from dg_sqlmesh.execution.coordinator import LeaderLost, Published, RunCoordinator
from dg_sqlmesh.execution.guard import environment_id, hold_environment
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.specs import SQLMeshAssetGraph

NO_OP = "dagster_sqlmesh/no_op"


def sqlmesh_step(
    context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph, fqn: str
) -> Iterator[Any]:
    """Run (if leader) or wait for the run's SQLMesh execution, then report ``fqn``."""
    if graph.specs[fqn].key not in context.selected_asset_keys:
        raise _checks_without_asset(graph, fqn)
    step_key = graph.op_names[fqn]
    coordinator: RunCoordinator = context.resources.sqlmesh_results.coordinator(
        context.instance, context.run, _materializing_steps(context, graph)
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
    yield from report(context, graph, fqn, outcome)


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
    assets = selected_asset_keys(context)  # None: every asset of the steps
    return [
        fqn
        for fqn, op_name in graph.op_names.items()
        if (step_keys is None or op_name in step_keys)
        and (assets is None or graph.specs[fqn].key in assets)
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
    selection = selected_models(context, graph)
    own = next(f for f, op in graph.op_names.items() if op == step_key)
    if own not in selection:
        selection.append(own)
    context.log.info(
        f"Executing SQLMesh once for this run's {len(selection)} selected model(s) "
        f"in environment '{resource.environment}'"
    )
    attempts = iter(range(1, 1_000_000))
    try:
        with hold_environment(
            context.instance,
            context.run_id,
            environment_id(description.project_dir, description.gateway, resource.environment),
            description=(
                f"SQLMesh environment '{resource.environment}' of {description.project_dir} "
                f"(gateway {description.gateway})"
            ),
            timeout_seconds=resource.environment_lock_timeout,
            log=_logger(context),
        ):
            report = execute(
                resource,
                description,
                selection,
                log=_logger(context),
                on_execution=lambda: coordinator.record_execution(
                    step_key, next(attempts), len(selection)
                ),
            )
    except BaseException as exc:
        coordinator.publish(step_key, {}, error=_failure_text(exc))
        raise
    for changed, change in report.unapplied_changes.items():
        if changed in report.outcomes:
            report.outcomes[changed].unapplied_change = change
    return coordinator.publish(step_key, report.outcomes, summary=_summary(report.outcomes))


def _summary(outcomes: dict[str, ModelOutcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome.state.value] = counts.get(outcome.state.value, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"SQLMesh executed for {len(outcomes)} model(s): {states or 'nothing selected'}"


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, dg.Failure) and exc.description:
        return exc.description
    return f"{type(exc).__name__}: {exc}"


def _follow(
    context: dg.AssetExecutionContext, coordinator: RunCoordinator, leader: str
) -> Published:
    try:
        return coordinator.wait_for(
            leader,
            on_wait=lambda: context.log.info(
                f"Waiting for step '{leader}', which executes SQLMesh for this run"
            ),
        )
    except LeaderLost as exc:
        raise SQLMeshRunFailure(description=str(exc), allow_retries=False) from None


def _logger(context: dg.AssetExecutionContext):  # noqa: ANN202
    log = context.log

    def emit(level: str, message: str) -> None:
        getattr(log, level if level in {"info", "warning", "error", "debug"} else "info")(message)

    return emit


def report(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    fqn: str,
    outcome: ModelOutcome,
) -> Iterator[Any]:
    """Turn one model's outcome into Dagster events, never claiming more than happened."""
    model = graph.model(fqn)
    key = graph.specs[fqn].key
    checks = check_results(graph.check_specs.get(fqn, []), outcome.audits)
    metadata = _metadata(outcome)

    if outcome.state is ModelState.MATERIALIZED:
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=metadata,
            check_results=checks,
            data_version=dg.DataVersion(_data_version(model.data_hash, outcome, context.run_id)),
        )
        return
    if outcome.state is ModelState.UP_TO_DATE:
        previous = latest_data_version(context.instance, key)
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=metadata,
            data_version=dg.DataVersion(previous) if previous else None,
        )
        return

    yield from checks  # a failed blocking audit is shown, without a materialization
    reason = outcome.error or outcome.detail or "SQLMesh did not evaluate this model"
    if outcome.state is ModelState.AUDIT_FAILED:
        failed = [a.name for a in outcome.audits if not a.passed and a.blocking]
        reason = f"blocking audit(s) {', '.join(failed) or '?'} failed: {outcome.error}"
    raise SQLMeshRunFailure(
        description=f"{model.name}: {reason}",
        metadata=metadata,
        allow_retries=False,
    )


def _metadata(outcome: ModelOutcome) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "sqlmesh/state": outcome.state.value,
        NO_OP: outcome.state is ModelState.UP_TO_DATE,
    }
    if outcome.intervals:
        metadata["sqlmesh/intervals"] = [
            f"[{_iso(start)}, {_iso(end)})" for start, end in outcome.intervals
        ]
        metadata["sqlmesh/interval_start"] = _iso(min(s for s, _ in outcome.intervals))
        metadata["sqlmesh/interval_end"] = _iso(max(e for _, e in outcome.intervals))
        metadata["sqlmesh/batches"] = outcome.batches
        metadata["sqlmesh/duration_ms"] = outcome.duration_ms
    if outcome.detail:
        metadata["sqlmesh/detail"] = outcome.detail.strip()
    if outcome.error_class:
        metadata["sqlmesh/error_class"] = outcome.error_class
        metadata["sqlmesh/error_reason"] = outcome.error_reason or ""
        metadata["sqlmesh/retryable"] = outcome.error_class == ErrorClass.TRANSIENT.value
    if outcome.unapplied_change:
        metadata["sqlmesh/unapplied_change"] = (
            f"{outcome.unapplied_change} on disk, not yet in the environment: this run "
            "executed the environment's version"
        )
    if outcome.failed_upstreams:
        metadata["sqlmesh/failed_upstreams"] = outcome.failed_upstreams
    return metadata


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _data_version(data_hash: str | None, outcome: ModelOutcome, run_id: str) -> str:
    digest = hashlib.sha1(f"{data_hash}|{outcome.intervals}|{run_id}".encode())
    return digest.hexdigest()[:24]
