"""Tests for the synthetic SQLMesh project generator (tests/projects/generate.py), including the
empirical ``_meta.executions`` counting semantics documented in its module docstring."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmesh import Context
from sqlmesh.core.console import NoopConsole, get_console, set_console
from sqlmesh.utils import CompletionStatus
from sqlmesh.utils.errors import PlanError

sys.path.insert(0, str(Path(__file__).parent))

from projects.generate import (  # noqa: E402
    AUDITS,
    generate_project,
    main,
    model_names,
    project_models,
)

N = 12


class RecordingConsole(NoopConsole):
    def __init__(self) -> None:
        super().__init__()
        self.failed: list[str] = []
        self.skipped: set[str] = set()
        self.warnings: list[str] = []

    def log_failed_models(self, errors) -> None:  # type: ignore[override]
        for err in errors:
            cause = err.__cause__
            self.failed.append(f"{err} | {type(cause).__name__}: {cause}")

    def log_skipped_models(self, snapshot_names) -> None:  # type: ignore[override]
        self.skipped |= set(snapshot_names)

    def log_warning(self, short_message, long_message=None) -> None:  # type: ignore[override]
        self.warnings.append(f"{short_message}\n{long_message or ''}")


@pytest.fixture
def console():
    """SQLMesh's console is process-global (Context picks it up via get_console())."""
    previous = get_console()
    recording = RecordingConsole()
    set_console(recording)
    yield recording
    set_console(previous)


def _context(root: Path) -> Context:
    return Context(paths=root)


def _executions(ctx: Context) -> int:
    return ctx.engine_adapter.fetchone("SELECT count(*) FROM _meta.executions")[0]


def _tomorrow() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


def _children(models: list[dict], name: str) -> list[str]:
    return [m["name"] for m in models if name in m["parents"]]


# ---------------------------------------------------------------------------------------------
# Pure generation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [100, 500])
def test_generation_writes_every_model_once(tmp_path: Path, n: int) -> None:
    # How fast it is belongs to benchmarks/, not to a test a loaded machine can fail.
    root = generate_project(tmp_path / "p", n, seed=3, audits_per_model=len(AUDITS))
    assert len(list((root / "models").rglob("*.sql"))) == n


def test_project_models_deterministic_and_layered() -> None:
    a = project_models(100, seed=1)
    assert a == project_models(100, seed=1)
    assert a != project_models(100, seed=2)
    assert [m["name"] for m in a] == model_names(100, seed=1)
    assert a[7]["name"].endswith(".model_0007")
    layer_of = {m["name"]: m["layer"] for m in a}
    kinds = {m["kind"] for m in a}
    assert kinds == {"FULL", "VIEW", "INCREMENTAL_BY_TIME_RANGE"}
    for m in a:
        assert m["schema"] == f"gen_l{m['layer']}"
        if m["layer"] == 0:
            assert m["parents"] == [] and m["kind"] != "VIEW"
        else:
            assert 1 <= len(m["parents"]) <= 3
            assert len(set(m["parents"])) == len(m["parents"])
            assert all(layer_of[p] < m["layer"] for p in m["parents"])
            assert any(layer_of[p] == m["layer"] - 1 for p in m["parents"])


def test_generate_options(tmp_path: Path) -> None:
    root = generate_project(tmp_path / "rel", 5, count_executions=False, audits_per_model=0)
    cfg = (root / "config.yaml").read_text()
    assert 'database: "db.duckdb"' in cfg and "before_all" not in cfg
    assert "audits" not in (root / "models/gen_l0/model_0000.sql").read_text()

    db = tmp_path / "x" / "db.duckdb"
    root = generate_project(tmp_path / "abs", 5, db_path=db)
    assert f'database: "{db.resolve()}"' in (root / "config.yaml").read_text()

    with pytest.raises(ValueError, match="unknown model"):
        generate_project(tmp_path / "bad", 5, failing={"gen_l9.model_0000": "runtime_error"})
    with pytest.raises(ValueError, match="unknown mode"):
        generate_project(tmp_path / "bad", 5, failing={"gen_l0.model_0000": "explode"})


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(tmp_path / "cli"), "-n", "7", "--fail", "gen_l1.model_0005=blocking_audit"])
    assert capsys.readouterr().out.strip().endswith("cli")
    text = (tmp_path / "cli/models/gen_l1/model_0005.sql").read_text()
    assert "number_of_rows(threshold := 1000000000)" in text


# ---------------------------------------------------------------------------------------------
# Against SQLMesh + DuckDB
# ---------------------------------------------------------------------------------------------


def test_plan_run_and_execution_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: RecordingConsole
) -> None:
    # relative `database: db.duckdb` resolves against the CWD
    monkeypatch.chdir(tmp_path)
    root = generate_project(tmp_path, N, seed=0, audits_per_model=len(AUDITS))
    ctx = _context(root)
    assert len(ctx.models) == N
    assert all(ctx.get_model(n) is not None for n in model_names(N))

    ctx.plan(auto_apply=True, no_prompts=True)
    assert (tmp_path / "db.duckdb").exists()
    assert _executions(ctx) == 1  # applied plan (with backfill): +1

    for m in project_models(N):  # every model has data, audits passed
        assert ctx.engine_adapter.fetchone(f"SELECT count(*) FROM {m['name']}")[0] > 0, m

    ctx.plan(auto_apply=True, no_prompts=True)
    assert _executions(ctx) == 1  # "no changes" plan is not applied: +0

    assert ctx.run() == CompletionStatus.NOTHING_TO_DO
    assert _executions(ctx) == 1  # run with nothing to do: +0

    assert ctx.run(execution_time=_tomorrow()) == CompletionStatus.SUCCESS
    assert _executions(ctx) == 2  # run that evaluates: +1 (once, whatever the model count)

    assert ctx.run(execution_time=_tomorrow()) == CompletionStatus.NOTHING_TO_DO
    assert _executions(ctx) == 2

    # a changed model -> applied plan: +1
    path = root / "models/gen_l0/model_0000.sql"
    path.write_text(path.read_text().rstrip() + "\nWHERE 1 = 1\n")  # layer-0: no GROUP BY
    ctx = _context(root)
    ctx.plan(auto_apply=True, no_prompts=True)
    assert _executions(ctx) == 3

    rows = ctx.fetchdf("SELECT * FROM _meta.executions ORDER BY executed_at")
    assert list(rows.columns) == ["executed_at", "execution_id", "environment"]
    assert set(rows["environment"]) == {"prod"}
    assert rows["execution_id"].nunique() == 3


def test_skip_backfill_plan_still_counts(tmp_path: Path) -> None:
    root = generate_project(tmp_path, N, db_path=tmp_path / "db.duckdb")
    ctx = _context(root)
    ctx.plan(auto_apply=True, no_prompts=True, skip_backfill=True)
    assert _executions(ctx) == 1
    assert ctx.run() == CompletionStatus.SUCCESS  # evaluates every missing interval
    assert _executions(ctx) == 2


def _failing_model(models: list[dict]) -> str:
    # a layer-1 model with at least one child, to check downstream skipping
    return next(m["name"] for m in models if m["layer"] == 1 and _children(models, m["name"]))


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("runtime_error", "dg_sqlmesh generated failure"),
        ("blocking_audit", "number_of_rows"),
    ],
)
def test_failing_model_fails_run(
    tmp_path: Path, console: RecordingConsole, mode: str, needle: str
) -> None:
    name = _failing_model(project_models(N))
    root = generate_project(tmp_path, N, db_path=tmp_path / "db.duckdb", failing={name: mode})
    ctx = _context(root)

    ctx.plan(auto_apply=True, no_prompts=True, skip_backfill=True)  # loads and creates fine
    assert _executions(ctx) == 1
    assert ctx.run() == CompletionStatus.FAILURE
    assert _executions(ctx) == 2  # the failing run still counted

    assert len(console.failed) == 1, console.failed
    assert name.split(".")[1] in console.failed[0] and needle in console.failed[0]
    children = _children(project_models(N, failing={name: mode}), name)
    assert any(c.split(".")[1] in s for c in children for s in console.skipped), console.skipped


@pytest.mark.parametrize("mode", ["runtime_error", "blocking_audit"])
def test_failing_model_fails_backfilling_plan(tmp_path: Path, mode: str) -> None:
    name = _failing_model(project_models(N))
    root = generate_project(tmp_path, N, db_path=tmp_path / "db.duckdb", failing={name: mode})
    ctx = _context(root)
    with pytest.raises(PlanError):
        ctx.plan(auto_apply=True, no_prompts=True)
    assert _executions(ctx) == 1  # before_all ran before the failing backfill


def test_failing_non_blocking_audit_warns(tmp_path: Path, console: RecordingConsole) -> None:
    name = _failing_model(project_models(N))
    root = generate_project(
        tmp_path, N, db_path=tmp_path / "db.duckdb", failing={name: "non_blocking_audit"}
    )
    ctx = _context(root)
    ctx.plan(auto_apply=True, no_prompts=True, skip_backfill=True)
    assert ctx.run() == CompletionStatus.SUCCESS
    assert console.failed == []
    hits = [w for w in console.warnings if "number_of_rows_non_blocking" in w]
    assert len(hits) == 1 and name.split(".")[1] in hits[0], console.warnings
