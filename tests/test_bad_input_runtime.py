"""Bad input that only shows when a run starts (or at load, for the DAG itself): the exact
message a user gets.

Load-time mistakes of the project's files and config (missing folder, unknown gateway,
parse error, malformed tag, a project with no models) are in test_bad_input.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from helpers.harness import materialized, observed, plan_project, run_in_process
from projects.generate import generate_project

from dg_sqlmesh import SQLMeshDefinitionError, SQLMeshTranslator, sqlmesh_definitions_factory
from dg_sqlmesh.metadata import RUN

CONFIG = """\
gateways:
  local:
    connection:
      type: duckdb
      database: {db}
default_gateway: local
model_defaults:
  dialect: duckdb
  start: '2026-11-20'
  cron: '@daily'
"""


def project(root: Path, models: dict[str, str]) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "config.yaml").write_text(CONFIG.format(db=root / "db.duckdb"))
    for name, sql in models.items():
        (root / "models" / f"{name}.sql").write_text(sql)
    return root


def failures(result: dg.ExecuteInProcessResult) -> dict[str, tuple[str, dict]]:
    """Step key -> (failure description, metadata values)."""
    found = {}
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data.user_failure_data
            assert data is not None, f"{event.step_key} failed without a described failure"
            found[event.step_key] = (
                data.description,
                {k: v.value for k, v in data.metadata.items()},
            )
    return found


def load(project_dir: Path, **options) -> dg.Definitions:
    return sqlmesh_definitions_factory(project_dir=str(project_dir), **options)


OK = "MODEL (name app.ok, kind FULL);\nSELECT 1 AS id\n"


# --- a model reading a table that does not exist --------------------------------------------


def test_missing_table_fails_when_the_environment_is_planned(tmp_path, instance):
    """SQLMesh checks every query when it creates the model's physical table (``WHERE FALSE
    LIMIT 0``), so a missing table fails the plan, not the run; SQLMesh's own PlanError only
    says "Plan application failed.", we name the model and the database error."""
    root = project(
        tmp_path / "p",
        {"ok": OK, "bad": "MODEL (name app.bad, kind FULL);\nSELECT id FROM nowhere.missing\n"},
    )
    # SQLMesh alone: the plan fails with its terse message
    from sqlmesh.utils.errors import PlanError

    with pytest.raises(PlanError, match=r"^Plan application failed\.$"):
        plan_project(root)

    # Through Dagster, letting the run create the environment: the failing model fails,
    # with the database's error; what the plan wrote is observed, never materialized: the
    # plan promoted nothing, so the environment does not serve it.
    result = run_in_process(root, instance, apply_plan=True, allow_prod_plan=True)
    assert not result.success
    found = failures(result)
    assert set(found) == {"db__app__bad", "db__app__ok"}
    description, metadata = found["db__app__bad"]
    assert description.startswith(
        'app.bad: Catalog Error: Table with name "nowhere.missing" does not exist because '
        'schema "nowhere" does not exist.'
    )
    assert metadata[RUN.error_class] == "persistent"
    assert materialized(instance, result.run_id) == {}
    (ok,) = observed(instance, result.run_id).values()
    assert ok[RUN.state] == "written_not_promoted"
    assert ok[RUN.detail].startswith(
        "written by the plan this run applied, but the plan this run applied failed (app.bad: "
        "Plan application failed.): the environment does not serve this version"
    )


def test_table_dropped_after_the_plan_fails_at_run_time(tmp_path, instance):
    root = project(
        tmp_path / "p",
        {
            "ok": OK,
            "reader": "MODEL (name app.reader, kind FULL);\nSELECT id FROM ext.source\n",
        },
    )
    with duckdb.connect(str(root / "db.duckdb")) as conn:
        conn.execute("CREATE SCHEMA ext; CREATE TABLE ext.source AS SELECT 1 AS id")
    plan_project(root)
    with duckdb.connect(str(root / "db.duckdb")) as conn:
        conn.execute("DROP TABLE ext.source")

    result = run_in_process(root, instance)
    assert not result.success
    found = failures(result)
    assert set(found) == {"db__app__reader"}
    description, metadata = found["db__app__reader"]
    assert description.startswith(
        "app.reader: Catalog Error: Table with name source does not exist!"
    ), description
    assert metadata[RUN.state] == "failed"
    assert metadata[RUN.error_class] == "persistent"
    assert metadata[RUN.retryable] is False
    assert list(materialized(instance, result.run_id)) == ["db/app/ok"]


# --- the DAG and the asset keys -------------------------------------------------------------


def test_circular_reference_fails_at_load(tmp_path):
    root = project(
        tmp_path / "p",
        {
            "a": "MODEL (name app.a, kind FULL);\nSELECT id FROM app.b\n",
            "b": "MODEL (name app.b, kind FULL);\nSELECT id FROM app.a\n",
        },
    )
    with pytest.raises(SQLMeshDefinitionError) as info:
        load(root)
    message = str(info.value)
    head, _, cycle = message.partition("\nCycle:\n")
    assert head == (
        f"SQLMesh could not load the project '{root}': Detected a cycle in the DAG. "
        "Please make sure there are no circular references between nodes."
    )
    # the cycle is printed from whichever of its models SQLMesh met first
    assert cycle in (
        '"db"."app"."b" ->\n"db"."app"."a" ->\n"db"."app"."b"',
        '"db"."app"."a" ->\n"db"."app"."b" ->\n"db"."app"."a"',
    )


class OneKeyForAll(SQLMeshTranslator):
    def get_asset_key(self, model):
        return dg.AssetKey(["warehouse", model.table[:3]])  # 'model_0000' and 'model_0001' clash


def test_duplicate_asset_key_from_a_custom_translator(tmp_path):
    root = generate_project(tmp_path / "gen", 4, db_path=tmp_path / "gen" / "db.duckdb")
    with pytest.raises(SQLMeshDefinitionError) as info:
        load(root, translator=OneKeyForAll())
    assert str(info.value) == (
        "Models gen_l0.model_0000 (models/gen_l0/model_0000.sql) and gen_l0.model_0001 "
        "(models/gen_l0/model_0001.sql) both map to asset key warehouse/mod. Give them "
        "distinct keys (override SQLMeshTranslator.get_asset_key or external_asset_mapping)."
    )


def test_models_removed_from_disk_after_loading(generated, instance):
    """The project on disk became empty between loading the definitions and the run: the run
    executes what the environment holds and says, naming each model, that the project differs."""
    root = generated(4)
    defs = load(root)
    shutil.rmtree(root / "models")
    (root / "models").mkdir()
    result = defs.resolve_job_def("sqlmesh_job").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert result.success
    messages = [r.user_message for r in instance.all_logs(result.run_id)]
    names = ("gen_l0.model_0000", "gen_l0.model_0001", "gen_l1.model_0002", "gen_l1.model_0003")
    removed = ", ".join(f"{name} (removed)" for name in names)
    assert (
        f"The project on disk differs from environment 'prod' for {removed}. This run executes "
        f"what the environment holds; apply a plan (`sqlmesh -p {root} plan prod`) to run the "
        "new definitions."
    ) in messages
    shown = materialized(instance, result.run_id)
    assert {m[RUN.unapplied_change] for m in shown.values()} == {
        "removed on disk, not yet in the environment: this run executed the environment's version"
    }
    assert len(materialized(instance, result.run_id)) == 4


# --- the environment and its state ----------------------------------------------------------


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_environment_that_does_not_exist(generated, instance, environment):
    root = generated(4, plan=False)
    result = run_in_process(root, instance, environment=environment)
    assert not result.success
    found = failures(result)
    create = (
        f"`sqlmesh -p {root} plan dev --include-unmodified` or set "
        "SQLMeshResource(apply_plan=True) to let Dagster apply it."
        if environment == "dev"
        else f"`sqlmesh -p {root} plan prod` or set "
        "SQLMeshResource(apply_plan=True, allow_prod_plan=True) to let Dagster apply it."
    )
    expected = (
        f"SQLMesh environment '{environment}' does not exist in the state of {root} "
        f"(gateway duckdb). Create it with {create}"
    )
    descriptions = {d for d, _ in found.values()}
    assert descriptions == {expected, f"The run's SQLMesh execution failed: {expected}"}
    assert materialized(instance, result.run_id) == {}  # downstream steps did not even start


@pytest.mark.parametrize(
    ("state_version", "advice"),
    [
        (
            "0.999.0",
            "SQLMesh (local) is using version '{local}' which is behind '0.999.0' (remote). "
            "Please upgrade SQLMesh ('pip install --upgrade \"sqlmesh==0.999.0\"' command). "
            "The project's SQLMesh state was written by a newer SQLMesh: install that version "
            "where Dagster runs.",
        ),
        (
            "0.100.0",
            "SQLMesh (local) is using version '{local}' which is ahead of '0.100.0' (remote). "
            "Please run a migration ('sqlmesh migrate' command). The project's SQLMesh state "
            "was written by an older SQLMesh: migrate it with `sqlmesh -p {root} migrate`.",
        ),
    ],
)
def test_state_of_another_sqlmesh_version(generated, instance, state_version, advice):
    from sqlmesh import __version__ as local

    root = generated(4)
    with duckdb.connect(str(root / "db.duckdb")) as conn:
        conn.execute("UPDATE sqlmesh._versions SET sqlmesh_version = ?", [state_version])
    result = run_in_process(root, instance)
    assert not result.success
    found = failures(result)
    expected = (
        f"SQLMesh could not start for SQLMesh environment 'prod' of {root} (gateway duckdb) "
        f"(persistent): SQLMeshError: {advice.format(local=local, root=root)}"
    )
    assert {d for d, _ in found.values()} == {
        expected,
        f"The run's SQLMesh execution failed: {expected}",
    }
    (metadata,) = [m for d, m in found.values() if d == expected]
    assert metadata[RUN.error_class] == "persistent"
    assert metadata[RUN.retryable] is False
