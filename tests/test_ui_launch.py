"""Runs launched the way the Dagster UI launches them: the implicit asset job of the code
location, its default executor, no run config."""

from __future__ import annotations

import dagster as dg
from helpers.harness import _env, executions, materialized, step_failures
from helpers.reconstruct import ui_job

from dg_sqlmesh.definitions.assets import default_pool
from dg_sqlmesh.metadata import RUN


def test_materialize_all_from_the_ui_executes_sqlmesh_once_in_one_process(generated, instance):
    project = generated(8)
    db = project / "db.duckdb"
    before = executions(db)
    with _env(project, {}):
        result = dg.execute_job(ui_job(), instance=instance, raise_on_error=False)
    assert result.success, step_failures(instance, result.run_id)
    assert executions(db) - before == 1
    shown = materialized(instance, result.run_id)
    assert len(shown) == 8 and {m[RUN.state] for m in shown.values()} == {"materialized"}
    starts = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.STEP_START
    ).records
    assert len(starts) == 8
    assert len({r.event_log_entry.dagster_event.pid for r in starts}) == 1  # no process per step


def test_a_subset_from_the_ui_can_still_choose_the_multiprocess_executor(generated, instance):
    project = generated(8)
    db = project / "db.duckdb"
    before = executions(db)
    from projects.generate import project_models

    chosen = [dg.AssetKey(["db", *m["name"].split(".")]) for m in project_models(8)[:3]]
    with _env(project, {}):
        result = dg.execute_job(
            ui_job(),
            instance=instance,
            asset_selection=chosen,
            run_config={"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}},
            raise_on_error=False,
        )
    assert result.success, step_failures(instance, result.run_id)
    assert executions(db) - before == 1
    assert set(materialized(instance, result.run_id)) == {k.to_user_string() for k in chosen}
    starts = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.STEP_START
    ).records
    assert len({r.event_log_entry.dagster_event.pid for r in starts}) == 3  # a process per step


def test_every_sqlmesh_op_of_the_ui_job_is_in_the_environment_pool(generated):
    from dg_sqlmesh import sqlmesh_definitions_factory

    project = generated(4)
    job = sqlmesh_definitions_factory(
        project_dir=str(project)
    ).resolve_implicit_global_asset_job_def()
    pools = {node.definition.pool for node in job.graph.nodes}
    assert pools == {default_pool("prod")} == {"sqlmesh_prod"}
