"""What a run's plan evaluated beyond the run's selection, recorded from the step that
applied it."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.metadata import DG
from dg_sqlmesh.reporting.check_results import check_results
from dg_sqlmesh.reporting.partitions import recorded_partitions
from dg_sqlmesh.reporting.report import outcome_metadata
from dg_sqlmesh.reporting.versions import partition_tags, provenance, version_of
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph


def report_beyond_selection(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    outcomes: dict[str, ModelOutcome],
    run_outcomes: Mapping[str, ModelOutcome] | None = None,
) -> None:
    """Record what the run's plan evaluated outside the run's selection.

    A plan evaluates every model it must, selected or not, and SQLMesh's log shows it;
    so Dagster records it too, from the step that applied the plan: a materialization for
    each model it wrote (for a partitioned model, one per interval it filled) and the
    results of the audits it ran, each marked with this run. Nothing is recorded for a
    model the plan did not write. ``run_outcomes``: the outcomes of the run's selection,
    whose steps report after this one (their data versions are the inputs' provenance).
    """
    if not outcomes:
        return
    by_state: dict[str, list[str]] = {}
    for fqn, outcome in outcomes.items():
        if fqn in graph.specs:
            by_state.setdefault(outcome.state.value, []).append(graph.model(fqn).name)
    states = "; ".join(f"{state}: {', '.join(sorted(n))}" for state, n in sorted(by_state.items()))
    context.log.warning(
        f"The plan this run applied also reached {sum(map(len, by_state.values()))} model(s) "
        f"this run did not select ({states}). What it wrote and the audits it ran are "
        "recorded here, marked with this run."
    )
    for fqn, outcome in outcomes.items():
        spec = graph.specs.get(fqn)
        if spec is None:
            continue
        mark = {DG.evaluated_by_plan_of_run: context.run_id}
        metadata = {**outcome_metadata(outcome), **mark}
        if outcome.state is ModelState.MATERIALIZED and spec.partitions_def is not None:
            tags_for = partition_tags(context, graph, fqn, None, run_outcomes)
            for event in recorded_partitions(
                graph,
                fqn,
                outcome,
                metadata,
                outcome.intervals,
                tags_for,
            ):
                context.log_event(event)
        elif outcome.state is ModelState.MATERIALIZED:
            version = version_of(graph.model(fqn).data_hash, outcome, context.run_id)
            tags = provenance(context, graph, fqn, None, run_outcomes)
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=spec.key,
                    metadata=metadata,
                    tags=tags(version),
                )
            )
        elif outcome.state is ModelState.NOT_PROMOTED:
            context.log_event(dg.AssetObservation(asset_key=spec.key, metadata=metadata))
        elif outcome.state is not ModelState.UP_TO_DATE:
            reason = outcome.error or outcome.detail or outcome.state.value
            context.log.error(f"{graph.model(fqn).name} (evaluated by the plan): {reason}")
        for result in check_results(graph.check_specs.get(fqn, []), outcome.audits):
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=result.asset_key,
                    check_name=result.check_name,
                    passed=result.passed,
                    severity=result.severity,
                    metadata={**result.metadata, **mark},
                )
            )
