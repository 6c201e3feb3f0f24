"""EventRecorder: SQLMesh's failure reports are recorded as the right events."""

from __future__ import annotations

from sqlglot import exp
from sqlmesh.core.scheduler import EvaluateNode
from sqlmesh.utils.concurrency import NodeExecutionFailedError
from sqlmesh.utils.errors import AuditError, NodeAuditsErrors

from dg_sqlmesh import ModelState
from dg_sqlmesh.execution.console import EventRecorder
from dg_sqlmesh.execution.events import ModelFailed
from dg_sqlmesh.execution.settle import settle
from dg_sqlmesh.project.description import ModelInfo

FQN = '"db"."sch"."orders"'


MODELS = {
    FQN: ModelInfo(
        fqn=FQN, name="sch.orders", catalog="db", schema="sch", table="orders", kind="FULL"
    )
}


def _recorder() -> EventRecorder:
    return EventRecorder(MODELS, lambda level, message: None)


def _failure(cause: Exception) -> NodeExecutionFailedError:
    """As SQLMesh's DAG executor reports a failed node to ``log_failed_models``."""
    error = NodeExecutionFailedError(
        EvaluateNode(snapshot_name=FQN, interval=(0, 1), batch_index=0)
    )
    error.__cause__ = cause
    return error


class BackendError(Exception):
    """Shaped like google-api-core's errors: an ``errors`` list of the API's details."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errors = [{"reason": "backendError", "message": message}]


def test_audit_errors_are_audit_failures():
    recorder = _recorder()
    audit = AuditError(audit_name="not_null", audit_args={}, count=3, query=exp.select("1"))
    recorder.on_failed([_failure(NodeAuditsErrors([audit]))])
    (event,) = recorder.events
    assert isinstance(event, ModelFailed) and event.fqn == FQN and event.audits_failed
    assert settle(recorder.events, [FQN], MODELS)[FQN].state is ModelState.AUDIT_FAILED


def test_a_warehouse_error_with_an_errors_attribute_is_not_an_audit_failure():
    recorder = _recorder()
    recorder.on_failed([_failure(BackendError("503 Backend error: connection reset"))])
    (event,) = recorder.events
    assert isinstance(event, ModelFailed) and not event.audits_failed
    outcome = settle(recorder.events, [FQN], MODELS)[FQN]
    assert outcome.state is ModelState.FAILED
    assert outcome.error_class == "transient"


def test_a_batch_counts_the_intervals_of_its_model_and_the_engines_stats():
    """Months have no fixed length: their intervals are counted on the cron."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from sqlmesh.core.node import IntervalUnit
    from sqlmesh.core.snapshot import SnapshotId, SnapshotIdBatch
    from sqlmesh.core.snapshot.execution_tracker import QueryExecutionStats

    from dg_sqlmesh.execution.events import BatchDone

    def ms(*day: int) -> int:
        return int(datetime(*day, tzinfo=UTC).timestamp() * 1000)

    recorder = _recorder()
    for unit, span in [
        (IntervalUnit.DAY, (ms(2026, 11, 1), ms(2026, 11, 8))),
        (IntervalUnit.HOUR, (ms(2026, 11, 1), ms(2026, 11, 2))),
        (IntervalUnit.MONTH, (ms(2026, 1, 1), ms(2027, 1, 1))),
    ]:
        snapshot = SimpleNamespace(name=FQN, node=SimpleNamespace(interval_unit=unit))
        recorder.on_batch_done(snapshot, span, 0, 5, 0, 0)
    stats = QueryExecutionStats(
        snapshot_id_batch=SnapshotIdBatch(
            snapshot_id=SnapshotId(name=FQN, identifier="1"), batch_id=0
        ),
        total_rows_processed=42,
        total_bytes_processed=None,
    )
    snapshot = SimpleNamespace(name=FQN, node=SimpleNamespace(interval_unit=IntervalUnit.DAY))
    recorder.on_batch_done(snapshot, (ms(2026, 11, 1), ms(2026, 11, 2)), 1, 5, 0, 0, stats)
    batches = [e for e in recorder.events if isinstance(e, BatchDone)]
    assert [b.intervals for b in batches] == [7, 24, 12, 1]
    assert [(b.rows, b.bytes) for b in batches] == [(None, None)] * 3 + [(42, None)]
    outcome = settle(recorder.events, [FQN], MODELS)[FQN]
    assert (outcome.interval_count, outcome.rows_written, outcome.bytes_processed) == (44, 42, None)
