"""Outcomes that are final before SQLMesh's run ends, handed on the moment they are.

A model's outcome is final once SQLMesh has written and audited every batch it planned
for it (its last ``BatchDone``: SQLMesh audits a batch and records its interval before
it reports it): nothing later in the run changes it, and a retry of the run only runs
what is still missing. A model SQLMesh considered and planned nothing for is up to date
as soon as SQLMesh has planned its run. Failures and skips are settled at the end of the
run, with the rules of ``settle`` and ``attempts`` (a transient failure may still be
retried). A partitioned model's partitions are read from SQLMesh's state when it is
final (``annotate``). Models whose outcome needs more than their own batches are left to
the end (the caller's choice of ``models``): those hosting other nodes' audits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from typing import Any

from dg_sqlmesh.execution.attempts import merge_attempts
from dg_sqlmesh.execution.console import EventRecorder
from dg_sqlmesh.execution.events import EvaluationStarted, SelectionResolved
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.execution.progress import LogFn
from dg_sqlmesh.execution.settle import settle
from dg_sqlmesh.project.description import ModelInfo

#: ``(SQLMesh context, outcomes) -> those published``: called from SQLMesh's thread, on its
#: connection; it may hold some back (they are then published at the end).
OnFinal = Callable[[Any, list[ModelOutcome]], Collection[str]]


class LiveOutcomes:
    """Settles each of ``models`` as soon as its outcome is final, for ``on_final``: once
    SQLMesh has written and audited its last batch, or, up to date, once SQLMesh has
    planned its run without it."""

    def __init__(
        self,
        recorder: EventRecorder,
        project_models: Mapping[str, ModelInfo],
        models: Collection[str],
        on_final: OnFinal,
        log: LogFn,
    ) -> None:
        self._recorder = recorder
        self._project_models = project_models
        self._models = frozenset(models)
        self._on_final = on_final
        self._log = log
        self.published: dict[str, ModelOutcome] = {}

    def listen(
        self,
        context: Any,
        earlier: Mapping[str, ModelOutcome],
        annotate: Callable[[ModelOutcome], None],
    ) -> None:
        """Hand on what SQLMesh finishes from now on (one attempt's run); ``earlier``: the
        outcomes of the attempts before, ``annotate`` adds what the run knew beforehand."""

        def settled(fqn: str, events: list[Any], state: ModelState) -> ModelOutcome | None:
            outcome = settle(events, [fqn], self._project_models)[fqn]
            if fqn in earlier:  # a retry: what the attempts before wrote counts
                outcome = merge_attempts(copy.deepcopy(earlier[fqn]), outcome)
            if outcome.state is not state:
                return None
            outcome.log = list(self._recorder.lines.get(fqn, []))
            annotate(outcome)
            return outcome

        def done(fqn: str) -> None:
            if fqn not in self._models or fqn in self.published:
                return
            events = list(self._recorder.by_model.get(fqn, ()))
            outcome = settled(fqn, events, ModelState.MATERIALIZED)
            if outcome is not None:
                self._hand_on(context, [outcome])

        def planned(considered: frozenset[str], batches: Mapping[str, int]) -> None:
            # Considered and nothing due: up to date, unless an earlier attempt wrote it.
            idle = [f for f in self._models if f in considered and f not in batches]
            start = [SelectionResolved(considered), EvaluationStarted(dict(batches))]
            found = [settled(f, start, ModelState.UP_TO_DATE) for f in idle]
            outcomes = [o for o in found if o is not None and o.fqn not in self.published]
            if outcomes:
                self._hand_on(context, outcomes)

        self._recorder.on_model_done = done
        self._recorder.on_run_planned = planned

    def _hand_on(self, context: Any, outcomes: list[ModelOutcome]) -> None:
        try:
            handed = self._on_final(context, outcomes)
        except Exception as exc:  # noqa: BLE001 - the end of the run reports them instead
            names = ", ".join(o.fqn for o in outcomes)
            self._log("warning", f"{names}: not published early ({type(exc).__name__}: {exc})")
            return
        self.published.update({o.fqn: o for o in outcomes if o.fqn in handed})

    def stop_listening(self) -> None:
        self._recorder.on_model_done = None
        self._recorder.on_run_planned = None
