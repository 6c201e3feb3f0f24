"""Shared execution and honest outcomes, on real DuckDB files and real Dagster runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.generated_models import key, pick_with_children, step
from helpers.harness import (
    check_evaluations,
    executions,
    materialized,
    query,
    run_in_process,
    run_multiprocess,
    step_failures,
)
from projects.generate import project_models

from dg_sqlmesh.metadata import AUDIT, DG, RUN

N = 12


def assert_honest(instance, run_id: str, db: Path) -> dict[str, dict]:
    """Every asset Dagster shows as materialized has its table, with rows, in the warehouse."""
    shown = materialized(instance, run_id)
    for asset_key, metadata in shown.items():
        _, schema, table = asset_key.split("/")
        assert metadata[RUN.state] in {"materialized", "up_to_date"}, asset_key
        count = query(db, f"SELECT COUNT(*) FROM {schema}.{table}")[0][0]
        assert count > 0, f"{asset_key} shown materialized but holds no rows"
    return shown


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_one_execution_per_run_full_selection(generated, instance, executor):
    project = generated(N)
    db = project / "db.duckdb"
    before = executions(db)
    run = run_in_process if executor == "in_process" else run_multiprocess
    result = run(project, instance)
    assert result.success
    assert executions(db) - before == 1
    shown = assert_honest(instance, result.run_id, db)
    assert set(shown) == {key(m["name"]) for m in project_models(N)}
    assert all(m[RUN.state] == "materialized" for m in shown.values())


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_one_execution_per_run_subset_runs_only_the_subset(generated, instance, executor):
    models = project_models(N)
    project = generated(N)
    db = project / "db.duckdb"
    subset = [m["name"] for m in models if m["layer"] == 0][:2]
    before = executions(db)
    run = run_in_process if executor == "in_process" else run_multiprocess
    result = run(project, instance, select=[key(n) for n in subset])
    assert result.success
    assert executions(db) - before == 1
    shown = assert_honest(instance, result.run_id, db)
    assert set(shown) == {key(n) for n in subset}
    # models outside the selection were not evaluated: their tables are still empty
    outside = next(m for m in models if m["name"] not in subset and m["kind"] == "FULL")
    schema, table = outside["name"].split(".")
    assert query(db, f"SELECT COUNT(*) FROM {schema}.{table}")[0][0] == 0


def test_thirty_models_multiprocess_all_data_there(generated, instance):
    models = project_models(30)
    project = generated(30)
    db = project / "db.duckdb"
    before = executions(db)
    result = run_multiprocess(project, instance, max_concurrent=4)
    assert result.success
    assert executions(db) - before == 1
    shown = assert_honest(instance, result.run_id, db)
    assert len(shown) == 30
    for m in models:
        schema, table = m["name"].split(".")
        assert query(db, f"SELECT COUNT(*) FROM {schema}.{table}")[0][0] > 0, m["name"]


def test_nothing_due_is_a_no_op_that_audits_nothing_again(generated, instance):
    project = generated(N)
    first = run_in_process(project, instance)
    assert first.success
    second = run_in_process(project, instance)
    assert second.success
    shown = materialized(instance, second.run_id)
    assert len(shown) == N
    assert all(m[RUN.state] == "up_to_date" for m in shown.values())
    assert all(m[DG.no_op] is True for m in shown.values())
    # no audit ran: each check shows the first run's result, marked as carried over from it
    carried = check_evaluations(instance, second.run_id)
    assert set(carried) == set(check_evaluations(instance, first.run_id))
    assert {c["metadata"][DG.carried_over_from_run] for c in carried.values()} == {first.run_id}


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_runtime_failure_stops_downstream_and_keeps_siblings(generated, instance, executor):
    models = project_models(N)
    failing, below, others = pick_with_children(models)
    project = generated(N, failing={failing: "runtime_error"}, plan=True)
    db = project / "db.duckdb"
    before = executions(db)
    run = run_in_process if executor == "in_process" else run_multiprocess
    result = run(project, instance)
    assert not result.success
    assert executions(db) - before == 1  # a SQL error is persistent: no retry
    failures = step_failures(instance, result.run_id)
    assert step(failing) in failures
    assert "dg_sqlmesh generated failure" in failures[step(failing)]
    classes = {
        e.step_key: e.step_failure_data.user_failure_data.metadata[RUN.error_class].value
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.user_failure_data
    }
    assert classes[step(failing)] == "persistent"
    shown = assert_honest(instance, result.run_id, db)
    assert key(failing) not in shown
    assert not {key(n) for n in below} & set(shown)
    assert {key(n) for n in others} <= set(shown)


def test_no_transient_retry_while_a_blocking_audit_failed(generated, instance):
    """A retry would evaluate and audit the audit-failed model again: none is made."""
    models = project_models(N)
    audited, _, others = pick_with_children(models)
    flaky = next(m["name"] for m in models if m["name"] in others and m["layer"] >= 1)
    project = generated(N, failing={audited: "blocking_audit", flaky: "transient_error"})
    db = project / "db.duckdb"
    before = executions(db)
    result = run_in_process(project, instance)
    assert not result.success
    assert executions(db) - before == 1
    failures = step_failures(instance, result.run_id)
    assert "connection reset by peer" in failures[step(flaky)]
    assert step(audited) in failures
    shown = assert_honest(instance, result.run_id, db)
    assert key(audited) not in shown and key(flaky) not in shown


def test_error_after_every_model_ran_keeps_their_materializations(generated, instance):
    """SQLMesh raising once all batches are written (here in ``after_all``) undoes nothing."""
    from helpers.harness import plan_project

    project = generated(N, plan=False)
    config = project / "config.yaml"
    fail_when_run = (  # the plan is execution 1 and must pass; the run is execution 2
        "SELECT CASE WHEN (SELECT COUNT(*) FROM _meta.executions) > 1 "
        "THEN error('dg_sqlmesh after_all failure') END"
    )
    config.write_text(config.read_text() + f'after_all:\n  - "{fail_when_run}"\n')
    plan_project(project)
    db = project / "db.duckdb"
    result = run_in_process(project, instance)
    shown = assert_honest(instance, result.run_id, db)
    assert len(shown) == N
    assert all(m[RUN.state] == "materialized" for m in shown.values())
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("dg_sqlmesh after_all failure" in m for m in logs)


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_checks_selected_without_their_asset_write_nothing(
    generated, instance, monkeypatch, executor
):
    """A model's checks executed alone never evaluate the model (that would write it).

    The job selects one model's check without its asset, and an unrelated asset; the
    checked model was never materialized, so its audits have nothing to read.
    """
    import json

    import dagster as dg
    from helpers.defs_from_env import checks_and_assets_job
    from helpers.reconstruct import reconstructable_job

    models = project_models(N)
    audited, _, others = pick_with_children(models)
    other = sorted(others)[0]
    project = generated(N)
    db = project / "db.duckdb"
    before = executions(db)
    monkeypatch.setenv("DG_SQLMESH_TEST_PROJECT", str(project))
    monkeypatch.setenv("DG_SQLMESH_TEST_CHECKS", json.dumps([[key(audited), "not_null"]]))
    monkeypatch.setenv("DG_SQLMESH_TEST_ASSETS", json.dumps([key(other)]))
    if executor == "in_process":
        result = checks_and_assets_job().execute_in_process(instance=instance, raise_on_error=False)
    else:  # every step process rebuilds the job from the environment
        result = dg.execute_job(
            reconstructable_job(checks_and_assets_job), instance=instance, raise_on_error=False
        )
    assert not result.success
    failures = step_failures(instance, result.run_id)
    assert "no data in the environment yet: materialize it" in failures[step(audited)]
    assert executions(db) - before == 1  # for the selected asset alone
    assert set(materialized(instance, result.run_id)) == {key(other)}
    assert query(db, f"SELECT COUNT(*) FROM {audited}")[0][0] == 0


def test_failure_metadata_classifies_the_error(generated, instance):
    models = project_models(N)
    failing, _, _ = pick_with_children(models)
    project = generated(N, failing={failing: "runtime_error"})
    result = run_in_process(project, instance)
    event = next(e for e in result.all_events if e.is_step_failure and e.step_key == step(failing))
    metadata = event.step_failure_data.user_failure_data.metadata
    assert metadata[RUN.error_class].value == "persistent"
    assert metadata[RUN.retryable].value is False
    assert metadata[RUN.state].value == "failed"


def test_blocking_audit_failure(generated, instance):
    models = project_models(N)
    failing, below, others = pick_with_children(models)
    project = generated(N, failing={failing: "blocking_audit"})
    db = project / "db.duckdb"
    result = run_in_process(project, instance)
    assert not result.success
    shown = assert_honest(instance, result.run_id, db)
    assert key(failing) not in shown
    assert not {key(n) for n in below} & set(shown)
    assert {key(n) for n in others} <= set(shown)
    checks = check_evaluations(instance, result.run_id)
    failed = {k: v for k, v in checks.items() if k[0] == key(failing) and not v["passed"]}
    assert len(failed) == 1
    (check,) = failed.values()
    assert check["severity"] == "ERROR"
    assert check["metadata"][AUDIT.audit] == "number_of_rows"
    assert check["metadata"][AUDIT.failing_rows] >= 1
    assert "threshold" in check["metadata"][AUDIT.audit_args]
    assert "SELECT" in check["metadata"][AUDIT.query].upper()


def test_checks_report_the_audits_the_environment_ran(generated, instance):
    """An audit edited on disk but not applied: its failure is not shown as a pass."""
    models = project_models(N)
    failing, _, _ = pick_with_children(models)
    project = generated(N, failing={failing: "blocking_audit"})  # planned with the audit
    schema, table = failing.split(".")
    path = project / "models" / schema / f"{table}.sql"
    path.write_text(path.read_text().replace("threshold := 1000000000", "threshold := 0"))
    result = run_in_process(project, instance)
    assert not result.success
    failures = step_failures(instance, result.run_id)
    assert "number_of_rows" in failures[step(failing)]
    checks = check_evaluations(instance, result.run_id)
    # The disk's number_of_rows(threshold := 0) never ran, so it has no result at all.
    assert (key(failing), "number_of_rows") not in checks
    assert all(v["passed"] for k, v in checks.items() if k[0] == key(failing))


def test_non_blocking_audit_failure(generated, instance):
    models = project_models(N)
    failing, below, _ = pick_with_children(models)
    project = generated(N, failing={failing: "non_blocking_audit"})
    db = project / "db.duckdb"
    result = run_in_process(project, instance)
    assert result.success
    shown = assert_honest(instance, result.run_id, db)
    assert key(failing) in shown
    assert {key(n) for n in below} <= set(shown)
    checks = check_evaluations(instance, result.run_id)
    failed = {k: v for k, v in checks.items() if not v["passed"]}
    assert list(failed) == [(key(failing), "number_of_rows_non_blocking")]
    assert failed[(key(failing), "number_of_rows_non_blocking")]["severity"] == "WARN"


def test_progress_reaches_the_run_log_while_sqlmesh_runs(tmp_path, instance, monkeypatch):
    """Each batch's line is in the run log while SQLMesh is still evaluating the next ones
    (written within about a second), not only when the leader step ends."""
    from datetime import UTC, datetime, timedelta

    from helpers.harness import plan_project
    from helpers.reliability import (
        BATCH_SECONDS_ENV,
        duckdb_connection,
        write_slow_project,
    )
    from helpers.reliability import run_in_process as run_resource

    start = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    project = write_slow_project(
        tmp_path / "p", duckdb_connection(tmp_path / "db.duckdb"), start=start
    )
    plan_project(project)
    monkeypatch.setenv(BATCH_SECONDS_ENV, "1")
    result = run_resource({"project_dir": str(project)}, instance, select=["db/src/events_a"])
    assert result.success
    logs = instance.all_logs(result.run_id)
    first_batch = min(
        r.timestamp for r in logs if r.user_message and "src.events_a: batch 1/" in r.user_message
    )
    (ended,) = [
        r.timestamp
        for r in logs
        if r.dagster_event is not None and r.dagster_event.event_type_value == "STEP_SUCCESS"
    ]
    assert ended - first_batch > 2.5  # 4 more batches of 1 s ran after the first was logged


def test_transient_lock_is_retried_and_succeeds(generated, instance):
    """Another process holds the DuckDB file for a few seconds: retried, then success."""
    project = generated(N)
    db = project / "db.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(4)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    result = run_in_process(project, instance)
    holder.wait()
    assert result.success
    warnings = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("Transient failure" in m for m in warnings)
    assert_honest(instance, result.run_id, db)


def test_selected_model_with_stale_upstream_runs_alone_and_warns(generated, instance):
    """Dagster's selection is authoritative: the unselected upstream is not run, but named."""
    models = project_models(N)
    child = next(m for m in models if m["layer"] == 1)
    project = generated(N)
    db = project / "db.duckdb"
    result = run_in_process(project, instance, select=[key(child["name"])])
    assert result.success
    assert set(materialized(instance, result.run_id)) == {key(child["name"])}
    for parent in child["parents"]:
        schema, table = parent.split(".")
        if next(m for m in models if m["name"] == parent)["kind"] != "VIEW":
            assert query(db, f"SELECT COUNT(*) FROM {schema}.{table}")[0][0] == 0
    warnings = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("has missing intervals" in w and child["name"] in w for w in warnings)


def test_model_missing_from_environment_is_not_claimed_up_to_date(generated, instance):
    """A model on disk but not in the environment: never a materialization, and a clear why."""
    project = generated(N)
    new = project / "models" / "gen_l0" / "model_new.sql"
    new.write_text(
        "MODEL (name gen_l0.model_new, kind FULL);\nSELECT 1 AS id, DATE '2026-11-20' AS ds, 1 AS v"
    )
    result = run_in_process(project, instance)
    assert not result.success
    shown = materialized(instance, result.run_id)
    assert key("gen_l0.model_new") not in shown
    assert len(shown) == N
    failure = step_failures(instance, result.run_id)[step("gen_l0.model_new")]
    assert "not in SQLMesh environment 'prod'" in failure
    warnings = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("differs from environment 'prod'" in w and "model_new" in w for w in warnings)


def test_unapplied_change_is_named_in_log_and_metadata(generated, instance):
    models = project_models(N)
    target = next(m for m in models if m["layer"] == 0)
    project = generated(N)
    path = project / "models" / target["schema"] / (target["name"].split(".")[1] + ".sql")
    path.write_text(path.read_text().rstrip().rstrip(";") + "\n-- edited\n")
    path.write_text(path.read_text().replace("SELECT", "SELECT /* edited */", 1))
    result = run_in_process(project, instance)
    assert result.success
    shown = materialized(instance, result.run_id)
    assert "not yet in the environment" in shown[key(target["name"])][RUN.unapplied_change]
    others = [m["name"] for m in models if m["name"] != target["name"]]
    assert all(RUN.unapplied_change not in shown[key(n)] for n in others)
    warnings = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("differs from environment 'prod'" in w and target["name"] in w for w in warnings)
