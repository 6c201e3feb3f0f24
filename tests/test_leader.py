"""The leader/non-leader split, observed through behaviour, and re-execution."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml
from helpers.generated_models import key, pick_with_children, step
from helpers.harness import (
    executions,
    materialized,
    run_multiprocess,
    step_failures,
)
from projects.generate import project_models

N = 8

CONFIG_PY = """
import os
from pathlib import Path

import yaml
from sqlmesh.core.config import Config

with open(os.environ["DG_SQLMESH_CONFIG_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")
config = Config.model_validate(yaml.safe_load((Path(__file__).parent / "settings.yml").read_text()))
"""


def instrument(project: Path, log: Path, monkeypatch) -> None:
    """Replace config.yaml by a config.py that logs each load (one per SQLMesh context)."""
    settings = yaml.safe_load((project / "config.yaml").read_text())
    (project / "config.yaml").unlink()
    (project / "settings.yml").write_text(yaml.safe_dump(settings))
    (project / "config.py").write_text(CONFIG_PY)
    monkeypatch.setenv("DG_SQLMESH_CONFIG_LOG", str(log))  # step processes inherit it


def test_only_the_leader_builds_a_sqlmesh_context(generated, instance, tmp_path, monkeypatch):
    project = generated(N, plan=False)
    log = tmp_path / "config_loads.log"
    instrument(project, log, monkeypatch)
    from helpers.harness import plan_project

    plan_project(project)
    from dg_sqlmesh import SQLMeshResource

    SQLMeshResource(project_dir=str(project)).describe()  # the description cache, as a deploy would
    log.write_text("")
    result = run_multiprocess(project, instance, max_concurrent=2)
    assert result.success
    loads = log.read_text().split()
    assert len(loads) == 1, f"{len(loads)} SQLMesh contexts built for one run: {loads}"
    assert loads[0] != str(os.getpid())  # built in a step process, not in the launcher
    assert len(materialized(instance, result.run_id)) == N


def test_reexecution_from_failure_runs_only_the_reselected_models(generated, instance):
    models = project_models(12)
    failing, below, others = pick_with_children(models)
    project = generated(12, failing={failing: "runtime_error"})
    db = project / "db.duckdb"
    first = run_multiprocess(project, instance)
    assert not first.success
    before = executions(db)

    from helpers.defs_from_env import sqlmesh_job
    from helpers.harness import _env

    with _env(project, {}):
        again = dg.execute_job(
            dg.reconstructable(sqlmesh_job),
            instance=instance,
            reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, instance),
            raise_on_error=False,
        )
    assert not again.success
    assert executions(db) - before == 1
    # the siblings that succeeded the first time are not run again
    assert not set(materialized(instance, again.run_id)) & {key(n) for n in others}
    assert step(failing) in step_failures(instance, again.run_id)
