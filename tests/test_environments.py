"""SQLMesh environments as Dagster deployments: a Dagster+ branch deployment runs its own
SQLMesh development environment, named after its pull request or branch, which reuses
prod's tables for every model the branch did not change."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest
from helpers.chain import chain_project, evaluated_at, name
from helpers.harness import plan_project, query, run_in_process

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


def _janitor(project, instance, **config):  # noqa: ANN001, ANN003, ANN202
    defs = sqlmesh_definitions_factory(project_dir=str(project))
    return defs.resolve_job_def("sqlmesh_janitor").execute_in_process(
        instance=instance,
        run_config={"ops": {"run_sqlmesh_janitor": {"config": config}}},
        raise_on_error=False,
    )


def _schemas(project) -> set[str]:  # noqa: ANN001
    rows = query(project / "db.duckdb", "SELECT schema_name FROM duckdb_schemas()")
    return {row[0] for row in rows}


def _tables(project) -> set[str]:  # noqa: ANN001
    rows = query(
        project / "db.duckdb", "SELECT schema_name || '.' || table_name FROM duckdb_tables()"
    )
    return {row[0] for row in rows}


def test_the_janitor_removes_a_closed_branch_environment_and_leaves_prod_intact(
    tmp_path, instance, branch, monkeypatch
):
    project = chain_project(tmp_path / "chain", 3)
    assert run_in_process(project, instance).success
    prod = {i: _evaluated(project, name(i)) for i in range(1, 4)}
    prod_tables = _tables(project)
    model = project / "models" / "m02.sql"
    model.write_text(model.read_text().replace("SELECT 2 AS checked", "SELECT 20 AS checked"))
    branch(pull_request="9")
    assert run_in_process(project, instance).success
    assert "chain__pr_9" in _schemas(project)
    branch_tables = _tables(project) - prod_tables
    assert branch_tables  # the changed model and its downstream, rebuilt for the branch

    for variable in BRANCH_VARIABLES:  # back in the main deployment, the pull request closed
        monkeypatch.delenv(variable, raising=False)
    model.write_text(model.read_text().replace("SELECT 20 AS checked", "SELECT 2 AS checked"))
    result = _janitor(project, instance, invalidate_environment="pr_9", ignore_ttl=True)
    assert result.success
    assert "chain__pr_9" not in _schemas(project)
    assert not branch_tables & _tables(project)  # the branch's own tables dropped
    assert prod_tables <= _tables(project)
    assert {i: _evaluated(project, name(i)) for i in range(1, 4)} == prod
    (output,) = [
        record.event_log_entry.dagster_event
        for record in instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
        ).records
    ]
    removed = output.event_specific_data.metadata
    assert removed["dg_sqlmesh/removed_environments"].value == ["pr_9"]
    assert removed["dg_sqlmesh/dropped_objects"].value >= len(branch_tables)


def test_the_janitor_never_invalidates_prod(tmp_path, instance):
    project = chain_project(tmp_path / "chain", 1)
    result = _janitor(project, instance, invalidate_environment="prod")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "never invalidates prod" in failure.step_failure_data.error.message
    assert query(project / "db.duckdb", f"SELECT count(*) FROM {name(1)}") == [(0,)]


def test_the_janitor_waits_for_a_run_of_the_environment(tmp_path, instance):
    """A janitor launched while a run of the environment executes SQLMesh waits for it,
    and starts its work only after that run has released the environment."""
    project = chain_project(tmp_path / "chain", 4)
    results = {}
    runner = threading.Thread(target=lambda: results.update(run=run_in_process(project, instance)))
    runner.start()
    deadline = time.time() + 60
    while time.time() < deadline and not _executing(instance):
        time.sleep(0.05)
    assert _executing(instance), "the run never took the environment"
    janitor = _janitor(project, instance)
    runner.join()
    assert results["run"].success and janitor.success
    run_end = instance.get_run_stats(results["run"].run_id).end_time
    logs = [
        (record.event_log_entry.timestamp, record.event_log_entry.user_message)
        for record in instance.get_records_for_run(janitor.run_id).records
    ]
    assert any("Waiting for" in message for _, message in logs), logs
    (finished,) = [at for at, message in logs if message.startswith("SQLMesh janitor:")]
    assert finished > evaluated_at(project, 4)
    assert run_end is not None


def _executing(instance) -> bool:  # noqa: ANN001
    from dg_sqlmesh.execution.guard import EXECUTING_TAG

    for run in instance.get_runs():
        if run.tags.get(EXECUTING_TAG, "").startswith("prod@"):
            return True
    return False


def _plan_review(project, instance, environment: str):  # noqa: ANN001, ANN202
    defs = sqlmesh_definitions_factory(project_dir=str(project), environment=environment)
    result = defs.resolve_job_def("sqlmesh_plan").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert result.success
    (output,) = [
        record.event_log_entry.dagster_event.event_specific_data.metadata
        for record in instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
        ).records
    ]
    return result.run_id, output


def _apply(project, instance, environment: str, review_run: str):  # noqa: ANN001, ANN202
    defs = sqlmesh_definitions_factory(project_dir=str(project), environment=environment)
    return defs.resolve_job_def("sqlmesh_job").execute_in_process(
        instance=instance, tags={"dg_sqlmesh/reviewed_plan": review_run}, raise_on_error=False
    )


def test_a_reviewed_plan_is_applied_as_reviewed_and_refused_after_a_further_edit(
    tmp_path, instance
):
    project = chain_project(tmp_path / "chain", 4)
    assert run_in_process(project, instance).success
    prod = {i: _evaluated(project, name(i)) for i in range(1, 5)}
    model = project / "models" / "m02.sql"
    model.write_text(model.read_text().replace("SELECT 2 AS checked", "SELECT 20 AS checked"))

    review_run, output = _plan_review(project, instance, "review")
    review = output["dg_sqlmesh/plan_review"].value
    assert review["changes"] == {
        '"db"."chain"."m02"': "breaking",
        '"db"."chain"."m03"': "indirect-breaking",
        '"db"."chain"."m04"': "indirect-breaking",
    }
    assert set(review["backfill"]) == set(review["changes"])
    markdown = output["dg_sqlmesh/plan"].value
    assert "| chain.m02 | breaking |" in markdown and "sqlmesh -p" in markdown
    assert "review" not in _schemas(project) and "chain__review" not in _schemas(project)

    # edited again after the review: refused, naming the model
    model.write_text(model.read_text().replace("SELECT 20 AS checked", "SELECT 21 AS checked"))
    refused = _apply(project, instance, "review", review_run)
    assert not refused.success
    failure = next(e for e in refused.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert review_run in message and "chain.m02" in message, message
    assert "chain__review" not in _schemas(project)

    # back to what was reviewed: applied, evaluating what the review listed and no more
    model.write_text(model.read_text().replace("SELECT 21 AS checked", "SELECT 20 AS checked"))
    started = time.time()
    applied = _apply(project, instance, "review", review_run)
    assert applied.success
    for index in (2, 3, 4):
        assert _evaluated(project, f"chain__review.m{index:02d}") > started
    assert _evaluated(project, "chain__review.m01") == prod[1]
    assert {i: _evaluated(project, name(i)) for i in range(1, 5)} == prod

    # the environment has moved on: the same review cannot be applied twice
    again = _apply(project, instance, "review", review_run)
    assert not again.success
    failure = next(e for e in again.all_events if e.is_step_failure)
    assert (
        "environment 'review' changed since the review" in failure.step_failure_data.error.message
    )


def _write(project, model: str, body: str) -> None:  # noqa: ANN001
    (project / "models" / f"{model}.sql").write_text(body)


def test_change_tags_are_sqlmesh_plans_own_categories(tmp_path, instance):
    """Against prod: a breaking change (and what reads it), a non-breaking added column, a
    metadata-only change, a new model; a removed model is in the plan's review."""
    project = chain_project(tmp_path / "chain", 3)
    _write(project, "wide", "MODEL (name chain.wide, kind FULL);\nSELECT 1 AS a\n")
    _write(project, "meta", "MODEL (name chain.meta, kind FULL);\nSELECT 1 AS a\n")
    _write(project, "gone", "MODEL (name chain.gone, kind FULL);\nSELECT 1 AS a\n")
    plan_project(project)

    model = project / "models" / "m02.sql"
    model.write_text(model.read_text().replace("SELECT 2 AS checked", "SELECT 20 AS checked"))
    _write(project, "wide", "MODEL (name chain.wide, kind FULL);\nSELECT 1 AS a, 2 AS b\n")
    _write(project, "meta", "MODEL (name chain.meta, kind FULL, owner 'ana');\nSELECT 1 AS a\n")
    _write(project, "fresh", "MODEL (name chain.fresh, kind FULL);\nSELECT 1 AS a\n")
    (project / "models" / "gone.sql").unlink()

    defs = sqlmesh_definitions_factory(project_dir=str(project), compare_with="prod")
    tags = {
        spec.key.to_user_string(): spec.tags.get("sqlmesh/change")
        for asset in defs.assets
        for spec in asset.specs
    }
    assert tags == {
        "db/chain/m01": "unchanged",
        "db/chain/m02": "breaking",
        "db/chain/m03": "indirect-breaking",
        "db/chain/wide": "non-breaking",
        "db/chain/meta": "metadata",
        "db/chain/fresh": "new",
    }
    selection = dg.AssetSelection.tag("sqlmesh/change", "breaking").resolve(
        defs.resolve_asset_graph()
    )
    assert selection == {dg.AssetKey(["db", "chain", "m02"])}
    # without compare_with: no tag, and loading reads no state
    plain = sqlmesh_definitions_factory(project_dir=str(project))
    assert not any("sqlmesh/change" in s.tags for a in plain.assets for s in a.specs)

    _, output = _plan_review(project, instance, "prod_review")
    assert output["dg_sqlmesh/plan_review"].value["changes"]['"db"."chain"."gone"'] == "removed"
