"""Generate synthetic SQLMesh projects (DuckDB) of arbitrary size for tests and benchmarks.

Usage as a library::

    from tests.projects.generate import generate_project, project_models

    root = generate_project(tmp_path, 100, seed=1, db_path=tmp_path / "db.duckdb")
    ctx = sqlmesh.Context(paths=root)
    ctx.plan(auto_apply=True, no_prompts=True)

Usage as a script::

    python -m tests.projects.generate /tmp/proj -n 500 --seed 0 \\
        --fail gen_l1.model_0003=runtime_error --db-path /tmp/proj/db.duckdb

Project layout
--------------
``root/config.yaml``                     gateway ``duckdb`` (``database: db.duckdb`` relative,
                                         or the absolute ``db_path``), ``model_defaults``:
                                         ``dialect: duckdb``, ``start``, ``cron: '@daily'``.
``root/models/gen_l<L>/model_<NNNN>.sql`` one SQL model per file, named ``gen_l<L>.model_<NNNN>``
                                         (``NNNN`` = global index, zero padded to >= 4 digits).

Every model outputs exactly three columns ``id INT, ds DATE, v BIGINT`` with ``(id, ds)``
unique and ``id >= 0``, ``v >= 0`` (so the built-in audits below pass):

* layer 0 (schema ``gen_l0``): sources with no parents, one of
    - ``FULL`` over literal ``VALUES`` rows (``ds`` in the 7 days starting at ``start``),
    - ``FULL`` over ``range(n)`` rows (``ds`` in the 7 days starting at ``start``),
    - ``INCREMENTAL_BY_TIME_RANGE`` (time column ``ds``) producing a fixed number of rows
      (1-4, see ``rows_per_day``) for every day in ``[@start_ds, @end_ds]``.
* layer L > 0 (schema ``gen_l<L>``): ``FULL``, ``VIEW`` or ``INCREMENTAL_BY_TIME_RANGE``
  selecting ``SUM(v) GROUP BY id, ds`` over the ``UNION ALL`` of 1-3 parents from earlier
  layers (at least one from layer L-1); incremental models filter every parent with
  ``ds BETWEEN @start_ds AND @end_ds``.

Everything (layer sizes, kinds, parents, row counts) is a deterministic function of
``(n_models, seed)`` via ``random.Random(seed)``; ``project_models`` returns that metadata
without touching the file system.

Audits (``audits_per_model``, 0..5, taken in this order; all of them pass):
``not_null(columns := (id, ds, v))``, ``unique_combination_of_columns(columns := (id, ds))``,
``accepted_range(column := v, min_v := 0)``, ``not_null_non_blocking(columns := (v))``,
``accepted_range(column := id, min_v := 0)``.

Execution counting (``count_executions=True``)
----------------------------------------------
``config.yaml`` gets a ``before_all`` list that creates ``_meta.executions`` (if missing) and
inserts ONE row ``(executed_at TIMESTAMP, execution_id UUID, environment VARCHAR)`` each time
SQLMesh executes its ``before_all`` environment statements.  Verified against sqlmesh 0.236
(``sqlmesh/core/plan/stages.py``, ``plan/evaluator.py``, ``core/scheduler.py``,
``core/context.py``) and empirically in ``tests/test_generate.py``:

* ``context.plan(auto_apply=True)`` / ``context.apply(plan)``: +1 row for every plan that is
  actually applied, i.e. ``Context.apply`` does not short-circuit (the plan has changes, or
  missing intervals to backfill, or unpromoted snapshots).  The ``BeforeAllStage`` is the first
  plan stage and is emitted regardless of whether anything is backfilled, so the initial plan
  is +1 even with ``skip_backfill=True``.  A plan with no changes and nothing to backfill
  ("No changes to plan") inserts nothing.  If the plan's backfill fails, the row was already
  inserted (before_all runs first, in its own transaction).
* ``context.run()``: +1 row iff the scheduler found missing intervals to evaluate
  (``Scheduler._run_or_audit`` returns ``CompletionStatus.NOTHING_TO_DO`` *before* the
  ``before_all`` statements run).  A run with nothing to do (e.g. right after a plan, before
  the next cron tick) inserts NOTHING.  A run that evaluates and then fails still inserted its
  row.  Exactly one row per run, regardless of the number of models/batches evaluated.
* ``context.run()`` uses the ``before_all`` statements stored in state by the last applied
  plan, not the ones currently in ``config.yaml``.
* ``environment`` is the target environment name (``@this_env``), e.g. ``'prod'``.

So: ``executions = applied_plans + runs_with_work``.

Failing models (``failing={"gen_l1.model_0003": mode}``)
--------------------------------------------------------
* ``"runtime_error"``: the model is forced to kind ``FULL`` and its query ``UNION ALL``-s a row
  computed with DuckDB ``error('dg_sqlmesh generated failure: <name>')`` over ``range(1)``.  It
  loads, renders and creates its (empty) physical table fine, but every evaluation raises.
* ``"transient_error"``: the same, with a message that reads as a dropped connection
  (``connection reset by peer``), so that the library classifies it transient.
* ``"blocking_audit"``: adds the blocking audit ``number_of_rows(threshold := 1000000000)``,
  which fails whenever it runs (any row count <= threshold), so the evaluation raises
  ``NodeAuditsErrors`` and downstream models are skipped.
* ``"non_blocking_audit"``: adds ``number_of_rows_non_blocking(threshold := 1000000000)``; it
  fails on every evaluation but only produces a console warning (run still succeeds).

Failures fire on EVERY evaluation, including the backfill of ``plan``.  To get a plan that
succeeds followed by a failing ``run``, apply the plan with ``skip_backfill=True``
(``context.plan(auto_apply=True, no_prompts=True, skip_backfill=True)``): the physical tables
and views are created, no intervals are evaluated, and the next ``context.run()`` evaluates all
missing intervals (and fails, returning ``CompletionStatus.FAILURE``).

Note: DuckDB's relative ``database: db.duckdb`` is resolved against the process CWD, not the
project root; pass ``db_path`` (written as an absolute path) or ``chdir`` into ``root``.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import date, timedelta
from pathlib import Path

__all__ = [
    "AUDITS",
    "FAILING_MODES",
    "EXECUTIONS_TABLE",
    "generate_project",
    "project_models",
    "model_names",
    "n_layers_for",
]

FULL = "FULL"
VIEW = "VIEW"
INCREMENTAL = "INCREMENTAL_BY_TIME_RANGE"

FAILING_MODES = ("runtime_error", "transient_error", "blocking_audit", "non_blocking_audit")
EXECUTIONS_TABLE = "_meta.executions"

# Audits that always pass for generated data, applied in this order.
AUDITS = (
    "not_null(columns := (id, ds, v))",
    "unique_combination_of_columns(columns := (id, ds))",
    "accepted_range(column := v, min_v := 0)",
    "not_null_non_blocking(columns := (v))",
    "accepted_range(column := id, min_v := 0)",
)
FAILING_AUDITS = {
    "blocking_audit": "number_of_rows(threshold := 1000000000)",
    "non_blocking_audit": "number_of_rows_non_blocking(threshold := 1000000000)",
}

BEFORE_ALL = (
    "CREATE SCHEMA IF NOT EXISTS _meta",
    "CREATE TABLE IF NOT EXISTS _meta.executions "
    "(executed_at TIMESTAMP, execution_id UUID, environment VARCHAR)",
    "INSERT INTO _meta.executions (executed_at, execution_id, environment) "
    "VALUES (CAST(now() AS TIMESTAMP), uuid(), @this_env)",
)


def n_layers_for(n_models: int) -> int:
    """Number of layers: 12 -> 3, 100 -> 6, 500+ -> 10 (capped), never more than n_models."""
    if n_models <= 0:
        return 0
    return max(1, min(10, n_models, round(n_models**0.5 / 2) + 1))


def _width(n_models: int) -> int:
    return max(4, len(str(max(n_models - 1, 0))))


def project_models(
    n_models: int, seed: int = 0, failing: dict[str, str] | None = None
) -> list[dict]:
    """Deterministic metadata of the models ``generate_project(root, n_models, seed=seed)`` writes.

    Each entry: ``name`` ("gen_l1.model_0007"), ``schema``, ``layer``, ``index``, ``kind``
    ("FULL" | "VIEW" | "INCREMENTAL_BY_TIME_RANGE"), ``source`` ("values" | "range" | "series" |
    "parents"), ``parents`` (list of names), ``rows`` (VALUES/range row count, or rows per day for
    "series"; None for "parents") and ``failing`` (mode or None).  Ordered by index (topological).
    """
    if n_models < 0:
        raise ValueError("n_models must be >= 0")
    failing = dict(failing or {})
    rng = random.Random(seed)
    n_layers = n_layers_for(n_models)
    width = _width(n_models)
    models: list[dict] = []
    by_layer: list[list[str]] = [[] for _ in range(n_layers)]
    for i in range(n_models):
        layer = i * n_layers // n_models
        schema = f"gen_l{layer}"
        name = f"{schema}.model_{i:0{width}d}"
        if layer == 0:
            source = rng.choice(("values", "range", "series"))
            kind = INCREMENTAL if source == "series" else FULL
            parents: list[str] = []
            rows = {"values": rng.randint(2, 5), "range": rng.randint(5, 30)}.get(
                source, rng.randint(1, 4)
            )
        else:
            source = "parents"
            rows = None
            kind = rng.choices((FULL, VIEW, INCREMENTAL), weights=(4, 3, 3))[0]
            prev = by_layer[layer - 1]
            parents = [rng.choice(prev)]
            earlier = [m for lst in by_layer[:layer] for m in lst if m != parents[0]]
            extra = min(rng.randint(0, 2), len(earlier))
            parents += rng.sample(earlier, extra)
        by_layer[layer].append(name)
        models.append(
            {
                "name": name,
                "schema": schema,
                "layer": layer,
                "index": i,
                "kind": kind,
                "source": source,
                "parents": parents,
                "rows": rows,
                "failing": None,
            }
        )
    names = {m["name"]: m for m in models}
    for name, mode in failing.items():
        if name not in names:
            raise ValueError(f"failing: unknown model {name!r}")
        if mode not in FAILING_MODES:
            raise ValueError(f"failing: unknown mode {mode!r} (expected one of {FAILING_MODES})")
        m = names[name]
        m["failing"] = mode
        if mode in ("runtime_error", "transient_error"):
            m["kind"] = FULL  # a VIEW would only fail when queried, an incremental maybe not at all
    return models


def model_names(n_models: int, seed: int = 0) -> list[str]:
    """Model names in index (topological) order."""
    return [m["name"] for m in project_models(n_models, seed)]


def _model_sql(m: dict, start_date: date, audits: list[str]) -> str:
    name, kind = m["name"], m["kind"]
    if kind == INCREMENTAL:
        kind_sql = "INCREMENTAL_BY_TIME_RANGE (time_column ds)"
    else:
        kind_sql = kind
    header = [f"  name {name}", f"  kind {kind_sql}"]
    if audits:
        header.append("  audits (\n    " + ",\n    ".join(audits) + "\n  )")
    parts = ["MODEL (\n" + ",\n".join(header) + "\n);\n"]

    idx = m["index"]
    src = m["source"]
    if src == "values":
        vals = ", ".join(
            f"({r}, '{start_date + timedelta(days=(idx + r) % 7)}', {(idx * 7 + r * 3) % 101})"
            for r in range(m["rows"])
        )
        body = (
            "SELECT\n  CAST(id AS INT) AS id,\n  CAST(ds AS DATE) AS ds,\n"
            "  CAST(v AS BIGINT) AS v\n"
            f"FROM (VALUES {vals}) AS t(id, ds, v)"
        )
    elif src == "range":
        body = (
            "SELECT\n  CAST(i AS INT) AS id,\n"
            f"  CAST(DATE '{start_date}' + CAST((i + {idx}) % 7 AS INT) AS DATE) AS ds,\n"
            f"  CAST(i * {idx % 13 + 1} AS BIGINT) AS v\n"
            f"FROM range(0, {m['rows']}) AS r(i)"
        )
    elif src == "series":
        body = (
            "SELECT\n  CAST(r.i AS INT) AS id,\n  CAST(d.ds AS DATE) AS ds,\n"
            f"  CAST(r.i + {idx % 17} AS BIGINT) AS v\n"
            "FROM generate_series(CAST(@start_ds AS DATE), CAST(@end_ds AS DATE), INTERVAL 1 DAY)"
            " AS d(ds)\n"
            f"CROSS JOIN range(0, {m['rows']}) AS r(i)"
        )
    else:
        where = "\n  WHERE ds BETWEEN @start_ds AND @end_ds" if kind == INCREMENTAL else ""
        union = "\n  UNION ALL\n".join(f"  SELECT id, ds, v FROM {p}{where}" for p in m["parents"])
        body = (
            "SELECT\n  CAST(id AS INT) AS id,\n  CAST(ds AS DATE) AS ds,\n"
            "  CAST(SUM(v) AS BIGINT) AS v\n"
            f"FROM (\n{union}\n) AS u\nGROUP BY id, ds"
        )
    if m["failing"] in ("runtime_error", "transient_error"):
        msg = f"dg_sqlmesh generated failure: {name}"
        if m["failing"] == "transient_error":  # a message classified as a dropped connection
            msg = f"connection reset by peer ({msg})"
        body = (
            f"SELECT * FROM (\n{body}\n) AS ok\nUNION ALL\n"
            "SELECT\n  CAST(b AS INT) AS id,\n"
            f"  CAST(DATE '{start_date}' AS DATE) AS ds,\n"
            f"  CAST(error('{msg} #' || CAST(b AS VARCHAR)) AS BIGINT) AS v\n"
            "FROM range(0, 1) AS boom(b)"
        )
    parts.append(body + "\n")
    return "".join(parts)


def _config_yaml(database: str, start: str, count_executions: bool) -> str:
    q = json.dumps  # JSON strings are valid YAML double-quoted scalars
    lines = [
        "gateways:",
        "  duckdb:",
        "    connection:",
        "      type: duckdb",
        f"      database: {q(database)}",
        "default_gateway: duckdb",
        "model_defaults:",
        "  dialect: duckdb",
        f"  start: {q(start)}",
        "  cron: '@daily'",
        "disable_anonymized_analytics: true",
    ]
    if count_executions:
        lines.append("before_all:")
        lines += [f"  - {q(stmt)}" for stmt in BEFORE_ALL]
    return "\n".join(lines) + "\n"


def generate_project(
    root: Path,
    n_models: int,
    *,
    seed: int = 0,
    start: str = "2026-11-20",
    count_executions: bool = True,
    audits_per_model: int = 1,
    failing: dict[str, str] | None = None,
    db_path: Path | None = None,
) -> Path:
    """Write a SQLMesh/DuckDB project with ``n_models`` models into ``root``; return ``root``.

    See the module docstring for the layout, the ``_meta.executions`` counting semantics and
    the ``failing`` modes.  ``start`` must start with an ISO date (``YYYY-MM-DD``).
    ``db_path``: when given, ``config.yaml`` points at ``db_path.resolve()`` instead of the
    CWD-relative ``db.duckdb``.  Existing ``models/gen_l*`` directories in ``root`` are not
    cleaned; generate into a fresh directory.
    """
    if not 0 <= audits_per_model <= len(AUDITS):
        raise ValueError(f"audits_per_model must be within 0..{len(AUDITS)}")
    start_date = date.fromisoformat(start[:10])
    models = project_models(n_models, seed, failing)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    database = str(Path(db_path).resolve()) if db_path is not None else "db.duckdb"
    (root / "config.yaml").write_text(_config_yaml(database, start, count_executions))

    models_dir = root / "models"
    for layer in {m["layer"] for m in models}:
        (models_dir / f"gen_l{layer}").mkdir(parents=True, exist_ok=True)
    base_audits = list(AUDITS[:audits_per_model])
    for m in models:
        audits = base_audits + (
            [FAILING_AUDITS[m["failing"]]] if m["failing"] in FAILING_AUDITS else []
        )
        path = models_dir / m["schema"] / f"{m['name'].split('.', 1)[1]}.sql"
        path.write_text(_model_sql(m, start_date, audits))
    return root


def _parse_failing(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, mode = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--fail expects MODEL=MODE, got {item!r}")
        out[name] = mode
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate a synthetic SQLMesh DuckDB project.")
    p.add_argument("root", type=Path)
    p.add_argument("-n", "--n-models", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", default="2026-11-20")
    p.add_argument("--no-count-executions", dest="count_executions", action="store_false")
    p.add_argument("--audits-per-model", type=int, default=1)
    p.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="MODEL=MODE",
        help=f"make MODEL fail; MODE in {', '.join(FAILING_MODES)} (repeatable)",
    )
    p.add_argument("--db-path", type=Path, default=None)
    p.add_argument("--list", action="store_true", help="print model metadata as JSON lines")
    a = p.parse_args(argv)
    failing = _parse_failing(a.fail)
    root = generate_project(
        a.root,
        a.n_models,
        seed=a.seed,
        start=a.start,
        count_executions=a.count_executions,
        audits_per_model=a.audits_per_model,
        failing=failing,
        db_path=a.db_path,
    )
    if a.list:
        for m in project_models(a.n_models, a.seed, failing):
            print(json.dumps(m))
    print(root)


if __name__ == "__main__":
    main()
