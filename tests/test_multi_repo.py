"""A multi-repo SQLMesh project (``project:`` set in each repo's config), as users lay it
out: two repos side by side sharing one DuckDB warehouse and its state.

Loading definitions must never connect to the warehouse (a second writer holds the file
during the load) nor keep it held afterwards; every repo's files key the description
cache; runs through Dagster write the same data as bare SQLMesh.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.db_holder import can_write, hold, release
from helpers.harness import (
    check_evaluations,
    copy_project,
    materialized,
    query,
    run_multiprocess,
)

from dg_sqlmesh import SQLMeshDefinitionError, sqlmesh_definitions_factory
from dg_sqlmesh.metadata import MODEL
from dg_sqlmesh.project.cache import load_description

PROJECTS = Path(__file__).parent / "projects"
ORDERS, TOTALS = "warehouse/bronze/orders", "warehouse/silver/customer_totals"


@pytest.fixture
def multi(tmp_path) -> Path:
    """The two repos, copied; their parent folder."""
    return copy_project(PROJECTS / "multi_repo", tmp_path / "multi")


def repos(parent: Path) -> list[Path]:
    return [parent / "bronze", parent / "silver"]


def sqlmesh_context(parent: Path):
    """A bare SQLMesh context over both repos (``sqlmesh -p bronze -p silver``)."""
    from sqlmesh import Context
    from sqlmesh.core.console import NoopConsole, set_console

    from dg_sqlmesh.project.config import load_config

    set_console(NoopConsole())
    configs = {p: load_config(p, None)[0] for p in repos(parent)}
    return Context(paths=repos(parent), config=configs, gateway="local")


def plan(parent: Path, *, skip_backfill: bool = True) -> None:
    context = sqlmesh_context(parent)
    try:
        context.plan("prod", auto_apply=True, no_prompts=True, skip_backfill=skip_backfill)
    finally:
        context.close()


def table(parent: Path, name: str) -> list[tuple]:
    return query(parent / "warehouse.duckdb", f"SELECT * FROM {name} ORDER BY 1")


# --- loading never connects, never holds ---------------------------------------------------


@pytest.mark.parametrize("given", ["one_repo", "both_repos", "parent"])
def test_loading_definitions_opens_no_connection_and_holds_nothing(multi, given):
    plan(multi)
    project_dir = {
        "one_repo": str(multi / "silver"),
        "both_repos": [str(p) for p in repos(multi)],
        "parent": str(multi),
    }[given]
    db = multi / "warehouse.duckdb"

    holder = hold(db)
    try:
        defs = sqlmesh_definitions_factory(project_dir=project_dir)
    finally:
        release(holder)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert TOTALS in keys and ORDERS in keys  # bronze.orders: an asset, or an upstream key

    assert can_write(db) == "", "the process that loaded definitions still holds the file"


# --- several repos: one project -----------------------------------------------------------


@pytest.mark.parametrize("given", ["both_repos", "parent"])
def test_every_repo_is_described(multi, given):
    project_dir = [str(p) for p in repos(multi)] if given == "both_repos" else str(multi)
    defs = sqlmesh_definitions_factory(project_dir=project_dir)
    specs = {s.key.to_user_string(): s for a in defs.assets for s in a.specs}
    assert set(specs) == {ORDERS, TOTALS}
    assert [d.asset_key.to_user_string() for d in specs[TOTALS].deps] == [ORDERS]
    assert specs[ORDERS].metadata[MODEL.file] == "bronze/models/orders.sql"
    assert specs[TOTALS].metadata[MODEL.file] == "silver/models/customer_totals.sql"


def test_a_change_in_another_repo_is_never_served_stale(multi):
    """The cache lives under the first repo and is keyed on every repo's files."""
    given = [str(multi / "silver"), str(multi / "bronze")]
    before = {m.name: m for m in load_description(given).models}
    orders = multi / "bronze" / "models" / "orders.sql"
    orders.write_text(
        orders.read_text()
        .replace("amount)", "amount, note)")
        .replace("10)", "10, 'x')")
        .replace("25)", "25, 'y')")
        .replace("40)", "40, 'z')")
    )
    after = {m.name: m for m in load_description(given).models}
    assert after["bronze.orders"].data_hash != before["bronze.orders"].data_hash
    assert [c.name for c in after["bronze.orders"].columns] == [
        "order_id",
        "customer",
        "amount",
        "note",
    ]
    assert load_description(given) == load_description(given, use_cache=False)


def test_a_folder_without_any_repo_names_the_fix(tmp_path):
    (tmp_path / "empty" / "models").mkdir(parents=True)
    with pytest.raises(SQLMeshDefinitionError) as info:
        sqlmesh_definitions_factory(project_dir=str(tmp_path / "empty"))
    assert "no subfolder has one" in str(info.value)
    with pytest.raises(SQLMeshDefinitionError, match="empty list"):
        sqlmesh_definitions_factory(project_dir=[])


# --- runs: the same data as bare SQLMesh ---------------------------------------------------


@pytest.fixture
def bare_sqlmesh(tmp_path) -> dict[str, list[tuple]]:
    """What `sqlmesh -p bronze -p silver plan && run` writes, on a copy of its own."""
    parent = copy_project(PROJECTS / "multi_repo", tmp_path / "bare")
    plan(parent)
    context = sqlmesh_context(parent)
    try:
        context.run("prod")
    finally:
        context.close()
    return {name: table(parent, name) for name in ("bronze.orders", "silver.customer_totals")}


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_runs_write_what_bare_sqlmesh_writes(multi, instance, bare_sqlmesh, executor):
    plan(multi)
    if executor == "in_process":
        defs = sqlmesh_definitions_factory(project_dir=[str(p) for p in repos(multi)])
        job = defs.resolve_job_def("sqlmesh_job")
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    else:
        result = run_multiprocess(multi, instance)  # the parent folder of the repos
    assert result.success
    assert set(materialized(instance, result.run_id)) == {ORDERS, TOTALS}
    checks = check_evaluations(instance, result.run_id)
    assert {k: v["passed"] for k, v in checks.items()} == {
        (ORDERS, "not_null"): True,
        (TOTALS, "unique_values"): True,
    }
    for name, rows in bare_sqlmesh.items():
        assert table(multi, name) == rows
    assert bare_sqlmesh["silver.customer_totals"] == [("a", 50), ("b", 25)]
