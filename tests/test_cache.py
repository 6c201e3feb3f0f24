"""The on-disk cache of the project description (dg_sqlmesh.project.cache).

A hit must give exactly the definitions a full load gives, without building a SQLMesh
context; any change to a file the project is made of must be a miss; a corrupt or
unwritable cache must never fail a load.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from helpers.harness import copy_project, model_assets

import dg_sqlmesh.project.load
from dg_sqlmesh import sqlmesh_definitions_factory
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.project.cache import default_cache_dir, load_description
from dg_sqlmesh.project.load import load_project

EXAMPLE = Path(__file__).parent.parent / "examples" / "shop"

CONFIG = """\
gateways:
  local:
    connection:
      type: duckdb
      database: cache.duckdb
default_gateway: local
model_defaults:
  dialect: duckdb
  start: '2026-11-20'
  cron: '@daily'
variables:
  floor: "{{ env_var('DG_SQLMESH_TEST_FLOOR', '0') }}"
"""

FILES = {
    "config.yaml": CONFIG,
    "seeds/items.csv": "id,qty\n1,2\n2,3\n",
    "macros/util.py": (
        "from sqlmesh import macro\n\n\n@macro()\ndef scale(evaluator):\n    return 2\n"
    ),
    "audits/positive.sql": (
        "AUDIT (name positive);\nSELECT * FROM @this_model WHERE @column < 0\n"
    ),
    "models/items.sql": (
        "MODEL (name s.items, kind SEED (path '../seeds/items.csv'), columns (id INT, qty INT));\n"
    ),
    "models/scaled.sql": (
        'MODEL (name s.scaled, kind FULL, audits (positive("column" := qty)));\n'
        "SELECT id, qty * @scale() AS qty FROM s.items WHERE qty >= @VAR('floor')\n"
    ),
}

ITEMS, SCALED = "cache/s/items", "cache/s/scaled"


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "cache"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def contexts(monkeypatch) -> list[Path]:
    """Records every SQLMesh context the library builds (i.e. every full load)."""
    built: list[Path] = []
    original = dg_sqlmesh.project.load.create_context

    def counting(project_dir, *args, **kwargs):
        built.append(project_dir)
        return original(project_dir, *args, **kwargs)

    monkeypatch.setattr(dg_sqlmesh.project.load, "create_context", counting)
    return built


def no_context(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a SQLMesh context was built: the cache was not used")

    monkeypatch.setattr(dg_sqlmesh.project.load, "create_context", refuse)


def load(project_dir: Path, **options) -> dg.Definitions:
    return sqlmesh_definitions_factory(project_dir=str(project_dir), **options)


def snapshot(defs: dg.Definitions) -> dict:
    """Everything Dagster gets from the description, comparable with ==."""
    found = {}
    for assets_def in model_assets(defs):
        for spec in assets_def.specs:
            found[spec.key.to_user_string()] = {
                "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
                "metadata": dict(spec.metadata),
                "code_version": spec.code_version,
                "group": spec.group_name,
                "owners": spec.owners,
                "tags": dict(spec.tags),
                "description": spec.description,
                "checks": sorted(
                    (c.name, c.blocking, c.description, repr(dict(c.metadata)))
                    for c in assets_def.check_specs
                ),
            }
    return found


# --- hits ---------------------------------------------------------------------------------


def test_unchanged_example_project_is_a_hit_with_identical_specs(tmp_path, monkeypatch):
    shop = copy_project(EXAMPLE, tmp_path / "shop")
    mapping = {"external_asset_mapping": "raw/{node.schema}/{node.name}"}
    first = snapshot(load(shop, **mapping))
    assert (default_cache_dir(shop) / "description-default.json").is_file()

    no_context(monkeypatch)
    second = snapshot(load(shop, **mapping))
    assert second == first
    assert len(second) == 12
    assert sum(len(s["checks"]) for s in second.values()) == 30
    assert second["shop/marts/payment_reconciliation"]["deps"] == [
        "raw/payments/transactions",
        "shop/staging/stg_order_items",
    ]


def test_cached_description_equals_a_full_load(project, monkeypatch):
    fresh = load_project(project)
    assert load_description(project) == fresh  # miss: loads and writes
    no_context(monkeypatch)
    assert load_description(project) == fresh  # hit: read back from JSON


def test_hit_does_not_build_a_context(project, contexts):
    first = snapshot(load(project))
    assert len(contexts) == 1
    for _ in range(2):
        assert snapshot(load(project)) == first
    assert len(contexts) == 1


def test_explicit_cache_dir(project, tmp_path, contexts):
    cache_dir = tmp_path / "elsewhere" / "cache"
    load(project, cache_dir=str(cache_dir))
    load(project, cache_dir=str(cache_dir))
    assert len(contexts) == 1
    assert (cache_dir / "description-default.json").is_file()
    assert not default_cache_dir(project).exists()


# --- misses -------------------------------------------------------------------------------


def _replace(project: Path, rel: str, old: str, new: str) -> None:
    path = project / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _blocking(snap: dict) -> bool:
    (check,) = snap[SCALED]["checks"]
    return check[1]


CHANGES = {
    "model_sql": (
        lambda p: _replace(p, "models/scaled.sql", "AS qty FROM", "+ 1 AS qty FROM"),
        lambda before, after: (
            after[SCALED]["code_version"] != before[SCALED]["code_version"]
            and after[ITEMS] == before[ITEMS]
            and "+ 1" in after[SCALED]["metadata"][MODEL.rendered_query].md_str
        ),
    ),
    "audit_file": (
        lambda p: _replace(
            p, "audits/positive.sql", "name positive", "name positive, blocking false"
        ),
        lambda before, after: _blocking(before) and not _blocking(after),
    ),
    "macro_file": (
        lambda p: _replace(p, "macros/util.py", "return 2", "return 3"),
        lambda before, after: (
            after[SCALED]["code_version"] != before[SCALED]["code_version"]
            and '* 2 AS "qty"' in before[SCALED]["metadata"][MODEL.rendered_query].md_str
            and '* 3 AS "qty"' in after[SCALED]["metadata"][MODEL.rendered_query].md_str
        ),
    ),
    "config_yaml": (
        lambda p: _replace(p, "config.yaml", "cron: '@daily'", "cron: '@hourly'"),
        lambda before, after: (
            before[SCALED]["metadata"][MODEL.cron] == "@daily"
            and after[SCALED]["metadata"][MODEL.cron] == "@hourly"
            and after[ITEMS]["metadata"][MODEL.cron] == "@hourly"
        ),
    ),
    "seed_csv": (
        lambda p: _replace(p, "seeds/items.csv", "2,3\n", "2,3\n3,4\n"),
        lambda before, after: (
            after[ITEMS]["code_version"] != before[ITEMS]["code_version"]
            and after[SCALED]["code_version"] == before[SCALED]["code_version"]
        ),
    ),
    "new_model_file": (
        lambda p: (p / "models" / "extra.sql").write_text(
            "MODEL (name s.extra, kind VIEW);\nSELECT id FROM s.scaled\n"
        ),
        lambda before, after: set(after) == set(before) | {"cache/s/extra"},
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_change_is_a_miss(project, contexts, change):
    apply, reflected = CHANGES[change]
    before = snapshot(load(project))
    assert snapshot(load(project)) == before
    assert len(contexts) == 1  # the second load was a hit

    apply(project)
    after = snapshot(load(project))
    assert len(contexts) == 2, "the change did not invalidate the cache"
    assert reflected(before, after)
    # And it is what a full load without any cache gives.
    assert load_description(project, use_cache=False) == load_description(project)


def test_environment_variable_read_by_the_config_is_a_miss(project, contexts, monkeypatch):
    """config.yaml reads DG_SQLMESH_TEST_FLOOR: its value is part of the description."""
    monkeypatch.delenv("DG_SQLMESH_TEST_FLOOR", raising=False)
    before = snapshot(load(project))
    monkeypatch.setenv("DG_SQLMESH_TEST_FLOOR", "5")
    after = snapshot(load(project))
    assert len(contexts) == 2
    assert after[SCALED]["code_version"] != before[SCALED]["code_version"]
    assert ">= '5'" in after[SCALED]["metadata"][MODEL.rendered_query].md_str
    assert snapshot(load(project)) == after
    assert len(contexts) == 2  # same value again: a hit
    monkeypatch.delenv("DG_SQLMESH_TEST_FLOOR")
    assert snapshot(load(project)) == before
    assert len(contexts) == 3  # one cache entry per gateway: the way back is a miss too


def test_unrelated_files_do_not_invalidate(project, contexts):
    load(project)
    (project / "logs").mkdir()
    (project / "logs" / "sqlmesh.log").write_text("noise")
    (project / "cache.duckdb").write_bytes(b"not a real database")
    (project / ".cache" / "other").mkdir(parents=True)
    load(project)
    assert len(contexts) == 1


# --- a broken cache never fails a load ----------------------------------------------------


def _cache_file(project: Path) -> Path:
    return default_cache_dir(project) / "description-default.json"


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff not json at all")


def _bad_description(path: Path) -> None:
    import json

    payload = json.loads(path.read_text())
    payload["description"] = {"models": [{"fqn": 1}]}  # the right key, a broken body
    path.write_text(json.dumps(payload))


@pytest.mark.parametrize("corrupt", [_truncate, _garbage, _bad_description])
def test_corrupt_cache_file_means_full_load_and_warning(project, contexts, caplog, corrupt):
    expected = snapshot(load(project))
    corrupt(_cache_file(project))

    with caplog.at_level(logging.WARNING, logger="dg_sqlmesh"):
        assert snapshot(load(project)) == expected
    assert len(contexts) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "no warning about the corrupt cache"
    assert any(str(_cache_file(project)) in r.getMessage() for r in warnings)

    # The full load rewrote a good cache.
    load(project)
    assert len(contexts) == 2


def _cache_dir_under_a_file(project: Path, tmp_path: Path) -> Path:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder's parent should be")
    return blocker / "cache"


def _cache_file_is_a_folder(project: Path, tmp_path: Path) -> Path:
    cache_dir = tmp_path / "cache_dir"
    (cache_dir / "description-default.json").mkdir(parents=True)
    return cache_dir


@pytest.mark.parametrize("make_cache_dir", [_cache_dir_under_a_file, _cache_file_is_a_folder])
def test_unwritable_cache_dir_means_full_load_without_error(
    project, tmp_path, contexts, make_cache_dir
):
    cache_dir = make_cache_dir(project, tmp_path)
    first = snapshot(load(project, cache_dir=str(cache_dir)))
    second = snapshot(load(project, cache_dir=str(cache_dir)))
    leftovers = list(cache_dir.glob("*.tmp")) if cache_dir.is_dir() else []
    assert first == second
    assert len(first) == 2
    assert len(contexts) == 2  # nothing could be cached: both loads were full loads
    assert leftovers == []  # no half-written temporary files left behind
    dg.Definitions.validate_loadable(load(project, cache_dir=str(cache_dir)))


@contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only, for root too (immutable attribute), then restore it."""
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if not chattr or subprocess.run([chattr, "+i", str(folder)]).returncode != 0:
            pytest.skip("cannot make a folder read-only for root here")
        undo = [chattr, "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = None
    try:
        probe = folder / "probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        yield folder
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            folder.chmod(0o755)


def test_read_only_cache_dir_means_full_load_without_error(project, tmp_path, contexts):
    cache_dir = tmp_path / "read_only"
    cache_dir.mkdir()
    with read_only(cache_dir):
        first = snapshot(load(project, cache_dir=str(cache_dir)))
        second = snapshot(load(project, cache_dir=str(cache_dir)))
    assert first == second and len(first) == 2
    assert len(contexts) == 2
    assert list(cache_dir.iterdir()) == []


def test_read_only_cache_dir_with_a_valid_cache_is_a_hit(project, tmp_path, contexts):
    """E.g. a cache built into a container image whose file system is read-only."""
    cache_dir = tmp_path / "prebuilt"
    expected = snapshot(load(project, cache_dir=str(cache_dir)))
    with read_only(cache_dir):
        assert snapshot(load(project, cache_dir=str(cache_dir))) == expected
    assert len(contexts) == 1


def test_the_cycle_collector_is_paused_only_while_the_definitions_are_built(project):
    """Full collections walk every live object; a 5000-model build triggered several. The
    collector is off while the assets are built, and back on afterwards, even on errors."""
    import gc

    from dg_sqlmesh import SQLMeshTranslator

    seen: list[bool] = []

    class Recording(SQLMeshTranslator):
        def get_asset_spec(self, model, **kwargs):
            seen.append(gc.isenabled())
            return super().get_asset_spec(model, **kwargs)

    class Failing(SQLMeshTranslator):
        def get_asset_spec(self, model, **kwargs):
            raise RuntimeError("a translator bug")

    assert gc.isenabled()
    sqlmesh_definitions_factory(project_dir=str(project), translator=Recording())
    assert seen and not any(seen)
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="a translator bug"):
        sqlmesh_definitions_factory(project_dir=str(project), translator=Failing())
    assert gc.isenabled()


def _age(root: Path, seconds: float) -> None:
    """Set every file's modification time ``seconds`` into the past."""
    import time

    then = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def test_unchanged_files_are_not_read_again(project, contexts, monkeypatch):
    """The cache remembers each file's digest with its size and modification time; a hit
    reads no project file, and a same-size edit (new modification time) is still a miss."""
    import dg_sqlmesh.project.cache as catalog_cache

    _age(project, 60)
    expected = snapshot(load(project))
    read: list[Path] = []
    original = catalog_cache._file_content
    monkeypatch.setattr(
        catalog_cache, "_file_content", lambda path: read.append(path) or original(path)
    )

    assert snapshot(load(project)) == expected
    assert read == [] and len(contexts) == 1

    model = project / "models" / "scaled.sql"
    text = model.read_text()
    model.write_text(text.replace("qty >=", "qty <="))  # same size, another query
    assert model.read_text() != text and len(model.read_text()) == len(text)
    load(project)
    assert read == [model] and len(contexts) == 2


def test_a_file_written_just_before_a_load_is_never_trusted_by_its_time(project, contexts):
    """A write in the same clock tick as the recording would keep size and time: files
    changed within the last seconds are re-read on every load, never remembered."""
    import json

    load(project)  # every file was written just now
    payload = json.loads(_cache_file(project).read_text())
    assert payload["files"] == {}
    _age(project, 60)
    load(project)  # a hit (same contents): the memo is written only on a miss
    assert len(contexts) == 1
