"""The measured side of the benchmark: one fresh process per measurement.

``run.py`` starts ``python benchmarks/children.py KIND JSON`` for every measurement,
so that imports, SQLMesh's and Dagster's in-memory caches and our own module-level
memo start cold in each one. A child prints one ``BENCH_RESULT {...}`` line.

Timers inside a child start *after* the imports listed in ``_preimport`` (the same
set for the two sides of a comparison, see each kind), so that they compare work,
not import time; import time is measured on its own by the cached-load comparison,
which times whole processes from the parent.

The job functions at the bottom are what the multiprocess executor's step processes
re-import (this module is on their ``PYTHONPATH``): the project comes from
environment variables, like ``tests/helpers/defs_from_env.py``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ENV_PROJECT = "DG_SQLMESH_BENCH_PROJECT"
ENV_MODELS = "DG_SQLMESH_BENCH_MODELS"  # JSON: [[name, [parents...]], ...] for trivial assets
ENV_CHECKS = "DG_SQLMESH_BENCH_CHECKS"  # checks per trivial asset


def _clock() -> tuple[float, float]:
    self_ = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = self_.ru_utime + self_.ru_stime + kids.ru_utime + kids.ru_stime
    return time.perf_counter(), cpu


def _since(start: tuple[float, float]) -> dict[str, float]:
    now = _clock()
    return {"wall": now[0] - start[0], "cpu": now[1] - start[1]}


def _watch_gc() -> dict[str, float]:
    """Seconds spent in CPython's garbage collector from now on, and full collections.

    A full collection walks every live object (~0.1 s with dagster and sqlmesh imported),
    so where one falls is worth knowing when comparing two short timings.
    """
    import gc

    totals = {"gc": 0.0, "gc_full": 0}
    started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        totals["gc"] += time.perf_counter() - started[0]
        totals["gc_full"] += info["generation"] == 2

    gc.callbacks.append(on_gc)
    return totals


def _quiet_sqlmesh() -> None:
    from sqlmesh.core.console import NoopConsole, set_console

    set_console(NoopConsole())


def _executions(project: Path) -> int:
    """Rows of ``_meta.executions``: one per SQLMesh execution with work (generator)."""
    import duckdb

    with duckdb.connect(str(project / "db.duckdb"), read_only=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM _meta.executions").fetchone()[0])


# --- load -----------------------------------------------------------------------------


def sqlmesh_context(args: dict) -> dict:
    """``sqlmesh.Context(paths=...)``: SQLMesh loading the project (imports excluded)."""
    import sqlmesh

    _quiet_sqlmesh()
    gc_totals = _watch_gc()
    start = _clock()
    context = sqlmesh.Context(paths=[args["project"]])
    result = {"load": {**_since(start), **gc_totals}, "models": len(context.models)}
    context.close()
    return result


def dg_definitions(args: dict) -> dict:
    """``sqlmesh_definitions_factory(...)`` (imports of dagster, sqlmesh, ours excluded)."""
    import dagster  # noqa: F401
    import sqlmesh  # noqa: F401 - the cold path loads a SQLMesh context

    import dg_sqlmesh

    gc_totals = _watch_gc()
    start = _clock()
    defs = dg_sqlmesh.sqlmesh_definitions_factory(project_dir=args["project"])
    load = {**_since(start), **gc_totals}
    assets = defs.assets or []
    return {"load": load, "assets": len(assets)}


# --- prepare --------------------------------------------------------------------------


def prepare(args: dict) -> dict:
    """Create the prod environment (skip_backfill: every interval left for a run)."""
    sys.path.insert(0, str(Path(args["repo"]) / "tests"))
    from helpers.harness import plan_project

    import dg_sqlmesh

    project = Path(args["project"])
    start = _clock()
    if args.get("plan", True):
        plan_project(project)
    dg_sqlmesh.sqlmesh_definitions_factory(project_dir=str(project))  # warms the cache
    out = {"prepare": _since(start)}
    if args.get("plan", True):
        out["executions"] = _executions(project)
    return out


# --- in-process run -------------------------------------------------------------------


def sqlmesh_run(args: dict) -> dict:
    """What ``sqlmesh run`` does: load the project, run prod (imports excluded)."""
    import sqlmesh

    _quiet_sqlmesh()
    project = Path(args["project"])
    start = _clock()
    context = sqlmesh.Context(paths=[project])
    loaded = _since(start)
    select = args.get("select")
    status = context.run(select_models=select, no_auto_upstream=True) if select else context.run()
    total = _since(start)
    context.close()
    return {
        "load": loaded,
        "total": total,
        "ok": "SUCCESS" in str(status),
        "status": str(status),
        "executions": _executions(project),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _step_times(instance, run_id: str) -> dict[str, tuple[float, float | None]]:  # noqa: ANN001
    import dagster as dg

    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    kinds = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    for entry in instance.all_logs(run_id, of_type=kinds):
        event = entry.dagster_event
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        else:
            ends[event.step_key] = entry.timestamp
    return {key: (t, ends.get(key)) for key, t in starts.items()}


def _leader(instance, run_id: str) -> str | None:  # noqa: ANN001
    from dg_sqlmesh.execution.coordinator import recorded_executions

    executions = recorded_executions(instance, run_id)
    return executions[0]["step"] if executions else None


def _instance(home: str, storage: dict | None):  # noqa: ANN202
    """A test instance in ``home``; with ``storage`` (a dagster.yaml ``storage:`` section,
    e.g. PostgreSQL) its run, event log and schedule storage live there instead."""
    import dagster as dg

    return dg.instance_for_test(temp_dir=home, overrides={"storage": storage} if storage else None)


def _trivial_models(args: dict) -> list:
    """[[name, [parents]], ...]: from a JSON file (large projects exceed argv's limits)."""
    if "trivial_models_file" in args:
        return json.loads(Path(args["trivial_models_file"]).read_text())
    return json.loads(args["trivial_models"])


def _materializations(instance, run_id: str) -> int:  # noqa: ANN001
    import dagster as dg

    return len(instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION))


def dagster_run(args: dict) -> dict:
    """``sqlmesh_job`` in process: definitions (cached description) + execute_in_process."""
    import dagster  # noqa: F401 - imported before the timer, as on the other sides
    import sqlmesh  # noqa: F401 - the leader step needs it; excluded like on the other side

    import dg_sqlmesh
    import dg_sqlmesh.execution.runner  # noqa: F401 - imported lazily by the leader

    project = Path(args["project"])
    profile = args.get("profile")
    storage = args.get("storage")
    with tempfile.TemporaryDirectory() as home, _instance(home, storage) as instance:
        profiler = _profiler(profile)
        start = _clock()
        defs = dg_sqlmesh.sqlmesh_definitions_factory(project_dir=str(project))
        job = defs.resolve_job_def("sqlmesh_job")
        loaded = _since(start)
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        total = _since(start)
        _stop_profiler(profiler, profile)
        steps = _step_times(instance, result.run_id)
        leader = _leader(instance, result.run_id)
        leader_s = None
        if leader in steps and steps[leader][1] is not None:
            leader_s = steps[leader][1] - steps[leader][0]
        materialized = _materializations(instance, result.run_id)
    return {
        "load": loaded,
        "total": total,
        "ok": bool(result.success) and materialized == args["models"],
        "materialized": materialized,
        "leader_step_s": leader_s,
        "executions": _executions(project),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _trivial_definitions(models: list, n_checks: int):  # noqa: ANN202
    """N trivial assets shaped like the project (same deps), each with ``n_checks`` checks,
    each yielding a MaterializeResult carrying its check results."""
    import dagster as dg

    def key(name: str) -> dg.AssetKey:
        return dg.AssetKey(["db", *name.split(".")])

    def make(name: str, parents: list[str]) -> dg.AssetsDefinition:
        asset_key = key(name)
        specs = [dg.AssetCheckSpec(f"check_{i}", asset=asset_key) for i in range(n_checks)]

        @dg.asset(
            key=asset_key,
            deps=[key(p) for p in parents],
            check_specs=specs,
        )
        def _trivial():  # noqa: ANN202
            return dg.MaterializeResult(
                check_results=[dg.AssetCheckResult(check_name=s.name, passed=True) for s in specs]
            )

        return _trivial

    assets = [make(name, parents) for name, parents in models]
    job = dg.define_asset_job("trivial_job", selection=dg.AssetSelection.all())
    return dg.Definitions(assets=assets, jobs=[job])


def dagster_floor(args: dict) -> dict:
    """The Dagster floor: the trivial job in process on the same kind of instance."""
    import dagster  # noqa: F401 - imported before the timer, as on the other sides

    models = _trivial_models(args)
    storage = args.get("storage")
    with tempfile.TemporaryDirectory() as home, _instance(home, storage) as instance:
        start = _clock()
        defs = _trivial_definitions(models, args["checks"])
        job = defs.resolve_job_def("trivial_job")
        loaded = _since(start)
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        total = _since(start)
        materialized = _materializations(instance, result.run_id)
    return {
        "load": loaded,
        "total": total,
        "ok": bool(result.success) and materialized == len(models),
        "materialized": materialized,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def load_floor(args: dict) -> dict:
    """The load floor: import dagster and build the trivial definitions (N assets with the
    project's dependencies and checks, and a job over all of them), as our cached load
    builds ours. ``run.py`` times this whole process, interpreter start included."""
    import dagster  # noqa: F401

    models = _trivial_models(args)
    defs = _trivial_definitions(models, args["checks"])
    return {"assets": len(defs.assets or [])}


# --- multiprocess run -----------------------------------------------------------------


def sqlmesh_job():  # noqa: ANN201 - re-imported by every step process
    import dg_sqlmesh

    defs = dg_sqlmesh.sqlmesh_definitions_factory(project_dir=os.environ[ENV_PROJECT])
    return defs.resolve_job_def("sqlmesh_job")


def __getattr__(name: str):  # noqa: ANN202 - ``ui_defs``: the code location of ui_run
    if name != "ui_defs":
        raise AttributeError(name)
    import dg_sqlmesh

    return dg_sqlmesh.sqlmesh_definitions_factory(project_dir=os.environ[ENV_PROJECT])


def ui_run(args: dict) -> dict:
    """A run as the UI launches it: the implicit asset job on the code location's default
    executor, no run config; definitions loaded in the run's process, as a run worker does."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    os.environ[ENV_PROJECT] = args["project"]
    select = args.get("select")
    repository = ReconstructableRepository.for_file(__file__, "ui_defs")
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        start = _clock()
        result = dg.execute_job(
            repository.get_reconstructable_job("__ASSET_JOB"),
            instance=instance,
            asset_selection=[dg.AssetKey(["db", *m.split(".")]) for m in select]
            if select
            else None,
            raise_on_error=False,
        )
        total = _since(start)
        materialized = _materializations(instance, result.run_id)
        executions = len(_recorded(instance, result.run_id))
    return {
        "total": total,
        "ok": bool(result.success) and materialized == args["models"],
        "materialized": materialized,
        "store_executions": executions,
        "executions": _executions(Path(args["project"])),
    }


def live_chain(args: dict) -> dict:
    """A sequential chain of ``length`` models, each about half a second of DuckDB work,
    each table recording when SQLMesh began it; run as the UI runs it (default executor).
    The share of the chain's materializations recorded before SQLMesh began its last model."""
    import dagster as dg
    import duckdb
    import yaml
    from sqlmesh import Context

    from dg_sqlmesh import sqlmesh_definitions_factory

    length = args["length"]
    with tempfile.TemporaryDirectory() as root_dir:
        root = Path(root_dir)
        (root / "models").mkdir()
        config = {
            "gateways": {
                "duckdb": {"connection": {"type": "duckdb", "database": str(root / "db.duckdb")}}
            },
            "default_gateway": "duckdb",
            "model_defaults": {"dialect": "duckdb", "start": "2024-01-01"},
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        for i in range(1, length + 1):
            source = f" FROM chain.m{i - 1:02d}" if i > 1 else ""
            (root / "models" / f"m{i:02d}.sql").write_text(
                f"MODEL (name chain.m{i:02d}, kind FULL, cron '@daily');\n"
                f"SELECT now() AS evaluated_at, (SELECT sum(hash(range)) FROM range("
                f"{args['rows']})) AS work{source}\n"
            )
        context = Context(paths=[root])
        context.plan("prod", auto_apply=True, no_prompts=True, skip_backfill=True)
        context.close()
        defs = sqlmesh_definitions_factory(project_dir=str(root))
        job = defs.resolve_implicit_global_asset_job_def()
        with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as inst:
            start = _clock()
            result = job.execute_in_process(instance=inst, raise_on_error=False)
            total = _since(start)
            records = inst.get_records_for_run(
                result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
            recorded = [r.event_log_entry.timestamp for r in records]
        with duckdb.connect(str(root / "db.duckdb"), read_only=True) as conn:
            (last,) = conn.execute(f"SELECT max(evaluated_at) FROM chain.m{length:02d}").fetchone()
    early = sum(1 for t in recorded if t < last.timestamp())
    return {
        "total": total,
        "ok": bool(result.success) and len(recorded) == length,
        "early": early,
        "share": early / (length - 1),
    }


def _recorded(instance, run_id: str) -> list:  # noqa: ANN001
    from dg_sqlmesh.execution.coordinator import recorded_executions

    return recorded_executions(instance, run_id)


def trivial_job():  # noqa: ANN201 - re-imported by every step process
    models = json.loads(os.environ[ENV_MODELS])
    defs = _trivial_definitions(models, int(os.environ[ENV_CHECKS]))
    return defs.resolve_job_def("trivial_job")


def multiprocess(args: dict) -> dict:
    """One run under the multiprocess executor; per-step STEP_START->STEP_SUCCESS times."""
    import children  # this file as an importable module, for reconstructable()
    import dagster as dg

    trivial = args["side"] == "trivial"
    if trivial:
        os.environ[ENV_MODELS] = args["trivial_models"]
        os.environ[ENV_CHECKS] = str(args["checks"])
        target = children.trivial_job
    else:
        os.environ[ENV_PROJECT] = args["project"]
        target = children.sqlmesh_job
    config = {"execution": {"config": {"multiprocess": {"max_concurrent": args["concurrency"]}}}}
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        start = _clock()
        result = dg.execute_job(
            dg.reconstructable(target), instance=instance, run_config=config, raise_on_error=False
        )
        total = _since(start)
        steps = _step_times(instance, result.run_id)
        materialized = _materializations(instance, result.run_id)
        out: dict = {
            "total": total,
            "ok": bool(result.success) and materialized == args["models"],
            "materialized": materialized,
            "steps": {k: [s, e] for k, (s, e) in steps.items()},
        }
        if not trivial:
            from dg_sqlmesh.execution.coordinator import recorded_executions

            out["leader"] = _leader(instance, result.run_id)
            out["store_executions"] = len(recorded_executions(instance, result.run_id))
            out["executions"] = _executions(Path(args["project"]))
    return out


# --- profiling helpers ----------------------------------------------------------------


def _profiler(path: str | None):  # noqa: ANN202
    if not path:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)  # coarse: the fine timer costs 15 us a sample here
    profiler.start()
    return profiler


def _stop_profiler(profiler, path: str | None) -> None:  # noqa: ANN001
    if profiler is None or not path:
        return
    profiler.stop()
    Path(path).write_text(profiler.output_text(unicode=False, color=False))


KINDS = {
    "sqlmesh_context": sqlmesh_context,
    "dg_definitions": dg_definitions,
    "prepare": prepare,
    "sqlmesh_run": sqlmesh_run,
    "dagster_run": dagster_run,
    "dagster_floor": dagster_floor,
    "load_floor": load_floor,
    "multiprocess": multiprocess,
    "ui_run": ui_run,
    "live_chain": live_chain,
}


def main() -> None:
    kind, payload = sys.argv[1], json.loads(sys.argv[2])
    result = KINDS[kind](payload)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.setdefault("maxrss_mb", usage.ru_maxrss / 1024)
    sys.stdout.flush()
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
