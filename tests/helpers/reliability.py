"""Helpers for the reliability tests and the load test.

* :func:`write_slow_project`: a small SQLMesh project (DuckDB or PostgreSQL) whose Python
  models can be slowed down from the environment, and whose ``before_all``/``after_all``
  statements stamp ``_meta.marks`` at the start and the end of every SQLMesh execution.
* :func:`definitions` / :func:`job`: Dagster definitions with any ``SQLMeshResource``
  options (lock timeout, retries...), read from an environment variable so that the step
  processes of the multiprocess executor rebuild the same job.
* :func:`launch`: run the job in a subprocess of its own (its own process group, so that a
  test can SIGKILL the run with all its step processes), optionally held at a start line
  so that several runs start at the same instant.
  ``python -m helpers.reliability`` is that subprocess.
* :func:`state_intervals`: the intervals SQLMesh's state records for each model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

TESTS = Path(__file__).resolve().parent.parent
SPEC_ENV = "DG_SQLMESH_RELIABILITY_SPEC"
BATCH_SECONDS_ENV = "DG_SQLMESH_BATCH_SECONDS"  # sleep of every batch of src.events_*
SLOW_SECONDS_ENV = "DG_SQLMESH_SLOW_SECONDS"  # sleep of src.slow
MARKER_DIR_ENV = "DG_SQLMESH_MARKER_DIR"  # where models touch '<model>.started' files

ROWS_PER_DAY = 3


def wait_for(condition, timeout: float, what: str, poll: float = 0.05) -> None:  # noqa: ANN001
    """Poll ``condition`` until it holds, or fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


# --------------------------------------------------------------------------- the project

_EVENTS_MODEL = """\
import os
import time
from pathlib import Path

import pandas as pd
from sqlmesh import model
from sqlmesh.core.model.kind import ModelKindName


@model(
    "src.{name}",
    kind=dict(name=ModelKindName.INCREMENTAL_BY_TIME_RANGE, time_column="ds", batch_size=1),
    columns={{"id": "int", "ds": "date", "v": "bigint"}},
    grain=["id", "ds"],
)
def execute(context, start, end, execution_time, **kwargs):
    markers = os.environ.get("{marker_env}")
    if markers:
        Path(markers, f"{name}-{{start:%Y%m%d}}.started").touch()
    time.sleep(float(os.environ.get("{sleep_env}", "0")))
    days = pd.date_range(start.date(), end.date(), freq="D")
    return pd.DataFrame(
        [{{"id": i, "ds": day.date(), "v": i + day.day}} for day in days for i in range({rows})]
    )
"""

_SLOW_MODEL = """\
import os
import time
from pathlib import Path

import pandas as pd
from sqlmesh import model


@model("src.slow", kind="FULL", columns={{"id": "int", "v": "bigint"}})
def execute(context, start, end, execution_time, **kwargs):
    markers = os.environ.get("{marker_env}")
    if markers:
        Path(markers, "slow.started").touch()
    time.sleep(float(os.environ.get("{sleep_env}", "0")))
    return pd.DataFrame([{{"id": i, "v": i * 10}} for i in range(5)])
"""

_DAILY_MODEL = """\
MODEL (
  name mart.daily,
  kind INCREMENTAL_BY_TIME_RANGE (time_column ds),
  grain ds
);

SELECT
  ds,
  CAST(COUNT(*) AS BIGINT) AS n,
  CAST(SUM(v) AS BIGINT) AS total
FROM src.events_a
WHERE ds BETWEEN @start_ds AND @end_ds
GROUP BY ds
"""

MARKS_BEFORE = (
    "CREATE SCHEMA IF NOT EXISTS _meta",
    "CREATE TABLE IF NOT EXISTS _meta.marks (marked_at TIMESTAMP, what VARCHAR, env VARCHAR)",
    "INSERT INTO _meta.marks VALUES (CAST(now() AS TIMESTAMP), 'start', @this_env)",
)
MARKS_AFTER = ("INSERT INTO _meta.marks VALUES (CAST(now() AS TIMESTAMP), 'end', @this_env)",)

SLOW_MODELS = ("src.events_a", "src.events_b", "src.slow", "mart.daily")


def write_slow_project(
    root: Path, connection: Mapping[str, Any], *, start: str, dialect: str = "duckdb"
) -> Path:
    """Write the project; ``connection`` is the gateway's connection block (a dict)."""
    root.mkdir(parents=True, exist_ok=True)
    q = json.dumps
    lines = ["gateways:", "  main:", "    connection:"]
    lines += [f"      {k}: {q(v)}" for k, v in connection.items()]
    lines += [
        "default_gateway: main",
        "model_defaults:",
        f"  dialect: {dialect}",
        f"  start: {q(start)}",
        "  cron: '@daily'",
        "disable_anonymized_analytics: true",
        "before_all:",
        *(f"  - {q(s)}" for s in MARKS_BEFORE),
        "after_all:",
        *(f"  - {q(s)}" for s in MARKS_AFTER),
    ]
    (root / "config.yaml").write_text("\n".join(lines) + "\n")
    models = root / "models"
    models.mkdir(exist_ok=True)
    env = {"marker_env": MARKER_DIR_ENV, "rows": ROWS_PER_DAY}
    for name in ("events_a", "events_b"):
        (models / f"{name}.py").write_text(
            _EVENTS_MODEL.format(name=name, sleep_env=BATCH_SECONDS_ENV, **env)
        )
    (models / "slow.py").write_text(_SLOW_MODEL.format(sleep_env=SLOW_SECONDS_ENV, **env))
    (models / "daily.sql").write_text(_DAILY_MODEL)
    return root


def duckdb_connection(db_path: Path) -> dict[str, Any]:
    return {"type": "duckdb", "database": str(db_path)}


def postgres_connection(pg: Any, database: str) -> dict[str, Any]:
    return {
        "type": "postgres",
        "host": pg.host,
        "port": pg.port,
        "user": pg.user,
        "password": pg.password,
        "database": database,
        "connect_timeout": 5,
    }


# --------------------------------------------------------------------------- definitions


def definitions(spec: Mapping[str, Any] | None = None) -> dg.Definitions:
    """``spec``: ``{"resource": {SQLMeshResource fields}}`` (default: from ``SPEC_ENV``)."""
    from dg_sqlmesh import (
        SQLMeshResource,
        SQLMeshResultsResource,
        sqlmesh_assets_factory,
        sqlmesh_job,
    )

    spec = spec if spec is not None else json.loads(os.environ[SPEC_ENV])
    resource = SQLMeshResource(**spec["resource"])
    dask = spec.get("executor") == "dask"  # which cannot carry pools
    assets = sqlmesh_assets_factory(sqlmesh_resource=resource, pool=not dask)
    executor = None
    if spec.get("executor") == "celery":
        from dagster_celery import celery_executor as executor
    elif spec.get("executor") == "dask":
        from dagster_dask import dask_executor as executor
    return dg.Definitions(
        assets=assets,
        jobs=[sqlmesh_job(assets)],
        resources={"sqlmesh": resource, "sqlmesh_results": SQLMeshResultsResource()},
        executor=executor,
    )


def job() -> dg.JobDefinition:
    return definitions().resolve_job_def("sqlmesh_job")


def run_in_process(
    resource: Mapping[str, Any],
    instance: dg.DagsterInstance,
    select: Iterable[str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Run the job in this process with the given ``SQLMeshResource`` fields."""
    selection = [dg.AssetKey.from_user_string(s) for s in select] if select else None
    return (
        definitions({"resource": dict(resource)})
        .resolve_job_def("sqlmesh_job")
        .execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)
    )


# --------------------------------------------------------------------------- subprocess runs


@dataclass
class Launched:
    """A Dagster run executing in a subprocess (the leader of its own process group)."""

    process: subprocess.Popen
    out: Path
    log: Path

    @property
    def ready(self) -> bool:
        """Waiting for its go file (or already past it)."""
        return Path(str(self.out) + ".ready").exists()

    def wait(self, timeout: float = 300) -> dict[str, Any]:
        """``{"run_id", "success", "seconds"}`` once the subprocess has exited."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"run did not finish in {timeout} s:\n{self.log_tail()}") from None
        if not self.out.exists():
            raise AssertionError(
                f"run subprocess exited {self.process.returncode} without a result:\n"
                f"{self.log_tail()}"
            )
        return json.loads(self.out.read_text())

    def kill(self) -> None:
        """SIGKILL the run: the subprocess and every step process it started."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def launch(
    instance: dg.DagsterInstance,
    resource: Mapping[str, Any],
    workdir: Path,
    *,
    select: Iterable[str] | None = None,
    executor: str = "multiprocess",
    max_concurrent: int = 4,
    go_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "run",
    executor_config: Mapping[str, Any] | None = None,
) -> Launched:
    """Start ``sqlmesh_job`` in a subprocess against ``instance`` (which must be persistent).

    With ``go_file``, the subprocess gets ready (imports, instance) and then waits until that
    file exists, so that several runs can be started at the same instant: wait for every
    ``Launched.ready`` and touch the file. ``executor="celery"`` runs the steps on Celery
    workers, with ``executor_config`` (``CeleryCluster.executor_config()``);
    ``executor="dask"`` on a Dask cluster, with ``executor_config`` (the Dask executor's).
    """
    from dagster._serdes import serialize_value

    workdir.mkdir(parents=True, exist_ok=True)
    ref = workdir / f"{name}.instance.json"
    ref.write_text(serialize_value(instance.get_ref()))
    out, log = workdir / f"{name}.result.json", workdir / f"{name}.log"
    out.unlink(missing_ok=True)
    Path(str(out) + ".ready").unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "helpers.reliability",
        "--instance-ref",
        str(ref),
        "--executor",
        executor,
        "--max-concurrent",
        str(max_concurrent),
        "--out",
        str(out),
    ]
    if select:
        argv += ["--select", json.dumps(list(select))]
    if go_file is not None:
        argv += ["--go-file", str(go_file)]
    if executor_config is not None:
        argv += ["--executor-config", json.dumps(dict(executor_config))]
    spec = {"resource": dict(resource), "executor": executor}
    child_env = {
        **os.environ,
        **(env or {}),
        SPEC_ENV: json.dumps(spec),
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
        "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS": "1",
    }
    with open(log, "w") as handle:
        process = subprocess.Popen(
            argv,
            cwd=str(TESTS),
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Launched(process, out, log)


def main(argv: list[str] | None = None) -> None:
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import deserialize_value

    from helpers import reliability  # the importable module, for reconstructable()

    parser = argparse.ArgumentParser()
    parser.add_argument("--instance-ref", required=True)
    parser.add_argument("--executor", default="multiprocess")
    parser.add_argument("--max-concurrent", type=int, default=4)
    parser.add_argument("--select")
    parser.add_argument("--go-file")
    parser.add_argument("--executor-config")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    ref = deserialize_value(Path(args.instance_ref).read_text(), InstanceRef)
    selection = (
        [dg.AssetKey.from_user_string(s) for s in json.loads(args.select)] if args.select else None
    )
    with dg.DagsterInstance.from_ref(ref) as instance:
        if args.go_file:
            reliability.job()  # imports and the project's description, before the start line
            Path(args.out + ".ready").touch()
            while not Path(args.go_file).exists():
                time.sleep(0.01)
        started = time.time()
        if args.executor == "in_process":
            result = reliability.job().execute_in_process(
                instance=instance, asset_selection=selection, raise_on_error=False
            )
        else:
            if args.executor in ("celery", "dask"):
                config = json.loads(args.executor_config)
            else:
                config = {"multiprocess": {"max_concurrent": args.max_concurrent}}
            result = dg.execute_job(
                dg.reconstructable(reliability.job),
                instance=instance,
                asset_selection=selection,
                run_config={"execution": {"config": config}},
                raise_on_error=False,
            )
        payload = {
            "run_id": result.run_id,
            "success": result.success,
            "started": started,
            "seconds": time.time() - started,
        }
    Path(args.out).write_text(json.dumps(payload))


def run_together(runs: Mapping[str, Launched], go: Path, timeout: float = 300) -> dict[str, Any]:
    """Start ``runs`` (launched with ``go_file=go``) at one instant; their results, once
    every one succeeded."""
    wait_for(lambda: all(r.ready for r in runs.values()), 180, "the runs to be ready")
    go.touch()
    results = {name: run.wait(timeout=timeout) for name, run in runs.items()}
    assert all(r["success"] for r in results.values()), {n: r.log_tail() for n, r in runs.items()}
    return results


def execution_marks(db_path: Path) -> list[str]:
    """The slow project's SQLMesh executions, as SQLMesh stamped them: 'start' and 'end'
    in time order (the plan's included)."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as conn:
        rows = conn.execute("SELECT what FROM _meta.marks ORDER BY marked_at, what DESC")
        return [what for (what,) in rows.fetchall()]


def waits_for_other_runs(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> list[str]:
    """The log lines in which the runs said which other run they waited for."""
    return [
        r.user_message
        for run_id in run_ids
        for r in instance.all_logs(run_id)
        if r.user_message.startswith("Waiting for Dagster run ")
    ]


def evaluating(run: Launched, markers: Path, batches: int = 1, timeout: float = 180) -> None:
    """Wait until SQLMesh has begun ``batches`` batches of ``src.events_a`` in ``run``."""
    wait_for(
        lambda: (
            len(list(markers.glob("events_a-*.started"))) >= batches
            or run.process.poll() is not None
        ),
        timeout,
        "SQLMesh to be evaluating src.events_a",
    )
    assert run.process.poll() is None, run.log_tail()


def kill_the_leader(
    instance: dg.DagsterInstance, run: Launched, markers: Path, timeout: float = 120
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Once SQLMesh is evaluating, SIGKILL the process executing it for ``run`` (the leader
    step's only; the run goes on). The leader's record (``coordinator_runs``), the run's
    result, and the seconds from the kill to the run's end."""
    try:
        evaluating(run, markers, batches=2)
        (leader,) = coordinator_runs(instance)
        os.kill(leader["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        result = run.wait(timeout=timeout)
        return leader, result, time.monotonic() - killed_at
    finally:
        run.kill()


def events_a_days(db_path: Path) -> tuple[int, int]:
    """``src.events_a`` of the slow project: its rows written twice, and its days."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as conn:
        dupes = conn.execute(
            "SELECT COUNT(*) FROM (SELECT id, ds FROM src.events_a GROUP BY ALL "
            "HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        days = conn.execute("SELECT COUNT(DISTINCT ds) FROM src.events_a").fetchone()[0]
    return dupes, days


def assert_the_next_run_completes(
    instance: dg.DagsterInstance, project: Path, db_path: Path, days: int, monkeypatch: Any
) -> None:
    """After a run whose leader was killed: the next run (in process, no slow batches)
    materializes the slow project's four models, and ``src.events_a`` holds each of its
    ``days`` once."""
    from dg_sqlmesh.metadata import RUN
    from helpers.harness import materialized

    monkeypatch.setenv(BATCH_SECONDS_ENV, "0")
    again = run_in_process({"project_dir": str(project)}, instance)
    assert again.success
    shown = materialized(instance, again.run_id)
    assert len(shown) == 4 and {m[RUN.state] for m in shown.values()} == {"materialized"}
    assert events_a_days(db_path) == (0, days)  # every day once


def coordinator_runs(instance: dg.DagsterInstance) -> list[dict[str, Any]]:
    """The SQLMesh executions the runs of ``instance`` recorded in their event logs, oldest
    run first: ``{"run_id", "pid", "host", "attempt", "step"}`` each."""
    from dg_sqlmesh.execution.coordinator import recorded_executions

    found = []
    for run in reversed(instance.get_runs()):
        for execution in recorded_executions(instance, run.run_id):
            found.append({"run_id": run.run_id, **execution})
    return found


def executions_of(instance: dg.DagsterInstance, run_id: str) -> int:
    """How many SQLMesh executions the run's leader recorded."""
    from dg_sqlmesh.execution.coordinator import recorded_executions

    return len(recorded_executions(instance, run_id))


# --------------------------------------------------------------------------- SQLMesh state


def state_intervals(
    project: Path, environment: str = "prod", gateway: str | None = None
) -> dict[str, list[tuple[int, int]]]:
    """Model name -> the ``[start_ms, end_ms)`` intervals SQLMesh's state records for it."""
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    from dg_sqlmesh.project.config import load_config

    set_console(NoopConsole())
    config, gateway_name = load_config(project, gateway)
    context = Context(paths=[project], config=config, gateway=gateway_name)
    try:
        env = context.state_reader.get_environment(environment)
        assert env is not None, f"no environment {environment}"
        snapshots = context.state_reader.get_snapshots(env.snapshots)
        found: dict[str, list[tuple[int, int]]] = {}
        for snapshot in snapshots.values():
            name = snapshot.model.name if snapshot.is_model else snapshot.name
            found[name] = [(int(s), int(e)) for s, e in snapshot.intervals]
        return found
    finally:
        context.close()


def merged(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent or overlapping intervals merged (SQLMesh stores them merged already)."""
    out: list[list[int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


if __name__ == "__main__":
    main()
