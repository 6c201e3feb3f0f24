"""dg-sqlmesh performance benchmark: our overhead against SQLMesh and Dagster alone.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python benchmarks/run.py                      # everything, default sizes
    .venv/bin/python benchmarks/run.py --quick              # smoke test, ~3 minutes
    .venv/bin/python benchmarks/run.py --only load run --models 100 --reps 5

Every measurement is its own fresh process (``benchmarks/children.py``), started on a
freshly restored copy of a prepared project, so that both sides of a comparison start
cold and evaluate exactly the same missing intervals. Sides are interleaved and their
order alternates between repetitions; the table shows medians. See
``benchmarks/README.md`` for what each row compares and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD = HERE / "children.py"

# Targets: (limit, how the limit applies)
COLD_LOAD_RATIO = 1.20  # cold definitions load <= 1.2 x sqlmesh.Context(paths=...)
CACHED_LOAD_SLACK_S = 0.30  # cached load <= `python -c "import dagster, sqlmesh"` + 0.3 s
# ... up to this size; above it Dagster's own asset builds exceed the slack (the load
# floor row applies there)
CACHED_LOAD_SLACK_MODELS = 1000
LOAD_FLOOR_RATIO = 1.20  # cached load <= 1.2 x the load floor (Dagster building trivial assets)
RUN_RATIO = 1.15  # in-process run <= 1.15 x (sqlmesh run + Dagster floor)
POSTGRES_RUN_RATIO = 1.15  # the same on a PostgreSQL instance (floor on PostgreSQL too)
LEADER_RATIO = 1.03  # the leader step <= 1.03 x sqlmesh run (context load + run)
FOLLOWER_RATIO = 1.20  # non-leader step <= 1.2 x trivial step (multiprocess executor)
MEMORY_RATIO = 1.30  # peak RSS of an in-process run <= 1.3 x sqlmesh run's
UI_RATIO = 1.30  # "Materialize all" from the UI <= 1.3 x max(sqlmesh run, in-process floor)
LIVE_SHARE = 0.80  # of a sequential chain's materializations, recorded before its last model
LIVE_CHAIN = 12  # models in that chain
LIVE_ROWS = 60_000_000  # DuckDB work per chain model: about half a second
UI_SUBSET = 10  # models of the subset launched from the UI

SECTIONS = ("load", "run", "memory", "leader", "postgres", "multiprocess", "ui", "live")


# --- processes ------------------------------------------------------------------------


@dataclass
class Proc:
    """One finished child process: wall time seen by the parent, and its rusage."""

    wall: float
    cpu: float  # user + system of the child and the children it waited for
    maxrss_mb: float
    result: dict = field(default_factory=dict)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["SQLMESH__DISABLE_ANONYMIZED_ANALYTICS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    env.pop("DAGSTER_HOME", None)
    return env


def run_process(cmd: list[str], *, timeout: float, cwd: Path | None = None) -> Proc:
    """Run ``cmd`` to completion; wall clock from the parent, rusage from ``wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=_env(), cwd=cwd)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{tail}")
    result: dict = {}
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT ") :])
    return Proc(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024,
        result=result,
    )


LOADS: list[float] = []  # 1-minute load average after each measurement


def child(kind: str, payload: dict, *, timeout: float = 1800) -> Proc:
    proc = run_process([sys.executable, str(CHILD), kind, json.dumps(payload)], timeout=timeout)
    LOADS.append(os.getloadavg()[0])
    return proc


# --- projects -------------------------------------------------------------------------


class Projects:
    """Generated projects at fixed paths, each with a snapshot to restore from.

    The description cache is keyed by the project's absolute path, so a project is
    always restored to the same path; its DuckDB file (warehouse and SQLMesh state)
    and both caches come back exactly as prepared.
    """

    def __init__(self, workdir: Path, audits: int, seed: int, planned: set[int]) -> None:
        self.workdir = workdir
        self.audits = audits
        self.seed = seed
        self.planned = planned  # sizes that some section runs: plan them on first use
        self.prepared: dict[int, bool] = {}
        self.planned_executions: int | None = None

    def path(self, n: int) -> Path:
        return self.workdir / f"p{n}" / "project"

    def snapshot(self, n: int) -> Path:
        return self.workdir / f"p{n}" / "snapshot"

    def models(self, n: int) -> list[list]:
        """[[name, [parents]], ...] of the generated project, for the trivial assets."""
        sys.path.insert(0, str(REPO / "tests"))
        from projects.generate import project_models

        return [[m["name"], m["parents"]] for m in project_models(n, self.seed)]

    def models_file(self, n: int) -> Path:
        """The same as a JSON file: thousands of models exceed a command line's limits."""
        path = self.workdir / f"p{n}" / "models.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.models(n)))
        return path

    def prepare(self, n: int, *, plan: bool) -> None:
        """Generate, plan prod with skip_backfill (if ``plan``), warm caches, snapshot."""
        plan = plan or n in self.planned
        if self.prepared.get(n) is True or self.prepared.get(n) is plan:
            return
        sys.path.insert(0, str(REPO / "tests"))
        from projects.generate import generate_project

        project = self.path(n)
        if project.parent.exists():
            shutil.rmtree(project.parent)
        start = (date.today() - timedelta(days=7)).isoformat()
        generate_project(
            project,
            n,
            seed=self.seed,
            start=start,
            audits_per_model=self.audits,
            db_path=project / "db.duckdb",
            count_executions=True,
        )
        began = time.perf_counter()
        proc = child("prepare", {"project": str(project), "repo": str(REPO), "plan": plan})
        self.prepared[n] = plan
        shutil.copytree(project, self.snapshot(n), symlinks=True)
        if plan:
            self.planned_executions = proc.result.get("executions")
        log(
            f"  prepared {n} models ({'planned' if plan else 'not planned'}) in "
            f"{time.perf_counter() - began:.0f} s"
        )

    def restore(self, n: int) -> Path:
        project = self.path(n)
        if project.exists():
            shutil.rmtree(project)
        shutil.copytree(self.snapshot(n), project, symlinks=True)
        return project

    def drop_caches(self, n: int) -> None:
        shutil.rmtree(self.path(n) / ".cache", ignore_errors=True)

    def description_cache(self, n: int) -> list[Path]:
        return sorted((self.path(n) / ".cache" / "dg_sqlmesh").glob("description-*.json"))

    def cache_stamp(self, n: int) -> list[int]:
        """Modification times of the cached description: a miss rewrites it."""
        return [p.stat().st_mtime_ns for p in self.description_cache(n)]


# --- measurements ---------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def alternate(reps: int, sides: list[str]):  # noqa: ANN201
    """(rep, side) pairs, the order of the sides rotating every repetition."""
    for rep in range(reps):
        shift = rep % len(sides)
        for side in sides[shift:] + sides[:shift]:
            yield rep, side


def _gc_note(samples: list[dict]) -> str:
    seconds = median([s.get("gc", 0.0) for s in samples]) or 0.0
    full = median([s.get("gc_full", 0) for s in samples]) or 0
    return f"{seconds:.2f} s, {full:g} full collection(s)"


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class Row:
    section: str
    models: int
    what: str
    ours: float | None
    base: float | None
    base_label: str
    value: float | None  # the number compared with the limit
    limit: float
    unit: str  # "x" (ratio) or "s" (seconds over the baseline)
    ours_cpu: float | None = None
    base_cpu: float | None = None
    ours_wall: float | None = None
    base_wall: float | None = None
    note: str = ""
    valid: bool = True
    judged: bool = True  # False: measured and shown, no target at this size

    @property
    def verdict(self) -> str:
        if not self.valid:
            return "INVALID"
        if self.value is None or not self.judged:
            return "n/a"
        return "PASS" if self.value <= self.limit + 1e-9 else "FAIL"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.metric = args.metric
        planned: set[int] = set()
        if {"run", "memory"} & set(args.only):
            planned |= set(args.models)
        if "leader" in args.only:
            planned |= set(args.leader_models)
        if "postgres" in args.only:
            planned |= set(args.pg_models)
        if "multiprocess" in args.only:
            planned |= set(args.mp_models)
        if "ui" in args.only:
            planned |= set(args.ui_models)
        self.projects = Projects(args.workdir, args.audits, args.seed, planned)
        self.rows: list[Row] = []
        self.raw: dict = {}
        self.run_measured: dict[int, tuple[dict, list[str]]] = {}
        # (section, what) -> {models: median}: the scaling table
        self.series: dict[tuple[str, str], dict[int, float]] = {}

    def pick(self, measure: dict) -> float:
        return measure[self.metric]

    def scale(self, section: str, what: str, n: int, value: float | None) -> None:
        if value is not None:
            self.series.setdefault((section, what), {})[n] = value

    # load --------------------------------------------------------------------------

    def load(self) -> None:
        args = self.args
        for n in args.cold_models:
            self.projects.prepare(n, plan=False)
            samples: dict[str, list[dict]] = {"ctx": [], "dg": []}
            for rep, side in alternate(args.load_reps, ["ctx", "dg"]):
                self.projects.drop_caches(n)  # both sides: no SQLMesh cache, no description
                payload = {"project": str(self.projects.path(n))}
                kind = "sqlmesh_context" if side == "ctx" else "dg_definitions"
                proc = child(kind, payload)
                samples[side].append(proc.result["load"])
                log(
                    f"  load cold {n:>5} rep {rep + 1} {side:<3} "
                    f"{proc.result['load']['wall']:.2f} s wall"
                )
            self.raw[f"load_cold_{n}"] = samples
            ours = median([self.pick(s) for s in samples["dg"]])
            base = median([self.pick(s) for s in samples["ctx"]])
            self.scale("load", "definitions load, cold (s)", n, ours)
            self.scale("load", "sqlmesh.Context load, cold (s)", n, base)
            self.rows.append(
                Row(
                    "load",
                    n,
                    "definitions load, cold (no cache)",
                    ours,
                    base,
                    "sqlmesh.Context(paths=...)",
                    ours / base,
                    COLD_LOAD_RATIO,
                    "x",
                    ours_cpu=median([s["cpu"] for s in samples["dg"]]),
                    base_cpu=median([s["cpu"] for s in samples["ctx"]]),
                    ours_wall=median([s["wall"] for s in samples["dg"]]),
                    base_wall=median([s["wall"] for s in samples["ctx"]]),
                    note=(
                        "imports excluded on both sides; garbage collection inside the "
                        f"timer {_gc_note(samples['dg'])} (ours) vs "
                        f"{_gc_note(samples['ctx'])} (SQLMesh)"
                    ),
                )
            )

        for n in args.load_models:
            self.projects.prepare(n, plan=False)
            project = self.projects.path(n)
            code = (
                "import dg_sqlmesh; "
                f"dg_sqlmesh.sqlmesh_definitions_factory(project_dir={str(project)!r})"
            )
            floor_payload = {
                "trivial_models_file": str(self.projects.models_file(n)),
                "checks": args.audits,
            }
            commands = {
                "dg": [sys.executable, "-c", code],
                "imports": [sys.executable, "-c", "import dagster, sqlmesh"],
                "floor": [sys.executable, str(CHILD), "load_floor", json.dumps(floor_payload)],
            }
            run_process(commands["dg"], timeout=1800)  # warm: writes the description if missing
            caches = self.projects.description_cache(n)
            stamp = [p.stat().st_mtime_ns for p in caches]
            samples = {side: [] for side in commands}
            for rep, side in alternate(args.load_reps, list(commands)):
                proc = run_process(commands[side], timeout=1200)
                LOADS.append(os.getloadavg()[0])
                samples[side].append({"wall": proc.wall, "cpu": proc.cpu})
                log(f"  load cached {n:>5} rep {rep + 1} {side:<7} {proc.wall:.2f} s wall")
            hit = bool(caches) and [p.stat().st_mtime_ns for p in caches] == stamp
            self.raw[f"load_cached_{n}"] = samples
            ours = median([self.pick(s) for s in samples["dg"]])
            base = median([self.pick(s) for s in samples["imports"]])
            self.rows.append(
                Row(
                    "load",
                    n,
                    "definitions load, project unchanged",
                    ours,
                    base,
                    'python -c "import dagster, sqlmesh"',
                    ours - base,
                    CACHED_LOAD_SLACK_S,
                    "s",
                    ours_cpu=median([s["cpu"] for s in samples["dg"]]),
                    base_cpu=median([s["cpu"] for s in samples["imports"]]),
                    ours_wall=median([s["wall"] for s in samples["dg"]]),
                    base_wall=median([s["wall"] for s in samples["imports"]]),
                    note="whole processes, interpreter start and imports included"
                    + ("" if hit else "; CACHE MISS during measurement")
                    + (
                        ""
                        if n <= CACHED_LOAD_SLACK_MODELS
                        else f"; no target above {CACHED_LOAD_SLACK_MODELS} models (see the "
                        "load floor row)"
                    ),
                    valid=hit,
                    judged=n <= CACHED_LOAD_SLACK_MODELS,
                )
            )
            floor = median([self.pick(s) for s in samples["floor"]])
            self.rows.append(
                Row(
                    "load",
                    n,
                    "definitions load, project unchanged, vs the load floor",
                    ours,
                    floor,
                    f"load floor: import dagster + {n} trivial assets",
                    ours / floor,
                    LOAD_FLOOR_RATIO,
                    "x",
                    ours_cpu=median([s["cpu"] for s in samples["dg"]]),
                    base_cpu=median([s["cpu"] for s in samples["floor"]]),
                    ours_wall=median([s["wall"] for s in samples["dg"]]),
                    base_wall=median([s["wall"] for s in samples["floor"]]),
                    note=f"whole processes; {args.audits} checks per asset and the project's "
                    "dependencies on both sides" + ("" if hit else "; CACHE MISS"),
                    valid=hit,
                )
            )
            self.scale("load", "definitions load, project unchanged (s)", n, ours)
            self.scale("load", "load floor (s)", n, floor)
            self.scale("load", 'python -c "import dagster, sqlmesh" (s)', n, base)

    # in-process run and memory -------------------------------------------------------

    def run_samples(
        self,
        n: int,
        sides: list[str],
        *,
        label: str = "run",
        storage: Callable[[], AbstractContextManager[dict | None]] | None = None,
    ) -> tuple[dict[str, list[dict]], list[str]]:
        """Interleaved samples of ``sqlmesh_run``, ``dagster_run`` and the floor at ``n``.

        ``storage``, if given, opens the Dagster storage of one sample (a fresh PostgreSQL
        database) for the Dagster sides; ``sqlmesh run`` has no Dagster instance.
        """
        args = self.args
        self.projects.prepare(n, plan=True)
        samples: dict[str, list[dict]] = {side: [] for side in sides}
        problems: list[str] = []
        reps = args.reps if n <= args.large else args.large_reps
        for rep, side in alternate(reps, sides):
            with (
                storage() if storage and side != "sqlmesh" else contextlib.nullcontext()
            ) as dagster_storage:
                if side == "floor":
                    payload = {
                        "trivial_models_file": str(self.projects.models_file(n)),
                        "checks": args.audits,
                        "storage": dagster_storage,
                    }
                    proc = child("dagster_floor", payload)
                else:
                    project = self.projects.restore(n)
                    payload = {"project": str(project), "models": n, "storage": dagster_storage}
                    if side == "dagster" and args.profile and rep == 0 and label == "run":
                        payload["profile"] = str(Path(args.profile) / f"dagster_run_{n}.txt")
                    stamp = self.projects.cache_stamp(n)
                    proc = child("sqlmesh_run" if side == "sqlmesh" else "dagster_run", payload)
                    if side == "dagster" and self.projects.cache_stamp(n) != stamp:
                        problems.append(f"rep {rep + 1}: description cache miss")
                    executed = proc.result["executions"] - (self.projects.planned_executions or 0)
                    if executed != 1:
                        problems.append(f"{side} rep {rep + 1}: {executed} SQLMesh executions")
            if not proc.result.get("ok"):
                problems.append(f"{side} rep {rep + 1}: run not successful {proc.result}")
            # Peak RSS of the measured process itself. wait4's figure also covers the
            # processes it forked (SQLMesh loads models in a fork pool; forked workers
            # count the parent's shared pages again), so it is kept only as a note.
            sample = dict(proc.result["total"], maxrss_mb=proc.result["maxrss_mb"])
            sample["tree_maxrss_mb"] = proc.maxrss_mb
            sample["load"] = proc.result.get("load")
            sample["leader_step_s"] = proc.result.get("leader_step_s")
            samples[side].append(sample)
            log(
                f"  {label} {n:>5} rep {rep + 1} {side:<7} {sample['wall']:.2f} s wall "
                f"{sample['cpu']:.2f} s cpu {sample['maxrss_mb']:.0f} MB"
            )
        self.raw[f"{label}_{n}"] = samples
        return samples, problems

    def run_row(
        self, section: str, n: int, what: str, samples: dict, problems: list[str], limit: float
    ) -> Row:
        """Ours against ``sqlmesh run`` + the floor, on the verdict's clock and the other."""

        def med(side: str, key: str) -> float:
            return median([s[key] for s in samples[side]])

        ours = median([self.pick(s) for s in samples["dagster"]])
        sm = median([self.pick(s) for s in samples["sqlmesh"]])
        floor = median([self.pick(s) for s in samples["floor"]])
        leader = median([s["leader_step_s"] for s in samples["dagster"]])
        leader_note = "" if leader is None else f"; leader step {leader:.1f} s"
        return Row(
            section,
            n,
            what,
            ours,
            sm + floor,
            f"sqlmesh run {sm:.1f} + floor {floor:.1f}",
            ours / (sm + floor),
            limit,
            "x",
            ours_cpu=med("dagster", "cpu"),
            base_cpu=med("sqlmesh", "cpu") + med("floor", "cpu"),
            ours_wall=med("dagster", "wall"),
            base_wall=med("sqlmesh", "wall") + med("floor", "wall"),
            note="; ".join(problems) or f"imports excluded{leader_note}",
            valid=not problems,
        )

    def run(self, *, times: bool = True, memory: bool = True) -> None:
        for n in self.args.models:
            sides = ["sqlmesh", "dagster"] + (["floor"] if times else [])
            samples, problems = self.run_samples(n, sides)
            self.run_measured[n] = (samples, problems)
            valid = not problems
            note = "; ".join(problems)
            if times:
                row = self.run_row(
                    "run", n, "in-process run, all models due", samples, problems, RUN_RATIO
                )
                self.rows.append(row)
                self.scale("run", "in-process run (s)", n, row.ours)
                self.scale(
                    "run", "sqlmesh run (s)", n, median([self.pick(s) for s in samples["sqlmesh"]])
                )
                self.scale(
                    "run", "Dagster floor (s)", n, median([self.pick(s) for s in samples["floor"]])
                )
                leader = median([s["leader_step_s"] for s in samples["dagster"]])
                self.scale("run", "leader step (s, wall clock)", n, leader)
            if memory:
                ours = median([s["maxrss_mb"] for s in samples["dagster"]])
                base = median([s["maxrss_mb"] for s in samples["sqlmesh"]])
                floor_mb = median([s["maxrss_mb"] for s in samples.get("floor", [])])
                tree = [
                    median([s["tree_maxrss_mb"] for s in samples[side]])
                    for side in ("dagster", "sqlmesh")
                ]
                self.scale("memory", "peak RSS, in-process run (MB)", n, ours)
                self.scale("memory", "peak RSS, sqlmesh run (MB)", n, base)
                self.rows.append(
                    Row(
                        "memory",
                        n,
                        "peak RSS, in-process run (MB)",
                        ours,
                        base,
                        "sqlmesh run",
                        ours / base,
                        MEMORY_RATIO,
                        "x",
                        note=note
                        or (
                            (f"floor {floor_mb:.0f} MB; " if floor_mb else "")
                            + f"with forked workers (wait4): {tree[0]:.0f} vs {tree[1]:.0f} MB"
                        ),
                        valid=valid,
                    )
                )

    # the leader's own cost ----------------------------------------------------------

    def leader(self) -> None:
        """The leader step (STEP_START -> STEP_SUCCESS, from the event log) against a bare
        ``sqlmesh run`` (context load + run) on the same work. Reuses the run section's
        samples at the same size, if it measured that size."""
        for n in self.args.leader_models:
            samples, problems = self.run_measured.get(n) or self.run_samples(
                n, ["sqlmesh", "dagster"], label="leader"
            )
            # The step's timestamps are wall-clock: both sides on the wall clock.
            ours = median([s["leader_step_s"] for s in samples["dagster"]])
            base = median([s["wall"] for s in samples["sqlmesh"]])
            missing = ours is None
            self.rows.append(
                Row(
                    "leader",
                    n,
                    "leader step (STEP_START->STEP_SUCCESS, wall)",
                    ours,
                    base,
                    "sqlmesh run: Context(paths) + run()",
                    None if missing else ours / base,
                    LEADER_RATIO,
                    "x",
                    note="; ".join(problems + (["no leader step found"] if missing else []))
                    or "in-process run; the leader step includes its SQLMesh context load",
                    valid=not problems and not missing,
                )
            )

    # on a PostgreSQL instance --------------------------------------------------------

    def postgres(self) -> None:
        """The in-process run and the floor on a Dagster instance kept in PostgreSQL (one
        server for the section, a fresh database per sample) against ``sqlmesh run`` +
        that floor."""
        sys.path.insert(0, str(REPO / "tests"))
        from helpers.pg_server import PostgresServer, postgres_available

        reason = postgres_available()
        if reason:
            log(f"  postgres skipped: {reason}")
            for n in self.args.pg_models:
                self.rows.append(
                    Row(
                        "postgres",
                        n,
                        "in-process run, PostgreSQL instance",
                        None,
                        None,
                        "",
                        None,
                        POSTGRES_RUN_RATIO,
                        "x",
                        note=f"skipped: {reason}",
                        valid=False,
                    )
                )
            return
        with PostgresServer() as pg:
            counter = itertools.count()

            @contextlib.contextmanager
            def database() -> Iterator[dict]:
                name = f"bench_{next(counter)}"
                pg.create_database(name)
                try:
                    yield pg.dagster_storage(name)
                finally:
                    pg.drop_database(name)

            for n in self.args.pg_models:
                samples, problems = self.run_samples(
                    n, ["sqlmesh", "dagster", "floor"], label="postgres", storage=database
                )
                row = self.run_row(
                    "postgres",
                    n,
                    "in-process run, all models due, PostgreSQL instance",
                    samples,
                    problems,
                    POSTGRES_RUN_RATIO,
                )
                row.base_label += " (floor on PostgreSQL)"
                self.rows.append(row)

    # as the UI launches runs ------------------------------------------------------------

    def ui(self) -> None:
        """The implicit asset job on the code location's default executor, all models due,
        against ``sqlmesh run`` on the same work plus the in-process Dagster floor; then a
        subset of models launched the same way against SQLMesh running just those."""
        args = self.args
        for n in args.ui_models:
            self.projects.prepare(n, plan=True)
            models = self.projects.models(n)
            subset = [name for name, _ in models[-UI_SUBSET:]]
            for label, select in (("all models", None), (f"{len(subset)} models", subset)):
                chosen = [m for m in models if select is None or m[0] in select]
                trivial = json.dumps(
                    [
                        [name, [p for p in parents if select is None or p in select]]
                        for name, parents in chosen
                    ]
                )
                samples: dict[str, list[dict]] = {"ui": [], "sqlmesh": [], "floor": []}
                problems: list[str] = []
                for rep, side in alternate(args.reps, list(samples)):
                    if side == "floor":
                        payload = {"trivial_models": trivial, "checks": args.audits}
                        proc = child("dagster_floor", payload)
                    else:
                        payload = {"project": str(self.projects.restore(n)), "models": len(chosen)}
                        if select:
                            payload["select"] = select
                        proc = child("ui_run" if side == "ui" else "sqlmesh_run", payload)
                        executed = proc.result["executions"] - (
                            self.projects.planned_executions or 0
                        )
                        if executed != 1:
                            problems.append(f"{side} rep {rep + 1}: {executed} executions")
                    if not proc.result.get("ok"):
                        problems.append(f"{side} rep {rep + 1}: not successful")
                    samples[side].append(proc.result["total"])
                    log(
                        f"  ui {n:>5} {label} rep {rep + 1} {side:<7} "
                        f"{proc.result['total']['wall']:.2f} s wall"
                    )
                self.raw[f"ui_{n}_{len(chosen)}"] = samples
                ours = median([self.pick(s) for s in samples["ui"]])
                sm = median([self.pick(s) for s in samples["sqlmesh"]])
                floor = median([self.pick(s) for s in samples["floor"]])
                # SQLMesh works beside Dagster's bookkeeping: the larger of the two bounds it
                larger = max(sm, floor)
                self.rows.append(
                    Row(
                        "ui",
                        n,
                        f'"Materialize" from the UI, {label} (default executor)',
                        ours,
                        larger,
                        f"max(sqlmesh run {sm:.1f}, floor {floor:.1f})",
                        ours / larger if select is None else None,
                        UI_RATIO,
                        "x",
                        note="; ".join(problems)
                        or (
                            "definitions loaded in the run's process"
                            + ("" if select is None else f"; no target, {ours / larger:.2f}x")
                        ),
                        valid=not problems,
                    )
                )

    # live ------------------------------------------------------------------------------

    def live(self) -> None:
        """How much of a sequential chain Dagster shows materialized while SQLMesh is still
        working: the share of its materializations recorded before SQLMesh began the last
        model, under the default executor."""
        shares = []
        problems = []
        for rep in range(self.args.reps):
            proc = child("live_chain", {"length": LIVE_CHAIN, "rows": LIVE_ROWS})
            if not proc.result.get("ok"):
                problems.append(f"rep {rep + 1}: not successful")
            shares.append(proc.result["share"])
            log(f"  live rep {rep + 1}: {proc.result['early']} of {LIVE_CHAIN - 1} early")
        share = median(shares)
        self.rows.append(
            Row(
                "live",
                LIVE_CHAIN,
                "chain materializations recorded before SQLMesh begins its last model",
                share,
                None,
                "share of the chain",
                None if share is None else 1 - share,
                1 - LIVE_SHARE,
                "x",
                note="; ".join(problems) or f"{share:.0%} live (target >= {LIVE_SHARE:.0%})",
                valid=not problems,
            )
        )

    # multiprocess ----------------------------------------------------------------------

    def multiprocess(self) -> None:
        args = self.args
        for n in args.mp_models:
            self.projects.prepare(n, plan=True)
            trivial = json.dumps(self.projects.models(n))
            followers: list[float] = []
            waiting: list[float] = []
            trivial_steps: list[float] = []
            executions: list[int] = []
            totals: dict[str, list[float]] = {"sqlmesh": [], "trivial": []}
            problems: list[str] = []
            for rep, side in alternate(args.mp_reps, ["sqlmesh", "trivial"]):
                payload = {"side": side, "models": n, "concurrency": args.mp_concurrency}
                if side == "trivial":
                    payload.update(trivial_models=trivial, checks=args.audits)
                else:
                    payload["project"] = str(self.projects.restore(n))
                stamp = self.projects.cache_stamp(n)
                proc = child("multiprocess", payload, timeout=3600)
                if side == "sqlmesh" and self.projects.cache_stamp(n) != stamp:
                    problems.append(f"rep {rep + 1}: description cache miss")
                res = proc.result
                if not res.get("ok"):
                    problems.append(f"{side} rep {rep + 1}: run not successful")
                totals[side].append(res["total"]["wall"])
                steps = {k: v for k, v in res["steps"].items() if v[1] is not None}
                if side == "trivial":
                    trivial_steps += [e - s for s, e in steps.values()]
                else:
                    leader = res.get("leader")
                    leader_end = steps[leader][1] if leader in steps else None
                    for key, (s, e) in steps.items():
                        if key == leader:
                            continue
                        if leader_end is not None and s >= leader_end:
                            followers.append(e - s)
                        else:
                            waiting.append(e - s)
                    executed = res["executions"] - (self.projects.planned_executions or 0)
                    executions.append(executed)
                    if executed != 1 or res.get("store_executions") != 1:
                        problems.append(
                            f"rep {rep + 1}: {executed} SQLMesh executions "
                            f"({res.get('store_executions')} in the outcome store)"
                        )
                log(
                    f"  multiprocess {n:>5} rep {rep + 1} {side:<7} "
                    f"{res['total']['wall']:.1f} s wall, {len(steps)} steps"
                )
            self.raw[f"multiprocess_{n}"] = {
                "followers": followers,
                "waiting": waiting,
                "trivial": trivial_steps,
                "totals": totals,
                "executions": executions,
            }
            self.rows.append(
                Row(
                    "multiprocess",
                    n,
                    "SQLMesh executions per run",
                    max(executions or [0]),
                    1,
                    "exactly one",
                    float(max(executions or [0]) != 1 or min(executions) != 1),
                    0.0,
                    "=1",
                    note="; ".join(problems),
                    valid=bool(executions),
                )
            )
            ours = median(followers)
            base = median(trivial_steps)
            note = (
                f"{len(followers)} steps after the leader finished, {len(waiting)} overlapping "
                f"it (median {median(waiting) or 0:.2f} s); runs {median(totals['sqlmesh']):.0f}"
                f" s vs {median(totals['trivial']):.0f} s wall"
            )
            self.rows.append(
                Row(
                    "multiprocess",
                    n,
                    "non-leader step (STEP_START->STEP_SUCCESS)",
                    ours,
                    base,
                    "trivial asset step",
                    None if not (ours and base) else ours / base,
                    FOLLOWER_RATIO,
                    "x",
                    note=note,
                    valid=bool(followers and trivial_steps),
                )
            )

    # report --------------------------------------------------------------------------

    def other_clock(self, r: Row) -> str:
        """The row's comparison on the clock the verdict does not use."""
        ours, base = (
            (r.ours_cpu, r.base_cpu) if self.metric == "wall" else (r.ours_wall, r.base_wall)
        )
        if ours is None or base is None:
            return ""
        if not r.judged:
            return f"{ours - base:+.2f} s" if r.unit == "s" else f"{ours / base:.2f}x"
        if r.unit == "s":
            verdict = "pass" if ours - base <= r.limit else "fail"
            return f"{ours - base:+.2f} s ({verdict})"
        verdict = "pass" if ours / base <= r.limit else "fail"
        return f"{ours / base:.2f}x ({verdict})"

    def scaling(self) -> str:
        """Medians per size, and a straight line fitted through them (least squares):
        the fixed part and the growth per 100 models. Only series measured at two sizes
        or more; empty when there are none."""
        series = {key: values for key, values in self.series.items() if len(values) >= 2}
        if not series:
            return ""
        sizes = sorted({n for values in series.values() for n in values})
        lines = [
            "| section | what | "
            + " | ".join(f"{n} models" for n in sizes)
            + " | per 100 models | fixed part |",
            "|---|---|" + "---:|" * (len(sizes) + 2),
        ]
        for (section, what), values in series.items():
            slope, intercept = fit_line(values)
            mb = what.endswith("(MB)")
            fmt = (lambda v: f"{v:.0f}") if mb else (lambda v: f"{v:.2f}")
            unit = "MB" if mb else "s"
            cells = [fmt(values[n]) if n in values else "" for n in sizes]
            lines.append(
                f"| {section} | {what} | "
                + " | ".join(cells)
                + f" | {slope * 100:+.{0 if mb else 2}f} {unit} | {fmt(intercept)} {unit} |"
            )
        clock = "wall" if self.metric == "wall" else "CPU"
        return (
            f"Scaling ({clock} clock, medians; fixed part + per 100 models x N/100 predicts "
            "a project of N models like the generated ones):\n\n" + "\n".join(lines) + "\n"
        )

    def table(self) -> str:
        unit = "wall" if self.metric == "wall" else "CPU"
        lines = [
            f"| section | models | what | ours | baseline | measured | target | result "
            f"| on the {'CPU' if self.metric == 'wall' else 'wall'} clock |",
            "|---|---:|---|---:|---:|---:|---:|---|---:|",
        ]
        for r in self.rows:
            if r.unit == "x":
                measured = "" if r.value is None else f"{r.value:.2f}x"
                target = f"<= {r.limit:.2f}x"
            elif r.unit == "s":
                measured = f"{r.value:+.2f} s"
                target = f"<= +{r.limit:.2f} s"
            else:
                measured = f"{int(r.ours or 0)}"
                target = "= 1"
            fmt = (
                (lambda v: "" if v is None else f"{v:.0f}")
                if r.section == "memory"
                else (lambda v: "" if v is None else f"{v:.2f}")
            )
            base = f"{fmt(r.base)} ({r.base_label})" if r.unit != "=1" else r.base_label
            ours = fmt(r.ours) if r.unit != "=1" else f"{int(r.ours or 0)}"
            lines.append(
                f"| {r.section} | {r.models} | {r.what} | {ours} | {base} | {measured} "
                f"| {target} | {r.verdict} | {self.other_clock(r)} |"
            )
        notes = [f"- {r.section} {r.models}: {r.note}" for r in self.rows if r.note]
        cpu = [
            f"- {r.section} {r.models} {r.what}: CPU {r.ours_cpu:.2f} s vs {r.base_cpu:.2f} s,"
            f" wall {r.ours_wall:.2f} s vs {r.base_wall:.2f} s"
            for r in self.rows
            if None not in (r.ours_cpu, r.base_cpu, r.ours_wall, r.base_wall)
        ]
        busy = max(LOADS) if LOADS else 0.0
        cores = os.cpu_count() or 1
        header = (
            f"Times in seconds ({unit} clock, medians), memory in MB. "
            f"{self.args.audits} audits per model. {cores} cores; 1-minute load average "
            f"after measurements: median {median(LOADS) or 0:.1f}, max {busy:.1f}"
            + (
                " (the machine was busy: wall-clock ratios are unreliable)"
                if busy > cores + 1
                else ""
            )
            + ".\n\n"
        )
        return header + "\n".join(lines) + "\n\nNotes:\n" + "\n".join(notes + cpu) + "\n"


def fit_line(values: dict[int, float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through {size: value}."""
    xs, ys = list(values), list(values.values())
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models",
        type=int,
        nargs="+",
        default=[100, 500, 1000],
        help="project sizes of the run and memory measurements (default 100 500 1000)",
    )
    p.add_argument(
        "--load-models",
        type=int,
        nargs="+",
        default=None,
        help="sizes of the cached-load measurement (default: --models and 5000)",
    )
    p.add_argument(
        "--cold-models",
        type=int,
        nargs="+",
        default=None,
        help="sizes of the cold-load measurement (default: the smallest of --models)",
    )
    p.add_argument(
        "--mp-models",
        type=int,
        nargs="+",
        default=None,
        help="sizes of the multiprocess measurement (default: 100)",
    )
    p.add_argument(
        "--leader-models",
        type=int,
        nargs="+",
        default=[500],
        help="sizes of the leader's own cost (default 500; reuses the run's samples)",
    )
    p.add_argument(
        "--pg-models",
        type=int,
        nargs="+",
        default=[100],
        help="sizes of the run on a PostgreSQL instance (default 100)",
    )
    p.add_argument(
        "--ui-models",
        type=int,
        nargs="+",
        default=[100],
        help="sizes of the runs launched as the UI launches them (default: 100)",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions of each measurement")
    p.add_argument(
        "--load-reps",
        type=int,
        default=5,
        help="repetitions of the load measurements (short and noisy; default 5)",
    )
    p.add_argument(
        "--large",
        type=int,
        default=250,
        help="runs of projects larger than this use --large-reps (default 250)",
    )
    p.add_argument(
        "--large-reps",
        type=int,
        default=1,
        help="repetitions of the runs of large projects (default 1)",
    )
    p.add_argument(
        "--mp-reps",
        type=int,
        default=1,
        help="multiprocess runs per side (each gives one duration per step)",
    )
    p.add_argument("--mp-concurrency", type=int, default=os.cpu_count() or 2)
    p.add_argument("--audits", type=int, default=3, help="audits per model (0-5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument(
        "--quick",
        action="store_true",
        help="small projects, one repetition: a smoke test of the benchmark itself",
    )
    p.add_argument(
        "--metric",
        choices=("wall", "cpu"),
        default="wall",
        help="clock the targets are judged on (default wall; cpu is steadier on a busy machine)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where projects are generated (default: a temporary folder)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", type=Path, default=None, help="also write raw samples here")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="folder for a pyinstrument profile of the first in-process run",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.models = [30]
        args.load_models = args.load_models or [30]
        args.cold_models = args.cold_models or [30]
        args.mp_models = args.mp_models or [30]
        args.ui_models = [30]
        args.leader_models = [30]
        args.pg_models = [30]
        args.reps = 1
        args.load_reps = 1
    args.load_models = args.load_models or sorted(set(args.models) | {5000})
    args.cold_models = args.cold_models or [min(args.models)]
    args.mp_models = args.mp_models or [100]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    owned = args.workdir is None
    args.workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="dg-sqlmesh-bench-"))).resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    began = time.perf_counter()
    log(
        f"dg-sqlmesh benchmark in {args.workdir} ({os.cpu_count()} cores, "
        f"judged on the {args.metric} clock)"
    )
    try:
        if "load" in args.only:
            log("load:")
            bench.load()
        if "run" in args.only or "memory" in args.only:
            log("run:")
            bench.run(times="run" in args.only, memory="memory" in args.only)
        if "leader" in args.only:
            log("leader:")
            bench.leader()
        if "postgres" in args.only:
            log("postgres:")
            bench.postgres()
        if "ui" in args.only:
            log("ui:")
            bench.ui()
        if "multiprocess" in args.only:
            log("multiprocess:")
            bench.multiprocess()
        if "live" in args.only:
            log("live:")
            bench.live()
    finally:
        if owned and not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    table = bench.table()
    scaling = bench.scaling()
    table += f"\n{scaling}" if scaling else ""
    elapsed = time.perf_counter() - began
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = f"`{command.strip()}` ({elapsed / 60:.1f} min)\n\n{table}"
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    if args.json:
        rows = [dict(vars(r), verdict=r.verdict) for r in bench.rows]
        args.json.write_text(json.dumps({"rows": rows, "raw": bench.raw}, indent=1))
    return 0 if all(r.verdict in ("PASS", "n/a") for r in bench.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
