"""Which models are time-partitioned assets, and with which partitions definition."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
from helpers.partitioned import key, make_project, start_day

from dg_sqlmesh import ModelInfo, SQLMeshDefinitionError, sqlmesh_definitions_factory
from dg_sqlmesh.translation.partitions import model_partitions_def


def _model(**overrides) -> ModelInfo:
    values = dict(
        fqn='"db"."s"."t"',
        name="s.t",
        catalog="db",
        schema="s",
        table="t",
        kind="INCREMENTAL_BY_TIME_RANGE",
        interval_unit="day",
        start="2026-01-01",
        path="models/t.sql",
    )
    values.update(overrides)
    return ModelInfo(**values)


def _partitions_defs(project, **options) -> dict[str, dg.PartitionsDefinition | None]:
    defs = sqlmesh_definitions_factory(project_dir=str(project), **options)
    graph = defs.resolve_asset_graph()
    return {
        ".".join(k.path[1:]): graph.get(k).partitions_def
        for k in graph.materializable_asset_keys
        if k.path[0] == "warehouse"
    }


def test_assets_are_unpartitioned_unless_the_project_opts_in(tmp_path):
    project = make_project(tmp_path, plan=False)
    assert set(_partitions_defs(project).values()) == {None}


def test_time_incremental_models_share_a_daily_definition_from_their_start(tmp_path):
    project = make_project(tmp_path, plan=False)
    found = _partitions_defs(project, partitioned=True)
    assert found["part.sizes"] is None  # FULL stays unpartitioned
    chain = [found[m] for m in ("part.events", "part.daily_totals", "part.daily_report")]
    assert chain[0] is chain[1] is chain[2]  # one shared object
    partitions_def = chain[0]
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    assert partitions_def.cron_schedule == "0 0 * * *" and partitions_def.timezone == "UTC"
    assert partitions_def.get_first_partition_key() == start_day().isoformat()
    defs = sqlmesh_definitions_factory(project_dir=str(project), partitioned=True)
    policy = defs.resolve_assets_def(key("part.events")).backfill_policy
    assert policy == dg.BackfillPolicy.single_run()
    assert defs.resolve_assets_def(key("part.sizes")).backfill_policy is None
    defs.resolve_job_def("sqlmesh_job")  # one partitions definition: the job builds


def test_a_model_tag_decides_for_its_model(tmp_path):
    project = make_project(tmp_path, plan=False)
    events = project / "models" / "events.sql"
    events.write_text(
        events.read_text().replace(
            "grain (id, ds),", "grain (id, ds),\n  tags ['dagster:partitioned:false'],"
        )
    )
    report = project / "models" / "daily_report.sql"
    report.write_text(
        report.read_text().replace("grain ds", "grain ds,\n  tags ['dagster:partitioned:true']")
    )
    opted_in = _partitions_defs(project, partitioned=True)
    assert opted_in["part.events"] is None and opted_in["part.daily_totals"] is not None
    opted_out = _partitions_defs(project)
    assert opted_out["part.daily_report"] is not None
    assert opted_out["part.events"] is None and opted_out["part.daily_totals"] is None


def test_a_model_tagged_partitioned_that_cannot_be_is_an_error_naming_it():
    with pytest.raises(SQLMeshDefinitionError, match=r"s\.t \(models/t\.sql\).*FULL model"):
        model_partitions_def(_model(kind="FULL", tags=("dagster:partitioned:true",)))
    with pytest.raises(SQLMeshDefinitionError, match="'maybe' is not true or false"):
        model_partitions_def(_model(tags=("dagster:partitioned:maybe",)))


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"kind": "FULL"}, "FULL"),
        ({"kind": "VIEW"}, "VIEW"),
        ({"kind": "INCREMENTAL_BY_UNIQUE_KEY"}, "unique key"),
        ({"allow_partials": True}, "allow_partials"),
        ({"depends_on_self": True}, "self-referencing"),
        ({"start": None}, "no start"),
        ({"start": "1 week ago"}, "relative start"),
    ],
)
def test_models_whose_intervals_are_not_partitions_stay_unpartitioned(overrides, why):
    assert model_partitions_def(_model(**overrides), partitioned=True) is None, why


def test_the_interval_unit_sets_the_partitions():
    hourly = model_partitions_def(
        _model(interval_unit="hour", start="2026-01-01 10:30:00"), partitioned=True
    )
    assert hourly.cron_schedule == "0 * * * *"
    assert hourly.get_first_partition_key() == "2026-01-01-10:00"  # SQLMesh's first interval
    monthly = model_partitions_def(_model(interval_unit="month", end="2026-03-31"), True)
    assert monthly.get_partition_keys() == ["2026-01-01", "2026-02-01", "2026-03-01"]
    epoch = model_partitions_def(_model(start="1767225600000"), partitioned=True)  # epoch ms
    assert epoch.start == datetime(2026, 1, 1, tzinfo=UTC)


def test_the_component_takes_the_option(tmp_path):
    import os

    import yaml
    from dagster.components.testing import create_defs_folder_sandbox

    project = make_project(tmp_path, plan=False)
    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.defs_folder_path / "warehouse"
        defs_path.mkdir(parents=True)
        attributes = {"project": os.path.relpath(project, defs_path), "partitioned": True}
        (defs_path / "defs.yaml").write_text(
            yaml.safe_dump({"type": "dg_sqlmesh.SQLMeshProjectComponent", "attributes": attributes})
        )
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (_, defs):
            partitioned = {
                spec.key for a in defs.assets for spec in a.specs if spec.partitions_def is not None
            }
            assert partitioned == {
                key(m) for m in ("part.events", "part.daily_totals", "part.daily_report")
            }
            assert {s.name for s in defs.sensors} == {"sqlmesh_partition_status_sensor"}


def test_partitioned_models_with_different_starts_are_refused_naming_them(tmp_path):
    project = make_project(tmp_path, plan=False)
    report = project / "models" / "daily_report.sql"
    report.write_text(report.read_text().replace("grain ds", "grain ds,\n  start '2026-01-01'"))
    with pytest.raises(SQLMeshDefinitionError, match="2 different partitions definitions") as err:
        sqlmesh_definitions_factory(project_dir=str(project), partitioned=True)
    assert "warehouse/part/daily_report" in str(err.value)
    assert "model_defaults.start" in str(err.value)
