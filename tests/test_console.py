"""EventRecorder: SQLMesh's failure reports are recorded as the right events."""

from __future__ import annotations

from sqlglot import exp
from sqlmesh.core.scheduler import EvaluateNode
from sqlmesh.utils.concurrency import NodeExecutionFailedError
from sqlmesh.utils.errors import AuditError, NodeAuditsErrors

from dg_sqlmesh import ModelState
from dg_sqlmesh.description import ModelInfo
from dg_sqlmesh.execution.console import EventRecorder
from dg_sqlmesh.execution.events import ModelFailed
from dg_sqlmesh.execution.settle import settle

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
