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
    return sqlmesh_definitions_factory(project_dir=os.environ["DG_SQLMESH_TEST_PROJECT"], **options)


def sqlmesh_job():
    return definitions().resolve_job_def("sqlmesh_job")
