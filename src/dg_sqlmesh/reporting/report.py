"""One model's outcome as Dagster events, never claiming more than happened.

* evaluated: a materialization (intervals, batches, duration, rows) with its audits' results;
* up to date: a materialization marked ``dg_sqlmesh/no_op`` keeping the previous data
  version, and the model's last real audit results carried over (nothing was audited
  again because nothing changed), so the asset's checks stay current instead of turning
  grey;
* anything else: the failed checks (a blocking audit), then a failed step saying why.

A step other than the leader first replays its model's SQLMesh log lines, so each step's
log shows its own model.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dg_sqlmesh.errors import ErrorClass, SQLMeshRunFailure
from dg_sqlmesh.execution.checks_alone import ALONE_DETAIL
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.execution.progress import log_at
from dg_sqlmesh.metadata import DG, RUN, TABLE
from dg_sqlmesh.reporting.carried_over import carried_over
from dg_sqlmesh.reporting.check_results import check_results, run_alone
from dg_sqlmesh.reporting.partitions import recorded_partitions, report_partitions
from dg_sqlmesh.reporting.versions import (
    CODE_VERSION_TAG,
    data_version,
    partition_tags,
    up_to_date_text,
    version_of,
)
from dg_sqlmesh.translation.specs import SQLMeshAssetGraph


def report(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    fqn: str,
    outcome: ModelOutcome,
    *,
    replay: bool = False,
    leader_step: str | None = None,
) -> Iterator[Any]:
    """Turn one model's outcome into Dagster events, never claiming more than happened.

    With ``replay``, the model's SQLMesh log lines (written live by ``leader_step``) are
    repeated in this step's log first.
    """
    if replay:
        _replay(context, outcome, leader_step)
    model = graph.model(fqn)
    key = graph.specs[fqn].key
    checks = check_results(graph.check_specs.get(fqn, []), outcome.audits)
    metadata = outcome_metadata(outcome)

    held = _held_version(graph, fqn, outcome, metadata)
    spec = graph.specs[fqn]
    if spec.partitions_def is not None:  # only ever materialized by partition
        if (outcome.partitions or {}).get("first_key") is not None:
            yield from report_partitions(
                context,
                graph,
                fqn,
                outcome,
                metadata=metadata,
                checks=checks,
                tags=held,
                data_version=version_of(model.data_hash, outcome, context.run_id),
                failure=_failure_reason(outcome),
            )
            return
        # The run names no partitions: SQLMesh ran what was due; its recorded intervals
        # are the partitions materialized, and nothing is recorded unpartitioned.
        units = (outcome.partitions or {}).get("recorded", [])
        yield from recorded_partitions(
            graph, fqn, outcome, metadata, units, partition_tags(context, graph, fqn, held)
        )
        if outcome.state is ModelState.MATERIALIZED:
            yield from checks
            return
        if outcome.state is ModelState.UP_TO_DATE:
            context.log.info(f"{model.name}: {up_to_date_text(context, key)}")
            yield from _idle_checks(context, graph, fqn, outcome)
            return
    elif outcome.state is ModelState.MATERIALIZED:
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=metadata,
            tags=held,
            check_results=checks,
            data_version=dg.DataVersion(data_version(context, graph, fqn, outcome)),
        )
        return
    elif outcome.state is ModelState.UP_TO_DATE:
        text = up_to_date_text(context, key)
        context.log.info(f"{model.name}: {text}")
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={**metadata, DG.up_to_date: text},
            tags=held,
            check_results=_idle_checks(context, graph, fqn, outcome),
            data_version=dg.DataVersion(data_version(context, graph, fqn, outcome)),
        )
        return

    if outcome.state is ModelState.NOT_PROMOTED:  # written, but not what the env serves
        yield dg.AssetObservation(asset_key=key, metadata=metadata)
    yield from checks  # a failed blocking audit is shown, without a materialization
    raise SQLMeshRunFailure(
        description=f"{model.name}: {_failure_reason(outcome)}",
        metadata=metadata,
        allow_retries=False,
    )


def _idle_checks(
    context: dg.AssetExecutionContext, graph: SQLMeshAssetGraph, fqn: str, outcome: ModelOutcome
) -> list[dg.AssetCheckResult]:
    """The checks of a model nothing was due for: its last real results, carried over, or,
    for checks without one, the audits the leader ran on the table as it is."""
    specs = graph.check_specs.get(fqn, [])
    results = carried_over(context.instance, specs)
    have = {r.check_name for r in results}
    for result in check_results(specs, outcome.audits):
        if result.check_name not in have:
            results.append(run_alone(result))
    return results


def _failure_reason(outcome: ModelOutcome) -> str:
    reason = outcome.error or outcome.detail or "SQLMesh did not evaluate this model"
    if outcome.state is ModelState.NOT_PROMOTED:
        reason = outcome.detail or reason
    if outcome.state is ModelState.AUDIT_FAILED:
        failed = [a for a in outcome.audits if not a.passed and a.blocking]
        rows = sum(a.failing_rows for a in failed)
        names = ", ".join(a.name for a in failed) or "?"
        reason = f"blocking audit(s) {names} failed ({rows} failing row(s))"
    return reason


def report_checks_alone(
    context: dg.AssetExecutionContext,
    graph: SQLMeshAssetGraph,
    fqn: str,
    outcome: ModelOutcome,
    *,
    replay: bool = False,
    leader_step: str | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """The results of the model's checks this step was selected for, from audits run
    alone (``execution.checks_alone``): no materialization, the table was not written."""
    if replay:
        _replay(context, outcome, leader_step)
    model = graph.model(fqn)
    if not outcome.error and outcome.detail != ALONE_DETAIL:  # the leader did not audit it
        outcome.error = outcome.detail or "SQLMesh did not audit this model"
    if outcome.error:
        raise SQLMeshRunFailure(
            description=f"{model.name}: its checks could not run alone: {outcome.error}",
            metadata=(
                {
                    RUN.error_class: outcome.error_class.value,
                    RUN.error_reason: outcome.error_reason or "",
                }
                if outcome.error_class
                else None
            ),
            allow_retries=False,
        )
    selected = context.selected_asset_check_keys
    specs = [spec for spec in graph.check_specs.get(fqn, []) if spec.key in selected]
    results = check_results(specs, outcome.audits)
    for spec in specs:
        if not any(r.check_name == spec.name for r in results):
            context.log.warning(
                f"{model.name}: check {spec.name} has no result: the environment's version "
                "of the model runs no such audit, or SQLMesh skipped it"
            )
    for result in results:
        yield run_alone(result)


def outcome_metadata(outcome: ModelOutcome) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        RUN.state: outcome.state.value,
        DG.no_op: outcome.state is ModelState.UP_TO_DATE,
    }
    if outcome.intervals:
        metadata[RUN.intervals] = [
            f"[{_iso(start)}, {_iso(end)})" for start, end in outcome.intervals
        ]
        metadata[RUN.interval_start] = _iso(min(s for s, _ in outcome.intervals))
        metadata[RUN.interval_end] = _iso(max(e for _, e in outcome.intervals))
        # Numbers, so that the UI plots them across materializations.
        metadata[RUN.batches] = dg.MetadataValue.int(outcome.batches)
        metadata[RUN.interval_count] = dg.MetadataValue.int(
            outcome.interval_count or len(outcome.intervals)
        )
        metadata[RUN.duration_s] = dg.MetadataValue.float(round(outcome.duration_ms / 1000, 3))
        if outcome.rows_written is not None:
            metadata[RUN.rows_written] = dg.MetadataValue.int(outcome.rows_written)
        if outcome.bytes_processed is not None:
            metadata[RUN.bytes_processed] = dg.MetadataValue.int(outcome.bytes_processed)
    if outcome.row_count is not None:
        # The key of Dagster's ``TableMetadataSet.row_count`` (that class is not exported
        # by ``dagster``), which the UI shows as the table's row count.
        metadata[TABLE.row_count] = dg.MetadataValue.int(outcome.row_count)
    if outcome.detail:
        metadata[RUN.detail] = outcome.detail.strip()
    if outcome.error_class:
        metadata[RUN.error_class] = outcome.error_class.value
        metadata[RUN.error_reason] = outcome.error_reason or ""
        metadata[RUN.retryable] = outcome.error_class is ErrorClass.TRANSIENT
    if outcome.unapplied_change:
        metadata[RUN.unapplied_change] = (
            f"{outcome.unapplied_change} on disk, not yet in the environment: this run "
            "executed the environment's version"
        )
    if outcome.failed_upstreams:
        metadata[RUN.failed_upstreams] = outcome.failed_upstreams
    return metadata


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _held_version(
    graph: SQLMeshAssetGraph, fqn: str, outcome: ModelOutcome, metadata: dict[str, Any]
) -> dict[str, str] | None:
    """Describe the version that ran when the project on disk differs from the environment.

    SQLMesh ran the environment's version, so the materialization records that version's
    code version (Dagster keeps showing the asset's definition as changed until a plan
    applies it) and that version's columns (the definition's are the disk's). Left alone
    when a translator chose other code versions than SQLMesh's data hash.
    """
    if outcome.held_code_version is None:
        return None
    if graph.specs[fqn].code_version != graph.model(fqn).data_hash:
        return None
    if outcome.held_columns:
        metadata[TABLE.column_schema] = dg.TableSchema(
            columns=[dg.TableColumn(name=n, type=t) for n, t in outcome.held_columns.items()]
        )
    return {CODE_VERSION_TAG: outcome.held_code_version}


def _replay(
    context: dg.AssetExecutionContext, outcome: ModelOutcome, leader_step: str | None
) -> None:
    for level, message, at in outcome.log:
        when = datetime.fromtimestamp(at, tz=UTC).strftime("%H:%M:%S")
        text = f"{message} (at {when}, in step '{leader_step}', which executed SQLMesh)"
        log_at(context.log, level, text)
