"""The outcome rules, on recorded event sequences: what SQLMesh said -> one state per model."""

from __future__ import annotations

import pytest

from dg_sqlmesh import ModelState
from dg_sqlmesh.execution.attempts import (
    merge,
    merge_attempts,
    not_in_environment,
    retries_exhausted,
    retry_could_not_start,
    transient_failures,
)
from dg_sqlmesh.execution.events import (
    Aborted,
    AuditFailed,
    BatchDone,
    BatchFailed,
    EvaluationStarted,
    ModelFailed,
    SelectionResolved,
    Skipped,
    SnapshotStarted,
)
from dg_sqlmesh.execution.outcomes import ModelOutcome
from dg_sqlmesh.execution.settle import NOT_CONSIDERED, settle
from dg_sqlmesh.project.description import AuditInfo, ModelInfo

DAY = 86_400_000
NOT_NULL = AuditInfo("not_null", True, {"columns": "(id)"})
ROWS = AuditInfo("number_of_rows", True, {"threshold": "10"})


def _model(name: str, *upstreams: str, audits: tuple[AuditInfo, ...] = ()) -> ModelInfo:
    schema, table = name.split(".")
    return ModelInfo(
        fqn=_fqn(name),
        name=name,
        catalog="db",
        schema=schema,
        table=table,
        kind="FULL",
        depends_on=tuple(_fqn(u) for u in upstreams),
        audits=audits,
    )


def _fqn(name: str) -> str:
    return '"db".' + ".".join(f'"{part}"' for part in name.split("."))


RAW, STG, MART, OTHER = (_fqn(n) for n in ("s.raw", "s.stg", "s.mart", "s.other"))
MODELS = {
    m.fqn: m
    for m in (
        _model("s.raw", audits=(NOT_NULL,)),
        _model("s.stg", "s.raw"),
        _model("s.mart", "s.stg"),
        _model("s.other"),
    )
}
ALL = list(MODELS)
CONSIDERED = SelectionResolved(frozenset(ALL))  # SQLMesh's run matched every model
TRANSIENT = ConnectionResetError("connection reset by peer")
PERSISTENT = ValueError("Binder Error: Referenced column v not found")


def _batches(fqn: str, n: int, first: int = 0) -> list[BatchDone]:
    return [BatchDone(fqn, ((first + i) * DAY, (first + i + 1) * DAY), i, 5) for i in range(n)]


def test_evaluated_models_are_materialized_with_their_intervals_and_audits():
    events = [
        EvaluationStarted({RAW: 2, STG: 1}),
        SnapshotStarted(RAW, (NOT_NULL,)),
        *_batches(RAW, 2),
        SnapshotStarted(STG, ()),
        *_batches(STG, 1),
    ]
    outcomes = settle(events, [RAW, STG], MODELS)
    raw = outcomes[RAW]
    assert raw.state is ModelState.MATERIALIZED
    assert raw.intervals == [(0, DAY), (DAY, 2 * DAY)]
    assert (raw.batches, raw.duration_ms) == (2, 10)
    assert [(a.name, a.passed) for a in raw.audits] == [("not_null", True)]
    assert outcomes[STG].state is ModelState.MATERIALIZED


def test_a_model_with_nothing_due_is_up_to_date_without_audits():
    outcome = settle([CONSIDERED], [RAW], MODELS)[RAW]
    assert outcome.state is ModelState.UP_TO_DATE
    assert outcome.detail == "no intervals were due"
    assert outcome.audits == []


@pytest.mark.parametrize(
    "events",
    [
        [SelectionResolved(frozenset({STG}))],  # SQLMesh matched the selection to another
        [SelectionResolved(frozenset(ALL)), SelectionResolved(frozenset({STG}))],  # the last
        [],  # SQLMesh never resolved the selection
        [SelectionResolved(frozenset({STG})), EvaluationStarted({STG: 1}), *_batches(STG, 1)],
    ],
)
def test_a_model_sqlmesh_did_not_consider_is_never_up_to_date(events):
    outcome = settle(events, [RAW, STG], MODELS)[RAW]
    assert outcome.state is ModelState.NOT_RUN
    assert outcome.detail == NOT_CONSIDERED


def test_an_aborted_run_fails_a_model_it_did_not_consider():
    events = [SelectionResolved(frozenset({STG})), EvaluationStarted({STG: 1}), Aborted(TRANSIENT)]
    outcome = settle(events, [RAW, STG], MODELS)[RAW]
    assert outcome.state is ModelState.FAILED
    assert outcome.error_class == "transient"


def test_failure_is_classified_and_downstream_is_skipped_for_it():
    events = [
        EvaluationStarted({RAW: 1, STG: 1, MART: 1, OTHER: 1}),
        BatchFailed(RAW, (0, DAY), 0),
        ModelFailed(RAW, PERSISTENT),
        Skipped(STG),
        Skipped(MART),
        *_batches(OTHER, 1),
    ]
    outcomes = settle(events, ALL, MODELS)
    assert outcomes[RAW].state is ModelState.FAILED
    assert outcomes[RAW].error_class == "persistent"
    assert outcomes[RAW].error == str(PERSISTENT)
    for skipped in (STG, MART):  # the failed model is named, through skipped ones too
        assert outcomes[skipped].state is ModelState.SKIPPED
        assert outcomes[skipped].failed_upstreams == [RAW]
        assert outcomes[skipped].detail == "skipped because upstream s.raw failed"
    assert outcomes[OTHER].state is ModelState.MATERIALIZED


def test_blocking_audit_failure_names_the_audit_that_the_environment_ran():
    events = [
        EvaluationStarted({RAW: 1}),
        SnapshotStarted(RAW, (NOT_NULL, ROWS)),  # the environment's audits, not the disk's
        ModelFailed(RAW, RuntimeError("audits failed"), audits_failed=True),
        AuditFailed(RAW, "number_of_rows", {"threshold": "10"}, 3, "SELECT 1"),
        AuditFailed(RAW, "number_of_rows", {"threshold": "99"}, 7, "SELECT 2"),  # other args
    ]
    outcome = settle(events, [RAW], MODELS)[RAW]
    assert outcome.state is ModelState.AUDIT_FAILED
    assert [(a.name, a.passed) for a in outcome.audits] == [
        ("not_null", True),
        ("number_of_rows", False),
    ]
    assert (outcome.audits[1].failing_rows, outcome.audits[1].query) == (3, "SELECT 1")


def test_non_blocking_audit_failure_keeps_the_materialization():
    warn = AuditInfo("not_null_non_blocking", False, {"columns": "(v)"})
    events = [
        EvaluationStarted({RAW: 1}),
        SnapshotStarted(RAW, (warn,)),
        *_batches(RAW, 1),
        AuditFailed(RAW, "not_null_non_blocking", {"columns": "(v)"}, 2, "SELECT v"),
    ]
    outcome = settle(events, [RAW], MODELS)[RAW]
    assert outcome.state is ModelState.MATERIALIZED
    assert [(a.name, a.blocking, a.passed) for a in outcome.audits] == [
        ("not_null_non_blocking", False, False)
    ]


def test_due_intervals_not_evaluated_are_not_run():
    outcome = settle([EvaluationStarted({RAW: 1})], [RAW], MODELS)[RAW]
    assert outcome.state is ModelState.NOT_RUN
    assert outcome.detail == "intervals were due but SQLMesh did not evaluate them"


def test_aborted_run_fails_what_it_did_not_finish_and_keeps_what_it_wrote():
    events = [
        CONSIDERED,
        EvaluationStarted({RAW: 1, STG: 3}),
        *_batches(RAW, 1),
        *_batches(STG, 1),  # one of its three batches
        Aborted(TRANSIENT),
    ]
    outcomes = settle(events, [RAW, STG, MART, OTHER], MODELS)
    assert outcomes[RAW].state is ModelState.MATERIALIZED  # all its batches were written
    partly = outcomes[STG]
    assert partly.state is ModelState.FAILED
    assert partly.intervals == [(0, DAY)]
    assert partly.error == f"SQLMesh run failed before this model completed: {TRANSIENT}"
    assert partly.error_class == "transient"
    assert outcomes[MART].state is ModelState.UP_TO_DATE  # evaluation had started: not due


def test_aborted_before_evaluating_fails_every_model():
    outcomes = settle([Aborted(PERSISTENT)], [RAW, STG], MODELS)
    assert {o.state for o in outcomes.values()} == {ModelState.FAILED}
    assert outcomes[RAW].error_class == "persistent"


def test_error_after_every_batch_was_written_keeps_the_materializations():
    events = [EvaluationStarted({RAW: 2}), *_batches(RAW, 2), Aborted(PERSISTENT)]
    assert settle(events, [RAW], MODELS)[RAW].state is ModelState.MATERIALIZED


def test_models_skipped_before_sqlmesh_restarts_its_run_are_not_reported_skipped():
    """SQLMesh restarts a run whose environment changed; the second pass evaluates them."""
    events = [
        EvaluationStarted({STG: 1}),
        Skipped(STG),  # first pass: the circuit breaker stops it
        EvaluationStarted({STG: 1}),  # the restarted pass
        SnapshotStarted(STG, ()),
        *_batches(STG, 1),
    ]
    assert settle(events, [STG], MODELS)[STG].state is ModelState.MATERIALIZED


def test_not_in_the_environment_is_never_up_to_date():
    outcome = not_in_environment(RAW, "dev")
    assert outcome.state is ModelState.NOT_RUN
    assert "not in SQLMesh environment 'dev'" in outcome.detail


# --- attempts and retries ------------------------------------------------------------------


def _failed(fqn: str, error: BaseException) -> dict[str, ModelOutcome]:
    return settle([EvaluationStarted({fqn: 1}), ModelFailed(fqn, error)], [fqn], MODELS)


def test_what_an_attempt_wrote_stands_when_its_retry_stops_before_reaching_it():
    first = settle([EvaluationStarted({RAW: 1}), *_batches(RAW, 1)], [RAW], MODELS)
    retry = settle([Aborted(TRANSIENT)], [RAW], MODELS)
    outcome = merge(first, retry)[RAW]
    assert outcome.state is ModelState.MATERIALIZED
    assert outcome.intervals == [(0, DAY)]


def test_a_retry_finding_nothing_due_after_a_partial_attempt_is_a_materialization():
    first = settle(
        [EvaluationStarted({RAW: 2}), *_batches(RAW, 1), ModelFailed(RAW, TRANSIENT)],
        [RAW],
        MODELS,
    )
    assert first[RAW].state is ModelState.FAILED
    outcome = merge(first, settle([CONSIDERED], [RAW], MODELS))[RAW]
    assert outcome.state is ModelState.MATERIALIZED
    assert outcome.error is None and outcome.error_class is None


def test_attempts_add_up_their_intervals_batches_and_durations():
    first = settle(
        [EvaluationStarted({RAW: 2}), *_batches(RAW, 1), ModelFailed(RAW, TRANSIENT)],
        [RAW],
        MODELS,
    )
    retry = settle([EvaluationStarted({RAW: 1}), *_batches(RAW, 1, first=1)], [RAW], MODELS)
    outcome = merge_attempts(first[RAW], retry[RAW])
    assert outcome.state is ModelState.MATERIALIZED
    assert outcome.intervals == [(0, DAY), (DAY, 2 * DAY)]
    assert (outcome.batches, outcome.duration_ms) == (2, 10)


@pytest.mark.parametrize(
    ("errors", "audit_failed", "retried"),
    [
        ({RAW: TRANSIENT, OTHER: TRANSIENT}, False, {RAW, OTHER}),
        ({RAW: TRANSIENT, OTHER: PERSISTENT}, False, set()),  # a retry cannot fix it all
        ({RAW: TRANSIENT}, True, set()),  # a retry would audit the audit-failed model again
        ({}, False, set()),
    ],
)
def test_transient_retry_eligibility(errors, audit_failed, retried):
    events = [EvaluationStarted({fqn: 1 for fqn in ALL})]
    events += [ModelFailed(fqn, error) for fqn, error in errors.items()]
    if audit_failed:
        events.append(ModelFailed(MART, RuntimeError("audits failed"), audits_failed=True))
    assert set(transient_failures(settle(events, ALL, MODELS))) == retried


def test_transient_failures_left_after_the_last_attempt_say_so():
    outcomes = _failed(RAW, TRANSIENT)
    retries_exhausted(outcomes, 3)
    assert outcomes[RAW].error.endswith("(transient failure, still failing after 3 attempt(s))")
    persistent = _failed(RAW, PERSISTENT)
    retries_exhausted(persistent, 3)
    assert persistent[RAW].error == str(PERSISTENT)


def test_a_retry_that_cannot_start_keeps_what_earlier_attempts_settled():
    events = [
        EvaluationStarted({RAW: 1, STG: 1, OTHER: 1}),
        BatchFailed(RAW, (0, DAY), 0),
        ModelFailed(RAW, TRANSIENT),
        Skipped(STG),
        *_batches(OTHER, 1),
    ]
    first = settle([CONSIDERED, *events], ALL, MODELS)  # s.mart: nothing due
    outcomes = retry_could_not_start(first, PERSISTENT, attempt=2)
    assert outcomes[OTHER].state is ModelState.MATERIALIZED
    assert outcomes[OTHER].intervals == [(0, DAY)]
    assert outcomes[MART].state is ModelState.UP_TO_DATE
    for fqn in (RAW, STG):
        assert outcomes[fqn].state is ModelState.FAILED
        assert outcomes[fqn].error.startswith("SQLMesh could not start attempt 2: ValueError: ")
        assert outcomes[fqn].error_class == "persistent"
    assert str(TRANSIENT) in outcomes[RAW].error
