"""The leader's work: run SQLMesh once for a Dagster run's whole selection.

Reads top to bottom: lock the environment, build the context with our event
capture, check the environment (missing? unapplied changes?), run SQLMesh's own
``run`` on exactly the selected models, retry what failed transiently, and return
one :class:`ModelOutcome` per selected model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from dg_sqlmesh._compat.sqlmesh import (
    StandaloneAuditsNotRun,
    cheap_environment_reads,
    run_standalone_audits,
)
from dg_sqlmesh.errors import (
    ErrorClass,
    SQLMeshEnvironmentError,
    classify_error,
)
from dg_sqlmesh.execution.attempts import (
    failed_plan,
    merge,
    not_in_environment,
    retries_exhausted,
    retry_could_not_start,
    startup_failure,
    transient_failures,
)
from dg_sqlmesh.execution.audited_nodes import host_audits, standalone_nodes
from dg_sqlmesh.execution.console import EventRecorder, LogFn
from dg_sqlmesh.execution.environment import (
    HeldVersion,
    PlanApplicationFailed,
    ReviewedPlan,
    environment_models,
    held_versions,
    prepare_environment,
    warn_stale_upstreams,
)
from dg_sqlmesh.execution.events import Aborted
from dg_sqlmesh.execution.intervals import IntervalTracker, RunWindow, window_bounds
from dg_sqlmesh.execution.live import LiveOutcomes, OnFinal
from dg_sqlmesh.execution.outcomes import FAILURES, ModelOutcome, ModelState
from dg_sqlmesh.execution.settle import planned_models, settle
from dg_sqlmesh.project.description import ProjectDescription

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.execution.settings import SQLMeshProject


@dataclass
class ExecutionReport:
    outcomes: dict[str, ModelOutcome]  # the selected models
    # Models the run's plan evaluated although the run did not select them.
    beyond_selection: dict[str, ModelOutcome] = field(default_factory=dict)
    unapplied_changes: dict[str, str] = field(default_factory=dict)  # fqn -> what changed
    held: dict[str, HeldVersion] = field(default_factory=dict)  # changed: what SQLMesh runs
    attempts: int = 0
    planned: bool = False


def execute(
    resource: SQLMeshProject,
    description: ProjectDescription,
    selection: Sequence[str],
    *,
    log: LogFn,
    on_execution: Callable[[], None] = lambda: None,
    audited_nodes: Mapping[str, Sequence[str]] | None = None,
    after_run: Callable[[Context, dict[str, ModelOutcome]], None] | None = None,
    window: RunWindow | None = None,
    live: Collection[str] = (),
    on_final: OnFinal | None = None,
    stop: threading.Event | None = None,
    on_planned: Callable[[], None] = lambda: None,
    reviewed: ReviewedPlan | None = None,
) -> ExecutionReport:
    """Run SQLMesh for ``selection`` (model FQNs) and settle each model's outcome.

    The caller holds the environment (``guard.hold_environment``); ``on_execution`` is
    called each time SQLMesh's ``run`` is about to start (the first attempt and retries).
    ``audited_nodes`` maps a model to the nodes without a step (external models,
    standalone audits) whose audits it reports; SQLMesh runs those with the model.
    ``after_run`` is called once SQLMesh's last attempt has run, with its context still
    open (the same warehouse connection) and the outcomes so far. It must not raise.
    ``window``: the partitions the run names (``execution.intervals``); SQLMesh then runs
    exactly their intervals, and each partitioned model's outcome says what it recorded.
    ``on_final`` receives each of the ``live`` models the moment SQLMesh has written and
    audited it (``execution.live``); ``after_run`` then sees only the others. ``stop``,
    once set, stops SQLMesh at its next batch. ``on_planned`` is called once a plan was
    applied, before SQLMesh's run. ``reviewed``: the plan the run applies, refused unless
    it is still the plan SQLMesh would apply (``environment.check_reviewed``).
    """
    key = (
        f"SQLMesh environment '{resource.environment}' of {description.project_dir} "
        f"(gateway {description.gateway})"
    )
    selected = set(selection)
    hosted = {h: list(n) for h, n in (audited_nodes or {}).items() if h in selected}
    nodes = [node for found in hosted.values() for node in found]
    standalone = standalone_nodes(description, nodes)
    models = {**description.models_by_fqn, **standalone}
    settled = [*selection, *nodes]  # what SQLMesh is asked to run, and reports on
    recorder = EventRecorder(models, log)
    recorder.stop = stop
    report = ExecutionReport(outcomes={})
    finals = LiveOutcomes(recorder, models, live if on_final else (), on_final or _ignore, log)
    merged: dict[str, ModelOutcome] = {}
    prepared = False
    runnable = list(selection)
    tracker = None
    if window is not None:
        names = {fqn: models[fqn].name for fqn in window.partitioned if fqn in models}
        tracker = IntervalTracker(window, resource.environment, names)
    last = resource.max_transient_retries
    for attempt in range(last + 1):
        report.attempts = attempt + 1
        recorder.reset()
        context = None
        try:
            context = resource.create_context(
                console=recorder.console,
                notification_targets=[recorder.notification_target],
                selector=recorder.selector,
            )
            if not prepared:
                report.unapplied_changes, report.planned = prepare_environment(
                    context, resource, description, log, reviewed
                )
                if report.planned:  # the lines above were the plan's, not the run's
                    on_planned()
                    log(
                        "info",
                        "The plan is applied (its evaluations are above); SQLMesh now runs "
                        f"the {len(selection)} selected model(s)",
                    )
                prepared = True
                changed = [f for f, c in report.unapplied_changes.items() if c == "changed"]
                report.held = held_versions(context, resource.environment, changed)
                promoted = environment_models(context, resource.environment)
                runnable = [fqn for fqn in settled if fqn in promoted]
                selected_runnable = [fqn for fqn in runnable if fqn in selected]
                warn_stale_upstreams(
                    context, resource.environment, description, selected_runnable, log
                )
            if tracker is not None:
                tracker.prepare(context, runnable, log)
            on_execution()
        except SQLMeshEnvironmentError:
            raise
        except Exception as raised:  # before SQLMesh's run: loading, connecting, planning
            plan_failure = raised if isinstance(raised, PlanApplicationFailed) else None
            exc = plan_failure.error if plan_failure else raised
            error_class, reason = classify_error(exc)
            by_model = plan_failure and failed_plan(
                settle(recorder.events, settled, models),
                exc,
                planned_models(recorder.events),
                plan_failure.unapplied,
                {fqn: m.name for fqn, m in models.items()},
            )
            if error_class is ErrorClass.TRANSIENT and attempt < last:
                retry = [f"connecting ({reason})"]
            elif merged:  # a retry: what the earlier attempts wrote stands
                log("error", f"SQLMesh could not start attempt {attempt + 1}: {exc}")
                merged = retry_could_not_start(merged, exc, attempt + 1)
                break
            elif context is None:  # the project does not load
                raise
            elif by_model:  # the plan failed on models: report each, as for a run
                log("error", f"Applying the plan failed: {type(exc).__name__}: {exc}")
                merged, report.planned = by_model, True
                break
            else:
                failed = [  # a failed plan reports its failing models to the console
                    f"{models[o.fqn].name if o.fqn in models else o.fqn}: {o.error}"
                    for o in settle(recorder.events, settled, models).values()
                    if o.state in FAILURES
                ]
                raise startup_failure(
                    exc, key, description.project_dir, (error_class, reason), attempt, failed
                ) from exc
        else:
            finals.listen(context, merged, partial(_annotate_live, report, context, tracker))
            try:
                _run_once(
                    context,
                    resource,
                    recorder,
                    runnable,
                    log,
                    standalone=set(standalone),
                    window=window,
                )
            finally:
                finals.stop_listening()
            if tracker is not None:
                tracker.record(context)
            merged = merge(merged, settle(recorder.events, settled, models))
            merged.update(finals.published)  # what the steps were told stands
            retry = transient_failures(merged)
            if not retry or attempt == last:
                if after_run is not None:
                    after_run(
                        context, {f: o for f, o in merged.items() if f not in finals.published}
                    )
                break
        finally:
            if context is not None:
                context.close()  # release the warehouse (a DuckDB file admits one writer)
        delay = resource.retry_backoff_seconds * (2**attempt)
        log(
            "warning",
            f"Transient failure of {', '.join(sorted(retry))}; retrying in {delay:.1f} s "
            f"(attempt {attempt + 2} of {last + 1})",
        )
        time.sleep(delay)
    retries_exhausted(merged, report.attempts)
    for fqn in selection:
        if fqn not in runnable:  # never claim "up to date" for what SQLMesh cannot run
            merged[fqn] = not_in_environment(fqn, resource.environment, description.project_dir)
    for fqn, outcome in merged.items():
        outcome.log = recorder.lines.get(fqn, [])
        if tracker is not None and fqn in window.partitioned:
            outcome.partitions = tracker.partitions(fqn, outcome.intervals)
    host_audits(merged, hosted)
    report.outcomes = {fqn: o for fqn, o in merged.items() if fqn in selected}
    for outcome in report.outcomes.values():
        _annotate(report, outcome)
    report.beyond_selection = {
        fqn: o
        for fqn, o in merged.items()
        if fqn not in selected and fqn in models and o.state is not ModelState.NOT_RUN
    }
    return report


def _annotate(report: ExecutionReport, outcome: ModelOutcome) -> None:
    """What the run knew of the model before SQLMesh ran it: a change the environment
    does not hold yet, and the version it runs instead."""
    fqn = outcome.fqn
    if fqn in report.unapplied_changes:
        outcome.unapplied_change = report.unapplied_changes[fqn]
    if fqn in report.held:
        outcome.held_code_version = report.held[fqn].data_hash
        outcome.held_columns = report.held[fqn].columns


def _annotate_live(
    report: ExecutionReport,
    context: Context,
    tracker: IntervalTracker | None,
    outcome: ModelOutcome,
) -> None:
    """What :func:`_annotate` adds, and for a partitioned model the partitions it recorded,
    read from SQLMesh's state the moment SQLMesh has finished the model."""
    _annotate(report, outcome)
    if tracker is not None and outcome.fqn in tracker.window.partitioned:
        with _STATE_READS:  # SQLMesh finishes models on several threads at once
            tracker.record_model(context, outcome.fqn)
        outcome.partitions = tracker.partitions(outcome.fqn, outcome.intervals)


_STATE_READS = threading.Lock()


def _ignore(context: Any, outcome: ModelOutcome) -> None:
    return None


def _run_once(
    context: Context,
    resource: SQLMeshProject,
    recorder: EventRecorder,
    selection: Sequence[str],
    log: LogFn,
    *,
    standalone: set[str],
    window: RunWindow | None = None,
) -> None:
    """Run SQLMesh on ``selection`` (models, and the ``standalone`` audits among it);
    what happened is in ``recorder.events``. With a ``window``, exactly its intervals,
    whatever the models' crons say."""
    models = [fqn for fqn in selection if fqn not in standalone]
    if not models:
        return
    audits = [fqn for fqn in selection if fqn in standalone]
    bounded = window is not None and window.bounded
    bounds = window_bounds(window) if bounded else {}
    try:
        with cheap_environment_reads(context), run_standalone_audits(context, audits):
            context.run(
                resource.environment,
                select_models=models,
                no_auto_upstream=True,
                ignore_cron=resource.ignore_cron or bounded,
                **bounds,
            )
    except StandaloneAuditsNotRun as exc:
        log("warning", f"Standalone audits {', '.join(audits)} not run: {exc}")
        _run_once(context, resource, recorder, models, log, standalone=set(), window=window)
    except Exception as exc:  # noqa: BLE001 - settled per model from the events
        log("error", f"SQLMesh stopped with an error: {exc}")
        recorder.record(Aborted(exc))
