"""SQLMesh environments as Dagster deployments: a Dagster+ branch deployment runs its own
SQLMesh development environment, named after its pull request or branch, which reuses
prod's tables for every model the branch did not change."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from helpers.chain import chain_project, name
from helpers.harness import query, run_in_process

from dg_sqlmesh import SQLMeshResource, sqlmesh_definitions_factory
from dg_sqlmesh.errors import SQLMeshDefinitionError

BRANCH_VARIABLES = (
    "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT",
    "DAGSTER_CLOUD_PULL_REQUEST_ID",
    "DAGSTER_CLOUD_GIT_BRANCH",
)


@pytest.fixture
def branch(monkeypatch):
    """Set the variables Dagster+ sets in a branch deployment (none by default)."""
    for variable in BRANCH_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    def deploy(pull_request: str | None = None, git_branch: str | None = None) -> None:
        monkeypatch.setenv("DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT", "1")
        if pull_request is not None:
            monkeypatch.setenv("DAGSTER_CLOUD_PULL_REQUEST_ID", pull_request)
        if git_branch is not None:
            monkeypatch.setenv("DAGSTER_CLOUD_GIT_BRANCH", git_branch)

    return deploy


def _resource(defs: dg.Definitions) -> SQLMeshResource:
    return defs.resources["sqlmesh"]


def test_the_branch_deployment_names_the_environment_and_environment_wins(tmp_path, branch):
    project = chain_project(tmp_path / "chain", 2)
    defs = sqlmesh_definitions_factory(project_dir=str(project))
    assert (_resource(defs).environment, _resource(defs).apply_plan) == ("prod", False)

    branch(pull_request="42", git_branch="feature/orders")
    defs = sqlmesh_definitions_factory(project_dir=str(project))
    assert (_resource(defs).environment, _resource(defs).apply_plan) == ("pr_42", True)
    job = defs.resolve_job_def("sqlmesh_job")
    assert job.tags["dg_sqlmesh/environment"] == "pr_42"
    assert SQLMeshResource(project_dir=str(project)).environment == "pr_42"

    explicit = sqlmesh_definitions_factory(
        project_dir=str(project), environment="review", apply_plan=False
    )
    assert (_resource(explicit).environment, _resource(explicit).apply_plan) == ("review", False)


def test_a_branch_without_a_pull_request_is_named_after_its_branch(tmp_path, branch):
    project = chain_project(tmp_path / "chain", 2)
    branch(git_branch="Feature/New-Orders")
    resource = _resource(sqlmesh_definitions_factory(project_dir=str(project)))
    assert resource.environment == "branch_feature_new_orders"


def test_a_branch_deployment_naming_nothing_is_an_error_not_prod(tmp_path, branch):
    project = chain_project(tmp_path / "chain", 2)
    branch()
    with pytest.raises(SQLMeshDefinitionError, match="environment="):
        sqlmesh_definitions_factory(project_dir=str(project))


def _evaluated(project, view: str) -> float:
    (value,) = query(project / "db.duckdb", f"SELECT max(evaluated_at) FROM {view}")[0]
    return value.timestamp()


def test_a_branch_run_evaluates_only_what_the_change_rebuilds(tmp_path, instance, branch):
    """Prod built, then the branch changes the second model of a chain of four: the
    branch's run plans its environment, evaluates that model and its downstream, and reuses
    prod's table of the first (0 evaluations); prod is untouched."""
    project = chain_project(tmp_path / "chain", 4)
    assert run_in_process(project, instance).success
    prod = {i: _evaluated(project, name(i)) for i in range(1, 5)}

    model = project / "models" / "m02.sql"
    model.write_text(model.read_text().replace("SELECT 2 AS checked", "SELECT 20 AS checked"))
    branch(pull_request="7")
    started = time.time()
    result = run_in_process(project, instance)
    assert result.success

    assert {i: _evaluated(project, name(i)) for i in range(1, 5)} == prod  # prod untouched
    for index in (2, 3, 4):  # the change and what depends on it, in the branch's views
        assert _evaluated(project, f"chain__pr_7.m{index:02d}") > started
    # the unchanged model: the branch's view reads prod's table, not rebuilt
    assert _evaluated(project, "chain__pr_7.m01") == prod[1]
    materialized = {
        record.event_log_entry.dagster_event.asset_key.to_user_string()
        for record in instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
    }
    assert materialized == {"db/chain/m01", "db/chain/m02", "db/chain/m03", "db/chain/m04"}
