"""Reaching a test's Dagster instance from another process, and what the tests publish
there."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dg_sqlmesh.execution.outcomes import AuditOutcome, ModelOutcome, ModelState


def instance_ref_file(instance: dg.DagsterInstance, tmp_path: Path) -> Path:
    from dagster._serdes import serialize_value

    path = tmp_path / "instance.json"
    path.write_text(serialize_value(instance.get_ref()))
    return path


def open_instance(ref_file: str) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import deserialize_value

    return dg.DagsterInstance.from_ref(deserialize_value(Path(ref_file).read_text(), InstanceRef))


OUTCOME = ModelOutcome(
    fqn='"db"."s"."t"',
    state=ModelState.AUDIT_FAILED,
    intervals=[(0, 86_400_000)],
    audits=[AuditOutcome("not_null", True, False, {"columns": "[id]"}, 3, "SELECT 1")],
    error="audit failed",
)
