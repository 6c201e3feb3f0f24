"""Running real Dagster jobs over real SQLMesh projects, and reading back what happened."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from dg_sqlmesh import sqlmesh_definitions_factory


def model_assets(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    """The definitions' model assets: those with a step (external models' assets and
    EMBEDDED models' lineage-only assets left out)."""
    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.is_executable]


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(
        source, target, ignore=shutil.ignore_patterns(".cache", "logs", "*.duckdb", "*.wal")
    )
    return target


def plan_project(project: Path, environment: str = "prod", *, skip_backfill: bool = True) -> None:
    """Create the environment with SQLMesh itself, leaving all intervals to a later run."""
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    from dg_sqlmesh.project.config import load_config

    set_console(NoopConsole())
    config, gateway = load_config(project, None)
    context = Context(paths=[project], config=config, gateway=gateway)
    try:
        context.plan(
            environment,
            auto_apply=True,
            no_prompts=True,
            skip_backfill=skip_backfill,
            include_unmodified=environment != "prod",
        )
    finally:
        context.close()


def run_in_process(
    project: Path,
    instance: dg.DagsterInstance,
    *,
    select: Iterable[str] | None = None,
    **options,
) -> dg.ExecuteInProcessResult:
    """Run ``sqlmesh_job`` (or a selection of asset key strings) with the in-process executor."""
    defs = sqlmesh_definitions_factory(project_dir=str(project), **options)
    job = defs.resolve_job_def("sqlmesh_job")
    selection = [dg.AssetKey.from_user_string(s) for s in select] if select else None
    return job.execute_in_process(
        instance=instance, asset_selection=selection, raise_on_error=False
    )


@contextmanager
def _env(project: Path, options: dict):
    saved = {k: os.environ.get(k) for k in ("DG_SQLMESH_TEST_PROJECT", "DG_SQLMESH_TEST_OPTIONS")}
    os.environ["DG_SQLMESH_TEST_PROJECT"] = str(project)
    os.environ["DG_SQLMESH_TEST_OPTIONS"] = json.dumps(options)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def multiprocess_config(max_concurrent: int) -> dict:
    """The multiprocess mode of sqlmesh_executor with a concurrency cap, its steps started
    from a forkserver that has imported Dagster, SQLMesh and the tests' definitions."""
    preload = ["dagster", "sqlmesh", "dg_sqlmesh", "helpers.defs_from_env"]
    multiprocess = {
        "max_concurrent": max_concurrent,
        "start_method": {"forkserver": {"preload_modules": preload}},
    }
    return {"execution": {"config": {"multiprocess": multiprocess}}}


def run_multiprocess(
    project: Path,
    instance: dg.DagsterInstance,
    *,
    select: Iterable[str] | None = None,
    max_concurrent: int = 4,
    **options,
) -> dg.ExecutionResult:
    """Run ``sqlmesh_job`` with Dagster's default multiprocess executor (one process a step)."""
    from helpers.defs_from_env import sqlmesh_job
    from helpers.reconstruct import reconstructable_job

    with _env(project, options):
        return dg.execute_job(
            reconstructable_job(sqlmesh_job),
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(s) for s in select] if select else None,
            run_config={
                "execution": {"config": {"multiprocess": {"max_concurrent": max_concurrent}}}
            },
            raise_on_error=False,
        )


def _materializations(instance: dg.DagsterInstance, run_id: str) -> list:
    """The run's materialization events, in order."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return [r.event_log_entry.dagster_event.event_specific_data.materialization for r in records]


def materialization_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """Asset key string -> materialization metadata (``MetadataValue`` objects), one run."""
    return {
        mat.asset_key.to_user_string(): dict(mat.metadata)
        for mat in _materializations(instance, run_id)
    }


def partition_materializations(
    instance: dg.DagsterInstance, run_id: str
) -> dict[str, dict[str, dict]]:
    """Asset key string -> partition -> materialization metadata (raw values), one run."""
    found: dict[str, dict[str, dict]] = {}
    for mat in _materializations(instance, run_id):
        if mat.partition is not None:
            found.setdefault(mat.asset_key.to_user_string(), {})[mat.partition] = {
                k: v.value for k, v in mat.metadata.items()
            }
    return found


def materialized(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """Asset key string -> materialization metadata (raw values) for one run."""
    return {
        key: {k: v.value for k, v in metadata.items()}
        for key, metadata in materialization_metadata(instance, run_id).items()
    }


def observed(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """Asset key string -> observation metadata (raw values) for one run."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION
    ).records
    found = {}
    for record in records:
        observation = record.event_log_entry.dagster_event.event_specific_data.asset_observation
        found[observation.asset_key.to_user_string()] = {
            k: v.value for k, v in observation.metadata.items()
        }
    return found


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[tuple[str, str], dict]:
    """(asset key string, check name) -> {passed, severity, metadata} for one run."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    found = {}
    for record in records:
        ev = record.event_log_entry.dagster_event.event_specific_data
        found[(ev.asset_key.to_user_string(), ev.check_name)] = {
            "passed": ev.passed,
            "severity": ev.severity.value if ev.severity else None,
            "metadata": {k: v.value for k, v in ev.metadata.items()},
        }
    return found


def step_failures(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> failure message (with the user error text) for one run."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    found = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data
        text = data.error.to_string() if data and data.error else event.message or ""
        desc = getattr(getattr(data, "user_failure_data", None), "description", None)
        found[event.step_key] = f"{desc or ''}\n{text}"
    return found


def step_states(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    stats = instance.get_run_step_stats(run_id)
    return {s.step_key: s.status.value for s in stats}


def query(db_path: Path, sql: str):
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def executions(db_path: Path) -> int:
    """SQLMesh executions recorded by the generated projects' before_all statement."""
    return query(db_path, "SELECT COUNT(*) FROM _meta.executions")[0][0]
