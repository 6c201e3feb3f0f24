"""Outcomes that are final before SQLMesh's run ends, handed on the moment they are.

A model's outcome is final once SQLMesh has written and audited every batch it planned
for it (its last ``BatchDone``: SQLMesh audits a batch and records its interval before
it reports it): nothing later in the run changes it, and a retry of the run only runs
what is still missing. Failures, skips and "up to date" are settled at the end of the
run, with the rules of ``settle`` and ``attempts`` (a transient failure may still be
retried). Models whose outcome needs more than their own batches are left to the end
too (the caller's choice of ``models``): those hosting other nodes' audits, partitioned
ones (their partitions are read from SQLMesh's state after the run).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from typing import Any

from dg_sqlmesh.execution.attempts import merge_attempts
from dg_sqlmesh.execution.console import EventRecorder
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.execution.progress import LogFn
from dg_sqlmesh.execution.settle import settle
from dg_sqlmesh.project.description import ModelInfo

#: ``(SQLMesh context, outcome)``: called from SQLMesh's thread, on its connection.
OnFinal = Callable[[Any, ModelOutcome], None]


class LiveOutcomes:
    """Settles each of ``models`` as soon as SQLMesh has finished it, for ``on_final``."""

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

        def done(fqn: str) -> None:
            if fqn not in self._models or fqn in self.published:
                return
            events = list(self._recorder.by_model.get(fqn, ()))
            outcome = settle(events, [fqn], self._project_models)[fqn]
            if fqn in earlier:  # a retry finished it: what the attempts before wrote counts
                outcome = merge_attempts(copy.deepcopy(earlier[fqn]), outcome)
            if outcome.state is not ModelState.MATERIALIZED:
                return
            outcome.log = list(self._recorder.lines.get(fqn, []))
            annotate(outcome)
            try:
                self._on_final(context, outcome)
            except Exception as exc:  # noqa: BLE001 - the end of the run reports it instead
                self._log("warning", f"{fqn}: not published early ({type(exc).__name__}: {exc})")
                return
            self.published[fqn] = outcome

        self._recorder.on_model_done = done

    def stop_listening(self) -> None:
        self._recorder.on_model_done = None
