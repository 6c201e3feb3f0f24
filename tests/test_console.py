"""EventRecorder: SQLMesh's failure reports become the right model states."""

from __future__ import annotations

from sqlglot import exp
from sqlmesh.core.scheduler import EvaluateNode
from sqlmesh.utils.concurrency import NodeExecutionFailedError
from sqlmesh.utils.errors import AuditError, NodeAuditsErrors

from dg_sqlmesh import ModelState
from dg_sqlmesh.execution.console import EventRecorder
from dg_sqlmesh.project import ModelInfo

FQN = '"db"."sch"."orders"'


def _recorder() -> EventRecorder:
    model = ModelInfo(
        fqn=FQN, name="sch.orders", catalog="db", schema="sch", table="orders", kind="FULL"
    )
    return EventRecorder({FQN: model}, [FQN], lambda level, message: None)


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
    assert recorder.outcomes[FQN].state is ModelState.AUDIT_FAILED


def test_a_warehouse_error_with_an_errors_attribute_is_not_an_audit_failure():
    recorder = _recorder()
    recorder.on_failed([_failure(BackendError("503 Backend error: connection reset"))])
    outcome = recorder.outcomes[FQN]
    assert outcome.state is ModelState.FAILED
    assert outcome.error_class == "transient"


def test_models_skipped_before_sqlmesh_restarts_its_run_are_not_reported_skipped():
    """SQLMesh restarts a run whose environment changed; the second pass evaluates them."""
    from collections import namedtuple

    recorder = _recorder()
    snapshot = namedtuple("Snapshot", "name")(FQN)  # what the recorder reads of a Snapshot
    recorder.on_evaluation_start({snapshot: [(0, 1)]})
    recorder.on_skipped([FQN])  # first pass: the circuit breaker stops it
    recorder.on_evaluation_start({snapshot: [(0, 1)]})  # the restarted pass
    recorder.on_snapshot_start(snapshot)
    recorder.on_batch_done(snapshot, (0, 86_400_000), 0, 12, 1, 0)
    assert recorder.finish()[FQN].state is ModelState.MATERIALIZED
