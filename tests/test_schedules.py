"""The adaptive schedule: its cron, and what each tick requests, on real SQLMesh projects."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import time_machine
from helpers.cron_project import write_cron_project
from helpers.harness import executions, materialized, plan_project

from dg_sqlmesh import (
    SQLMeshDefinitionError,
    SQLMeshResource,
    SQLMeshTranslator,
    build_sqlmesh_schedule_from_selection,
    find_due_models,
    sqlmesh_adaptive_schedule_factory,
    sqlmesh_assets_factory,
    sqlmesh_definitions_factory,
    sqlmesh_schedules_by_cron,
)
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.translation.cron import cron_interval, dagster_cron, finest_cron

SCHEDULE = "sqlmesh_adaptive_schedule"
PLANNED_AT = datetime(2026, 1, 10, 9, 30, tzinfo=UTC)  # a Saturday
HOURLY = dg.AssetKey(["db", "s", "hourly"])
DAILY = dg.AssetKey(["db", "s", "daily"])
WEEKLY = dg.AssetKey(["db", "s", "weekly"])

# name -> (cron, query[, extra MODEL properties])
THREE_CRONS = {
    "s.hourly": ("@hourly", "SELECT 1 AS id"),
    "s.daily": ("@daily", "SELECT id FROM s.hourly"),
    "s.weekly": ("@weekly", "SELECT id FROM s.daily"),
}


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def tick(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, when: datetime):
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    return schedule(context)


@pytest.fixture(scope="module")
def module_instance(tmp_path_factory):
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))) as inst:
        yield inst


@pytest.fixture
def instance(module_instance):
    """One Dagster instance for the module (they are slow to create), wiped after each test."""
    yield module_instance
    module_instance.wipe()


@pytest.fixture(scope="module")
def planned_once(tmp_path_factory) -> Path:
    root = write_cron_project(tmp_path_factory.mktemp("template") / "crons", THREE_CRONS)
    with time_machine.travel(PLANNED_AT, tick=False):
        plan_project(root, skip_backfill=False)
    return root


@pytest.fixture
def planned(planned_once, tmp_path) -> Path:
    """Hourly, daily and weekly models, planned and backfilled at Saturday 09:30 (a copy)."""
    root = tmp_path / "crons"
    shutil.copytree(planned_once, root, ignore=shutil.ignore_patterns(".cache", "logs"))
    config = root / "config.yaml"
    config.write_text(config.read_text().replace(str(planned_once), str(root)))
    return root


def schedule_of(project: Path, **options) -> dg.ScheduleDefinition:
    defs = sqlmesh_definitions_factory(project_dir=str(project), enable_schedule=True, **options)
    return defs.resolve_schedule_def(SCHEDULE)


# --- the schedule's cron ------------------------------------------------------------


@pytest.mark.parametrize(
    ("crons", "expected"),
    [
        (["@daily", "@hourly", "@weekly"], "@hourly"),
        (["@weekly", "@daily"], "@daily"),
        (["@weekly"], "@weekly"),
        (["@hourly", "*/15 * * * *", "@daily"], "*/15 * * * *"),
        (["0 */2 * * *", "30 * * * *", "@daily"], "30 * * * *"),
    ],
)
def test_schedule_ticks_on_the_finest_cron(tmp_path, crons, expected):
    models = {f"s.m{i}": (cron, "SELECT 1 AS id") for i, cron in enumerate(crons)}
    root = write_cron_project(tmp_path / "p", models)

    schedule = schedule_of(root)

    assert schedule.cron_schedule == expected
    assert schedule.job_name == "sqlmesh_job"
    assert schedule.execution_timezone == "UTC"
    chosen = f"s.m{crons.index(expected)}"
    assert f"'{expected}'" in schedule.description
    assert f"{chosen} runs on '{expected}'" in schedule.description
    assert not (root / "db.duckdb").exists()  # loading never touched the warehouse


def test_cron_helpers():
    assert dagster_cron("@annually") == "0 0 1 1 *"
    assert dagster_cron("@midnight") == "@daily"
    assert dagster_cron("  */5  * * * * ") == "*/5 * * * *"
    assert cron_interval("*/15 * * * *")[0] == timedelta(minutes=15)
    assert cron_interval("0 9 * * 1-5") == (timedelta(days=1), cron_interval("0 9 * * 1-5")[1])
    assert cron_interval("@monthly")[0] >= timedelta(days=28)


def test_schedule_follows_the_cron_timezone(tmp_path):
    root = write_cron_project(
        tmp_path / "p",
        {
            "s.la": ("@hourly", "SELECT 1 AS id", "cron_tz 'America/Los_Angeles'"),
            "s.utc": ("@daily", "SELECT 1 AS id"),
        },
    )
    defs = sqlmesh_definitions_factory(project_dir=str(root), enable_schedule=True)
    schedule = defs.resolve_schedule_def(SCHEDULE)
    assert schedule.cron_schedule == "@hourly"
    assert schedule.execution_timezone == "America/Los_Angeles"
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.path[-1] == "la")
    assert spec.metadata[MODEL.cron] == "@hourly"
    assert spec.metadata[MODEL.cron_tz] == "America/Los_Angeles"


def test_finest_cron_of_a_project_without_models_is_refused():
    with pytest.raises(SQLMeshDefinitionError, match="no model with a cron"):
        finest_cron([])


def test_schedule_and_automation_are_exclusive(tmp_path):
    root = write_cron_project(tmp_path / "p", {"s.a": ("@daily", "SELECT 1 AS id")})
    with pytest.raises(SQLMeshDefinitionError, match="Pick one"):
        sqlmesh_definitions_factory(
            project_dir=str(root), enable_schedule=True, automation_from_cron=True
        )


# --- ticks ----------------------------------------------------------------------------


def test_ticks_request_exactly_the_due_models_and_execute_nothing(planned, instance):
    db = planned / "db.duckdb"
    before = executions(db)
    schedule = schedule_of(planned)
    assert schedule.cron_schedule == "@hourly"

    # 09:00: the hourly interval [08:00, 09:00) was backfilled by the plan at 09:30.
    skipped = tick(schedule, instance, at(10, 9))
    assert isinstance(skipped, dg.SkipReason)
    assert "No SQLMesh model of environment 'prod' is due" in skipped.skip_message
    assert "Next due: s.hourly at 2026-01-10T10:00:00+00:00" in skipped.skip_message

    # 10:00: only the hourly model's cron has elapsed.
    request = tick(schedule, instance, at(10, 10))
    assert isinstance(request, dg.RunRequest)
    assert request.asset_selection == [HOURLY]
    assert request.run_key == "prod@2026-01-10T10:00:00+00:00"
    assert request.tags["dg_sqlmesh/environment"] == "prod"
    assert request.tags["dg_sqlmesh/scheduled_time"] == "2026-01-10T10:00:00+00:00"
    again = tick(schedule, instance, at(10, 10))
    assert again.run_key == request.run_key
    assert again.asset_selection == request.asset_selection

    # Sunday midnight: the daily and the weekly model are due as well.
    midnight = tick(schedule, instance, at(11))
    assert midnight.asset_selection == [HOURLY, DAILY, WEEKLY]
    assert midnight.run_key == "prod@2026-01-11T00:00:00+00:00"

    assert executions(db) == before  # no tick executed model SQL


def test_a_due_run_executes_only_what_was_requested(planned, instance):
    db = planned / "db.duckdb"
    before = executions(db)
    defs = sqlmesh_definitions_factory(project_dir=str(planned), enable_schedule=True)
    schedule = defs.resolve_schedule_def(SCHEDULE)
    with time_machine.travel(at(10, 10, 5)):
        request = tick(schedule, instance, at(10, 10))
        result = defs.resolve_job_def("sqlmesh_job").execute_in_process(
            instance=instance, asset_selection=request.asset_selection, tags=request.tags
        )
        assert result.success
        assert set(materialized(instance, result.run_id)) == {"db/s/hourly"}
        assert executions(db) == before + 1

        # The interval is done: the same scheduled time now has nothing to do.
        assert isinstance(tick(schedule, instance, at(10, 10)), dg.SkipReason)
    assert executions(db) == before + 1


def test_find_due_models_reports_intervals(planned):
    resource = SQLMeshResource(project_dir=str(planned))
    found = find_due_models(resource, at(10, 11, 30))
    assert list(found.due) == ['"db"."s"."hourly"']
    assert found.due['"db"."s"."hourly"'] == ((at(10, 9), at(10, 11)),)
    assert found.next_due == at(10, 12)
    assert found.not_ready is None and found.to_plan == ()


def test_ticks_use_the_translator_keys(planned, instance):
    class Prefixed(SQLMeshTranslator):
        def get_asset_key(self, model):
            return super().get_asset_key(model).with_prefix("warehouse")

    schedule = schedule_of(planned, translator=Prefixed())
    request = tick(schedule, instance, at(10, 10))
    assert request.asset_selection == [HOURLY.with_prefix("warehouse")]

    resource = SQLMeshResource(project_dir=str(planned))
    assets = sqlmesh_assets_factory(sqlmesh_resource=resource, translator=Prefixed())
    direct = sqlmesh_adaptive_schedule_factory(
        sqlmesh_resource=resource, assets=assets, name="other"
    )
    assert tick(direct, instance, at(10, 10)).asset_selection == request.asset_selection

    with pytest.raises(SQLMeshDefinitionError, match="None of the 1 assets given is a model"):
        sqlmesh_adaptive_schedule_factory(
            sqlmesh_resource=resource, assets=[dg.AssetsDefinition(specs=[dg.AssetSpec("x")])]
        )


def test_the_schedule_reads_the_asset_graph_the_factory_built(planned):
    class Counting(SQLMeshTranslator):
        specs = 0

        def get_asset_spec(self, model, **kwargs):
            type(self).specs += 1
            return super().get_asset_spec(model, **kwargs)

    schedule_of(planned, translator=Counting())
    assert Counting.specs == len(THREE_CRONS), "the models were translated more than once"


# --- no overlap -----------------------------------------------------------------------


def test_tick_skips_while_a_sqlmesh_run_is_in_progress(planned, instance):
    defs = sqlmesh_definitions_factory(project_dir=str(planned), enable_schedule=True)
    schedule = defs.resolve_schedule_def(SCHEDULE)
    job = defs.resolve_job_def("sqlmesh_job")

    started = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
    skipped = tick(schedule, instance, at(10, 10))
    assert isinstance(skipped, dg.SkipReason)
    assert started.run_id in skipped.skip_message
    assert "STARTED" in skipped.skip_message
    instance.report_run_canceled(started)

    # A materialization of one of the models launched from the asset graph counts too.
    pending = dg.DagsterRun(
        job_name="__ASSET_JOB",
        run_id="pending-asset-run",
        status=dg.DagsterRunStatus.NOT_STARTED,
        asset_selection=frozenset({DAILY}),
    )
    instance.add_run(pending)
    skipped = tick(schedule, instance, at(10, 10))
    assert isinstance(skipped, dg.SkipReason)
    assert "pending-asset-run" in skipped.skip_message
    assert "NOT_STARTED" in skipped.skip_message
    instance.report_run_canceled(pending)

    # Runs of other assets, and finished runs, do not block.
    instance.add_run(
        dg.DagsterRun(
            job_name="other_job",
            run_id="unrelated-run",
            status=dg.DagsterRunStatus.STARTED,
            asset_selection=frozenset({dg.AssetKey("elsewhere")}),
        )
    )
    request = tick(schedule, instance, at(10, 10))
    assert isinstance(request, dg.RunRequest)
    assert request.asset_selection == [HOURLY]


# --- environment not there ------------------------------------------------------------


def test_tick_without_environment(tmp_path, instance):
    root = write_cron_project(tmp_path / "p", THREE_CRONS)

    skipped = tick(schedule_of(root), instance, at(10, 10))
    assert isinstance(skipped, dg.SkipReason)
    assert "SQLMesh environment 'prod' does not exist" in skipped.skip_message
    assert "apply_plan=True, allow_prod_plan=True" in skipped.skip_message

    # A resource allowed to plan creates the environment in the run: request every model.
    planning = schedule_of(root, apply_plan=True, allow_prod_plan=True)
    request = tick(planning, instance, at(10, 10))
    assert request.asset_selection == [HOURLY, DAILY, WEEKLY]


# --- a schedule from a selection ------------------------------------------------------


def test_a_schedule_from_a_selection_requests_exactly_its_due_models_and_skips(planned, instance):
    """A daily schedule of "s.daily+" (the daily model and what reads it): at Sunday
    midnight it requests the daily and weekly models, never the hourly one (due too, but not
    selected); once they ran, the same tick skips; without skipping it requests them all."""
    defs = sqlmesh_definitions_factory(project_dir=str(planned))
    resource, assets = defs.resources["sqlmesh"], list(defs.assets)
    schedule = build_sqlmesh_schedule_from_selection(
        sqlmesh_resource=resource,
        assets=assets,
        cron_schedule="@daily",
        name="daily_and_after",
        select="s.daily+",
    )
    assert schedule.cron_schedule == "@daily"
    with time_machine.travel(at(11, 0, 5)):
        request = tick(schedule, instance, at(11))
        assert isinstance(request, dg.RunRequest)
        assert request.asset_selection == [DAILY, WEEKLY]
        result = defs.resolve_job_def("sqlmesh_job").execute_in_process(
            instance=instance, asset_selection=request.asset_selection, tags=request.tags
        )
        assert result.success
        skipped = tick(schedule, instance, at(11))
        assert isinstance(skipped, dg.SkipReason)

    always = build_sqlmesh_schedule_from_selection(
        sqlmesh_resource=resource,
        assets=assets,
        cron_schedule="@daily",
        name="always",
        select="s.daily+",
        skip_when_nothing_due=False,
    )
    assert tick(always, instance, at(11)).asset_selection == [DAILY, WEEKLY]


def test_one_schedule_per_cron_requests_the_due_models_of_its_cron(planned, instance):
    """The adaptive schedule split by cadence: at Sunday midnight every model is due; the
    daily schedule requests the daily model only, the weekly one the weekly model only."""
    defs = sqlmesh_definitions_factory(project_dir=str(planned))
    schedules = {
        s.name: s
        for s in sqlmesh_schedules_by_cron(
            sqlmesh_resource=defs.resources["sqlmesh"], assets=list(defs.assets)
        )
    }
    assert {name: s.cron_schedule for name, s in schedules.items()} == {
        "sqlmesh_daily": "@daily",
        "sqlmesh_hourly": "@hourly",
        "sqlmesh_weekly": "@weekly",
    }
    assert tick(schedules["sqlmesh_daily"], instance, at(11)).asset_selection == [DAILY]
    assert tick(schedules["sqlmesh_weekly"], instance, at(11)).asset_selection == [WEEKLY]
    assert tick(schedules["sqlmesh_hourly"], instance, at(10, 10)).asset_selection == [HOURLY]
    assert isinstance(tick(schedules["sqlmesh_daily"], instance, at(10, 10)), dg.SkipReason)
