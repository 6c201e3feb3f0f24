"""Load test: N Dagster runs of one SQLMesh environment launched at the same instant.

Everything is on a private PostgreSQL server: the example shop project's ``postgres``
gateway (warehouse and SQLMesh state) and the Dagster instance's storage (dagster-postgres,
from a real ``dagster.yaml``). Each run selects an overlapping, upstream-closed set of
models and runs in its own process with the multiprocess executor (or, with ``--executor
celery``, on two Celery workers fed by a Redis broker, every run's steps spread over
them). Afterwards the script
checks what ended up in the warehouse, in SQLMesh's state and in Dagster's event log:

* SQLMesh executions never overlapped (``before_all``/``after_all`` stamps written by
  SQLMesh itself in ``_meta.marks``), and each run executed SQLMesh at most once per attempt;
* no interval was evaluated twice: the intervals the runs reported for each model are
  disjoint across runs, every model's intervals in SQLMesh's state are contiguous, and every
  model with a grain holds each grain value once;
* each asset was materialized at most once per run, never without rows in its table, and
  every run ended in success, or in failure with a described step failure.

Usage (from the repository root)::

    .venv/bin/python benchmarks/load_test.py            # 6 runs
    .venv/bin/python benchmarks/load_test.py --runs 8 --max-concurrent 3 --seed 2
    .venv/bin/python benchmarks/load_test.py --executor celery   # needs redis-server

Exits non-zero when a check fails. Needs PostgreSQL server binaries (see
``.ci/install-postgres.sh``); as root, the server runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p
)
os.environ.setdefault("SQLMESH__DISABLE_ANONYMIZED_ANALYTICS", "1")

MARKS = [
    "CREATE SCHEMA IF NOT EXISTS _meta",
    "CREATE TABLE IF NOT EXISTS _meta.marks (marked_at TIMESTAMP, what VARCHAR)",
    "INSERT INTO _meta.marks VALUES (CAST(clock_timestamp() AS TIMESTAMP), 'start')",
]
MARK_END = "INSERT INTO _meta.marks VALUES (CAST(clock_timestamp() AS TIMESTAMP), 'end')"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="runs launched at once (>= 2)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="step processes per run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the selections")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--executor",
        choices=["multiprocess", "celery"],
        default="multiprocess",
        help="celery: every run's steps on two Celery workers (a Redis broker)",
    )
    args = parser.parse_args(argv)

    from helpers.pg_server import PostgresServer, postgres_available

    reason = postgres_available()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="dg-sqlmesh-load-"))
    print(f"work folder: {work}")
    with PostgresServer() as pg:
        failures = run_load_test(pg, work, args)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("\nFAILED CHECKS:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("\nall checks passed")
    return 0


def run_load_test(pg, work: Path, args: argparse.Namespace) -> list[str]:
    import dagster as dg
    from helpers.harness import copy_project
    from helpers.reliability import launch

    from dg_sqlmesh import load_project
    from dg_sqlmesh.execution.coordinator import recorded_executions as executions_of

    pg.create_database("shop")
    pg.create_database("dagster")
    os.environ.update(
        SHOP_PG_HOST=pg.host,
        SHOP_PG_PORT=str(pg.port),
        SHOP_PG_USER=pg.user,
        SHOP_PG_PASSWORD=pg.password,
        SHOP_PG_DATABASE="shop",
    )
    project = copy_project(ROOT / "examples" / "shop", work / "shop")
    with open(project / "config.yaml", "a") as config:  # stamp each SQLMesh execution
        config.write("".join(f"  - {json.dumps(s)}\n" for s in MARKS))
        config.write(f"after_all:\n  - {json.dumps(MARK_END)}\n")
    t0 = time.monotonic()
    plan(project)
    print(f"planned prod on the postgres gateway (no backfill) in {time.monotonic() - t0:.1f} s")

    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        json.dumps(  # JSON is YAML
            {
                "storage": pg.dagster_storage("dagster"),
                "telemetry": {"enabled": False},
            },
            indent=2,
        )
    )
    description = load_project(project, "postgres")
    models = {m.fqn: m for m in description.models if not m.is_external}
    selections = make_selections(models, args.runs, args.seed)
    resource = {"project_dir": str(project), "gateway": "postgres"}

    instance = dg.DagsterInstance.from_config(str(home))
    cluster = None
    try:
        executor_config = None
        if args.executor == "celery":
            from helpers.celery_cluster import CeleryCluster
            from helpers.reliability import SPEC_ENV

            spec = json.dumps({"resource": resource, "executor": "celery"})
            cluster = CeleryCluster(work / "celery", env={SPEC_ENV: spec}).__enter__()
            executor_config = cluster.executor_config()
            print(f"{cluster.n_workers} Celery workers of {cluster.concurrency} processes ready")
        go = work / "go"
        launched = [
            launch(
                instance,
                resource,
                work / "runs",
                select=selection,
                executor=args.executor,
                executor_config=executor_config,
                max_concurrent=args.max_concurrent,
                go_file=go,
                name=f"run{i}",
            )
            for i, selection in enumerate(selections)
        ]
        deadline = time.monotonic() + 600
        while not all(r.ready or r.process.poll() is not None for r in launched):
            if time.monotonic() > deadline:
                raise SystemExit("runs did not get ready in 600 s")
            time.sleep(0.1)
        print(f"{len(launched)} runs ready; go")
        t0 = time.monotonic()
        go.touch()
        results = []
        for i, run in enumerate(launched):
            try:
                results.append(run.wait(timeout=1800))
            except AssertionError as exc:
                results.append({"run_id": None, "success": False, "error": str(exc)})
                print(f"run{i}: no result\n{exc}")
        wall = time.monotonic() - t0
        if cluster is not None:
            workers = _workers_used(instance, [r["run_id"] for r in results if r["run_id"]])
            print(f"steps ran in {len(workers)} Celery worker process(es)")
        return check(pg, project, instance, executions_of, models, selections, results, wall)
    finally:
        if cluster is not None:
            cluster.__exit__()
        instance.dispose()


def _workers_used(instance, run_ids: list[str]) -> set[int]:  # noqa: ANN001
    import dagster as dg

    return {
        r.event_log_entry.dagster_event.pid
        for run_id in run_ids
        for r in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_START
        ).records
    }


def plan(project: Path) -> None:
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    from dg_sqlmesh.project.config import load_config

    set_console(NoopConsole())
    config, gateway = load_config(project, "postgres")
    context = Context(paths=[project], config=config, gateway=gateway)
    try:
        context.plan("prod", auto_apply=True, no_prompts=True, skip_backfill=True)
    finally:
        context.close()


def make_selections(models: dict, runs: int, seed: int) -> list[list[str]]:
    """Overlapping selections, each closed under upstreams (asset key strings)."""
    rng = random.Random(seed)
    leaves = [f for f in models if not any(f in m.depends_on for m in models.values())]

    def with_ancestors(fqns: set[str]) -> set[str]:
        found, frontier = set(), set(fqns)
        while frontier:
            found |= frontier
            frontier = {p for f in frontier for p in models[f].depends_on if p in models} - found
        return found

    selections = []
    for i in range(runs):
        targets = {leaves[i % len(leaves)]}
        targets |= set(rng.sample(list(models), rng.randint(0, 2)))
        chosen = with_ancestors(targets)
        selections.append(
            sorted(f"{models[f].catalog}/{models[f].schema}/{models[f].table}" for f in chosen)
        )
    return selections


def check(pg, project, instance, executions_of, models, selections, results, wall) -> list[str]:
    import dagster as dg

    failures: list[str] = []
    by_key = {f"{m.catalog}/{m.schema}/{m.table}": m for m in models.values()}
    from dg_sqlmesh.translation.partitions import model_partitions_def

    partitioned = {key for key, m in by_key.items() if model_partitions_def(m) is not None}
    statuses: Counter[str] = Counter()
    states: Counter[str] = Counter()
    executions: dict[str, int] = {}
    evaluated: dict[str, list[tuple[str, str]]] = defaultdict(list)  # key -> [(run, interval)]
    print("\nper run:")
    for i, (selection, result) in enumerate(zip(selections, results, strict=True)):
        run_id = result.get("run_id")
        if run_id is None:
            failures.append(f"run{i} produced no result")
            continue
        run = instance.get_run_by_id(run_id)
        statuses[run.status.value] += 1
        executions[run_id] = len(executions_of(instance, run_id))
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        per_asset: Counter[tuple[str, str | None]] = Counter()  # (key, partition)
        run_states: Counter[str] = Counter()
        for record in records:
            mat = record.event_log_entry.dagster_event.event_specific_data.materialization
            key = mat.asset_key.to_user_string()
            meta = {k: v.value for k, v in mat.metadata.items()}
            per_asset[(key, mat.partition)] += 1
            state = meta.get("sqlmesh/state")
            run_states[state] += 1
            states[state] += 1
            if key not in selection:
                failures.append(f"run{i} materialized {key}, which it did not select")
            if state not in ("materialized", "up_to_date"):
                failures.append(f"run{i}: {key} materialized with state {state!r}")
            schema, table = key.split("/")[1:]
            (count,) = pg.execute(f"SELECT COUNT(*) FROM {schema}.{table}", dbname="shop")[0]
            if count == 0:
                failures.append(f"run{i}: {key} shown materialized but {schema}.{table} is empty")
            # a partition's own interval, or an unpartitioned model's evaluated intervals
            own = [meta["sqlmesh/interval"]] if "sqlmesh/interval" in meta else []
            if state == "materialized":
                for interval in meta.get("sqlmesh/intervals") or own:
                    evaluated[key].append((f"run{i}", interval))
        for (key, partition), n in per_asset.items():
            if n > 1:
                where = f" partition {partition}" if partition else ""
                failures.append(f"run{i}: {key}{where} materialized {n} times")
        if run.status == dg.DagsterRunStatus.FAILURE:
            steps = instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.STEP_FAILURE
            ).records
            for record in steps:
                data = record.event_log_entry.dagster_event.event_specific_data
                text = getattr(getattr(data, "user_failure_data", None), "description", None)
                text = text or (data.error.message if data and data.error else "")
                if not text.strip():
                    failures.append(f"run{i}: step failure without a message")
                print(f"    failure: {text.strip().splitlines()[0][:200]}")
        elif run.status != dg.DagsterRunStatus.SUCCESS:
            failures.append(f"run{i} ended {run.status.value}")
        # a partitioned model with nothing due records nothing (no partition was written)
        unmaterialized = set(selection) - {k for k, _ in per_asset} - partitioned
        if run.status == dg.DagsterRunStatus.SUCCESS and unmaterialized:
            failures.append(f"run{i} succeeded without materializing {sorted(unmaterialized)}")
        print(
            f"  run{i}: {run.status.value:<7} {result.get('seconds', 0):6.1f} s  "
            f"selected {len(selection):2d}  materialized {sum(per_asset.values()):2d} "
            f"({dict(run_states)})  sqlmesh executions {executions[run_id]}"
        )

    # SQLMesh executions never overlapped
    marks = pg.execute("SELECT marked_at, what FROM _meta.marks ORDER BY marked_at", dbname="shop")
    sequence = [what for _, what in marks]
    interleaved = sum(1 for a, b in zip(sequence, sequence[1:], strict=False) if a == b)
    if interleaved or sequence[: len(sequence) // 2 * 2] != ["start", "end"] * (len(sequence) // 2):
        failures.append(f"SQLMesh executions overlapped: {sequence}")
    with_work = sequence.count("start") - 1  # the plan stamped once

    # no interval evaluated twice, across runs
    twice = 0
    for key, items in evaluated.items():
        spans = sorted(_span(iv) + (run,) for run, iv in items)
        for (_, e1, r1), (s2, e2, r2) in zip(spans, spans[1:], strict=False):
            if s2 < e1:
                twice += 1
                failures.append(f"{key}: {r1} and {r2} both evaluated [{s2}, {min(e1, e2)})")

    # SQLMesh's state: contiguous intervals; the warehouse: every grain once
    from helpers.reliability import merged, state_intervals

    intervals = state_intervals(project, gateway="postgres")
    gaps = {name: merged(iv) for name, iv in intervals.items() if len(merged(iv)) > 1}
    for name, spans in gaps.items():
        failures.append(f"{name}: intervals in SQLMesh's state are not contiguous: {spans}")
    duplicates = 0
    for model in models.values():
        if not model.grain:
            continue
        grain = ", ".join(model.grain)
        (dupes,) = pg.execute(
            f"SELECT COUNT(*) - COUNT(DISTINCT ({grain})) FROM {model.schema}.{model.table}",
            dbname="shop",
        )[0]
        if dupes:
            duplicates += dupes
            failures.append(f"{model.name}: {dupes} duplicate rows on its grain ({grain})")
    selected_once = set().union(*map(set, selections))
    never = sorted(k for k in by_key if k in selected_once and not evaluated.get(k))
    for key in never:
        failures.append(f"{key} was selected but no run evaluated it")

    print("\ncounts:")
    print(f"  runs launched at once          {len(results)}")
    print(f"  run statuses                   {dict(statuses)}")
    print(f"  wall time (go -> last run)     {wall:.1f} s")
    per_run = sorted(executions.values())
    print(f"  SQLMesh executions (recorded)  {sum(per_run)}  per run {per_run}")
    print(f"  SQLMesh executions with work   {with_work}  (before_all/after_all stamps)")
    print(f"  overlapping executions         {interleaved}")
    print(f"  materializations               {sum(states.values())}  {dict(states)}")
    n_intervals = sum(len(v) for v in evaluated.values())
    print(f"  intervals evaluated            {n_intervals} over {len(evaluated)} models")
    print(f"  intervals evaluated twice      {twice}")
    print(f"  non-contiguous state intervals {len(gaps)}")
    print(f"  duplicate grain rows           {duplicates}")
    print(f"  selected models never run      {len(never)}")
    return failures


def _span(interval: str) -> tuple[str, str]:
    start, end = interval.strip("[)").split(", ")
    return (datetime.fromisoformat(start).isoformat(), datetime.fromisoformat(end).isoformat())


if __name__ == "__main__":
    sys.exit(main())
