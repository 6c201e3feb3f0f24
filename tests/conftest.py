"""Shared fixtures: real SQLMesh projects on real DuckDB files, real Dagster instances."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
# Step processes of the multiprocess executor import tests/helpers/defs_from_env.py.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p
)
os.environ.setdefault("SQLMESH__DISABLE_ANONYMIZED_ANALYTICS", "1")

from helpers.harness import copy_project, plan_project  # noqa: E402
from projects.generate import generate_project  # noqa: E402

EXAMPLE = TESTS.parent / "examples" / "shop"


@pytest.fixture
def instance(tmp_path):
    """A real Dagster instance (SQLite storage on disk) in its own folder."""
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def shop_project(tmp_path) -> Path:
    """A copy of the example project, with its DuckDB file in the copy."""
    return copy_project(EXAMPLE, tmp_path / "shop")


@pytest.fixture
def planned_shop(shop_project) -> Path:
    """The example project with its prod environment created and no data yet."""
    plan_project(shop_project)
    return shop_project


@pytest.fixture
def generated(tmp_path):
    """Factory: a generated N-model project, planned (environment, no data)."""

    def make(n_models: int = 12, *, failing: dict | None = None, plan: bool = True, **kw):
        root = tmp_path / f"gen{n_models}"
        generate_project(root, n_models, failing=failing, db_path=root / "db.duckdb", **kw)
        if plan:
            plan_project(root)
        return root

    return make


# The slowest test files first (measured with --durations=0): pytest-xdist's --dist loadfile
# hands files to its workers in collection order, so the long ones start first and the
# workers finish together instead of one waiting for the other's last long file.
SLOWEST_FIRST = (
    "test_execution.py",
    "test_materialize_all_e2e.py",
    "test_celery.py",
    "test_live.py",
    "test_distributed.py",
    "test_dask.py",
    "test_leader.py",
    "test_what_the_ui_shows.py",
    "test_faults.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
