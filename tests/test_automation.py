"""Per-model automation conditions that follow each model's SQLMesh cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from helpers.cron_project import write_cron_project

from dg_sqlmesh import (
    ModelInfo,
    SQLMeshResource,
    SQLMeshTranslator,
    cron_automation_condition,
    sqlmesh_assets_factory,
    sqlmesh_definitions_factory,
)
from dg_sqlmesh.metadata import MODEL

HOURLY = dg.AssetKey(["db", "s", "hourly"])
DAILY = dg.AssetKey(["db", "s", "daily"])
LA = dg.AssetKey(["db", "s", "la"])

MODELS = {
    # The hourly model reads an external table, which Dagster never sees updated.
    "s.hourly": ("@hourly", "SELECT id FROM raw.events"),
    "s.daily": ("@daily", "SELECT id FROM s.hourly"),
    "s.la": ("@daily", "SELECT 1 AS id", "cron_tz 'America/Los_Angeles'"),
}


@pytest.fixture
def project(tmp_path):
    return write_cron_project(tmp_path / "p", MODELS, externals={"raw.events": {"id": "int"}})


@pytest.fixture
def instance(tmp_path):
    instance = dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster"))
    try:
        yield instance
    finally:
        instance.dispose()


def test_conditions_request_each_model_after_its_cron_tick(project, instance):
    defs = sqlmesh_definitions_factory(project_dir=str(project), automation_from_cron=True)
    assert not defs.schedules

    cursor = None

    def requested(when: datetime) -> set[dg.AssetKey]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=when, cursor=cursor
        )
        cursor = result.cursor
        return {r.key for r in result.results if r.true_subset.size}

    start = datetime(2026, 1, 10, 9, 30, tzinfo=UTC)
    assert requested(start) == set()  # the first evaluation only records where we are
    assert requested(start + timedelta(minutes=29)) == set()  # 09:59: before the tick
    assert requested(start + timedelta(minutes=35)) == {HOURLY}  # 10:05: after it
    assert requested(start + timedelta(minutes=36)) == set()  # handled until the next tick
    midnight = datetime(2026, 1, 11, 0, 5, tzinfo=UTC)
    assert requested(midnight) == {HOURLY, DAILY}
    assert requested(midnight + timedelta(minutes=1)) == set()  # the sensor evaluates often
    # Midnight in Los Angeles is 08:00 UTC.
    assert requested(midnight + timedelta(hours=8)) == {HOURLY, LA}


def test_condition_of_a_model(project):
    specs = {
        spec.key: spec
        for assets in sqlmesh_assets_factory(
            sqlmesh_resource=SQLMeshResource(project_dir=str(project)),
            automation_from_cron=True,
        )
        for spec in assets.specs
    }
    assert specs[HOURLY].automation_condition.get_label() == "sqlmesh_cron(@hourly, UTC)"
    assert specs[LA].automation_condition.get_label() == (
        "sqlmesh_cron(@daily, America/Los_Angeles)"
    )
    assert specs[HOURLY].metadata[MODEL.cron] == "@hourly"
    assert specs[LA].metadata[MODEL.cron] == "@daily"


def test_automation_is_off_by_default_and_survives_a_bare_subclass(project):
    resource = SQLMeshResource(project_dir=str(project))

    def conditions(**kwargs) -> dict[dg.AssetKey, dg.AutomationCondition | None]:
        return {
            spec.key: spec.automation_condition
            for assets in sqlmesh_assets_factory(sqlmesh_resource=resource, **kwargs)
            if assets.is_executable  # an external model's asset has no automation
            for spec in assets.specs
        }

    assert set(conditions().values()) == {None}

    class Bare(SQLMeshTranslator):
        def __init__(self) -> None:  # forgets super().__init__()
            pass

    assert set(conditions(translator=Bare()).values()) == {None}
    assert None not in conditions(translator=Bare(), automation_from_cron=True).values()
    flagged = SQLMeshTranslator(automation_from_cron=True)
    assert None not in conditions(translator=flagged).values()


def test_external_models_have_no_cron_condition():
    external = ModelInfo(
        fqn='"raw"."events"',
        name="raw.events",
        catalog="",
        schema="raw",
        table="events",
        kind="EXTERNAL",
        is_external=True,
    )
    with pytest.raises(ValueError, match="no cron"):
        cron_automation_condition(external)
