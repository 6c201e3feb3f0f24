"""The partitioned test project (tests/projects/partitioned): a copy starting a few weeks
before today, runs of partition ranges launched as the UI launches them, and readers of
what the warehouse, SQLMesh's state and Dagster hold per partition."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from helpers.harness import _env, copy_project, plan_project, query
from helpers.reconstruct import ui_job

PROJECT = Path(__file__).parent.parent / "projects" / "partitioned"
DAYS_BACK = 21
CHAIN = ("part.events", "part.daily_totals", "part.daily_report")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def start_day() -> date:
    return datetime.now(UTC).date() - timedelta(days=DAYS_BACK)


def day(n: int) -> str:
    """The partition key of the project's ``n``-th day (0: its start)."""
    return (start_day() + timedelta(days=n)).isoformat()


def make_project(tmp_path: Path, *, plan: bool = True) -> Path:
    project = copy_project(PROJECT, tmp_path / "partitioned")
    config = project / "config.yaml"
    config.write_text(config.read_text().replace("'2026-11-10'", f"'{start_day().isoformat()}'"))
    if plan:
        plan_project(project)
    return project


def key(model: str) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", *model.split(".")])


def db(project: Path) -> Path:
    return project / "warehouse.duckdb"


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run of a single-run backfill of ``first``..``last``."""
    return {RANGE_START: first, RANGE_END: last}


def launch(
    project: Path,
    instance: dg.DagsterInstance,
    models: tuple[str, ...] | list[str],
    tags: dict[str, str],
    *,
    executor: str = "in_process",
    **options,
) -> dg.ExecutionResult:
    """One run of the implicit asset job over ``models`` with ``tags``, on ``executor``."""
    config = {"execution": {"config": {"in_process": {}}}}
    if executor == "multiprocess":  # spawned processes: they read this test's environment
        config = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}
    with _env(project, {"partitioned": True, **options}):
        return dg.execute_job(
            ui_job(),
            instance=instance,
            asset_selection=[key(m) for m in models],
            tags=tags,
            run_config=config,
            raise_on_error=False,
        )


def warehouse_days(project: Path, model: str) -> list[str]:
    rows = query(db(project), f"SELECT DISTINCT ds FROM {model} ORDER BY ds")
    return [r[0].isoformat() for r in rows]


def state_days(project: Path, model: str, environment: str = "prod") -> list[str]:
    """The days SQLMesh's state holds for ``model`` (read with SQLMesh itself)."""
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    from dg_sqlmesh.project.config import load_config

    set_console(NoopConsole())
    config, gateway = load_config(project, None)
    context = Context(paths=[project], config=config, gateway=gateway, load=False)
    try:
        stored = context.state_sync.get_environment(environment)
        fqn = f'"warehouse"."{model.split(".")[0]}"."{model.split(".")[1]}"'
        ids = [s.snapshot_id for s in stored.snapshots if s.name == fqn]
        (snapshot,) = context.state_sync.get_snapshots(ids).values()
        days = []
        for start, end in snapshot.intervals:
            current = start
            while current < end:
                days.append(datetime.fromtimestamp(current / 1000, tz=UTC).date().isoformat())
                current += 86_400_000
        return days
    finally:
        context.close()


def materialized_partitions(
    instance: dg.DagsterInstance, model: str, run_id: str | None = None
) -> list[str]:
    """Partition keys with a materialization of ``model`` (in one run, or ever)."""
    if run_id is None:
        records = instance.fetch_materializations(key(model), limit=10_000).records
    else:
        records = [
            r
            for r in instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
            if r.event_log_entry.dagster_event.asset_key == key(model)
        ]
    keys = {r.event_log_entry.dagster_event.partition for r in records}
    return sorted(k for k in keys if k is not None)


def loaded_at(project: Path, model: str) -> dict[str, set]:
    rows = query(db(project), f"SELECT ds, loaded_at FROM {model}")
    found: dict[str, set] = {}
    for ds, at in rows:
        found.setdefault(ds.isoformat(), set()).add(at)
    return found
