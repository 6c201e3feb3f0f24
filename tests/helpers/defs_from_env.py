"""Definitions for a project named by environment variables.

The multiprocess executor re-imports the job in every step process, so tests
pass the project (and factory options, as JSON) through the environment.
"""

from __future__ import annotations

import json
import os

from dg_sqlmesh import sqlmesh_definitions_factory


def definitions():
    options = json.loads(os.environ.get("DG_SQLMESH_TEST_OPTIONS", "{}"))
    executor = options.pop("executor", None)  # the code location's executor, by name
    if executor == "dask":
        from dagster_dask import dask_executor

        options["executor"] = dask_executor
    elif executor == "celery":
        from dagster_celery import celery_executor

        options["executor"] = celery_executor
    return sqlmesh_definitions_factory(project_dir=os.environ["DG_SQLMESH_TEST_PROJECT"], **options)


def sqlmesh_job():
    return definitions().resolve_job_def("sqlmesh_job")


def checks_and_assets_job():
    """A job selecting the checks named in ``DG_SQLMESH_TEST_CHECKS`` (JSON ``[[asset, check]]``)
    without their assets, and the assets in ``DG_SQLMESH_TEST_ASSETS`` (JSON list)."""
    import dagster as dg

    defs = definitions()
    checks = [
        dg.AssetCheckKey(dg.AssetKey.from_user_string(a), c)
        for a, c in json.loads(os.environ["DG_SQLMESH_TEST_CHECKS"])
    ]
    assets = [
        dg.AssetKey.from_user_string(a) for a in json.loads(os.environ["DG_SQLMESH_TEST_ASSETS"])
    ]
    job = dg.define_asset_job(
        "checks_and_assets",
        selection=dg.AssetSelection.checks(*checks) | dg.AssetSelection.assets(*assets),
    )
    merged = dg.Definitions(assets=defs.assets, jobs=[job], resources=defs.resources)
    return merged.resolve_job_def("checks_and_assets")


def __getattr__(name: str):  # noqa: ANN202 - ``defs``: the code location, as a server loads it
    if name != "defs":
        raise AttributeError(name)
    return definitions()
