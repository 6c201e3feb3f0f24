"""Live runs: each model reaches Dagster the moment SQLMesh has written and audited it.

A sequential chain of real SQLMesh models on DuckDB, each about half a second of work,
each table recording when SQLMesh evaluated it. Under the default executor and under
the multiprocess executor, a model's materialization is recorded while SQLMesh is still
working on the models after it, never before its own data is written and audited, and a
blocking audit failing in the middle of the chain still fails that model and skips the
rest.
"""

from __future__ import annotations

import pytest
from helpers.chain import chain_project, evaluated_at, key, materialized_at
from helpers.harness import run_in_process, run_multiprocess, step_failures, step_states

from dg_sqlmesh.execution.coordinator import recorded_executions

LENGTH = 8


def run(project, instance, executor):  # noqa: ANN001, ANN201
    if executor == "in_process":
        return run_in_process(project, instance)
    return run_multiprocess(project, instance, max_concurrent=2)


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_each_model_is_materialized_while_sqlmesh_works_on_the_next(tmp_path, instance, executor):
    project = chain_project(tmp_path / "chain", LENGTH)
    result = run(project, instance, executor)
    assert result.success
    assert len(recorded_executions(instance, result.run_id)) == 1
    recorded = materialized_at(instance, result.run_id)
    assert set(recorded) == {key(i) for i in range(1, LENGTH + 1)}
    for index in range(1, LENGTH + 1):
        # never before SQLMesh evaluated it (and so before it was written and audited)
        assert recorded[key(index)] > evaluated_at(project, index)
    # recorded before SQLMesh began the last model: most of the chain in one process; in
    # separate processes the leader's own model (its step lasts until SQLMesh ends, and
    # Dagster starts a step once the steps it depends on have ended)
    last = evaluated_at(project, LENGTH)
    early = [i for i in range(1, LENGTH) if recorded[key(i)] < last]
    expected = LENGTH // 2 if executor == "in_process" else 1
    assert len(early) >= expected, (early, recorded, last)


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_a_blocking_audit_failing_mid_chain_fails_that_model_and_skips_the_rest(
    tmp_path, instance, executor
):
    failing = 4
    project = chain_project(tmp_path / "chain", LENGTH, failing_audit_at=failing)
    result = run(project, instance, executor)
    assert not result.success
    recorded = materialized_at(instance, result.run_id)
    assert set(recorded) == {key(i) for i in range(1, failing)}
    # the models before it were live: recorded before SQLMesh began the one before it
    assert recorded[key(1)] < evaluated_at(project, failing - 1)
    assert "audit" in step_failures(instance, result.run_id)["db__chain__m04"].lower()
    states = step_states(instance, result.run_id)
    downstream = [f"db__chain__m{i:02d}" for i in range(failing + 1, LENGTH + 1)]
    assert all(states.get(step) in (None, "SKIPPED") for step in downstream), states
