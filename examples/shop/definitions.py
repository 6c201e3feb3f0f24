"""Dagster definitions for the shop example: one asset per SQLMesh model.

Open it in the Dagster UI with ``dagster dev -f examples/shop/definitions.py``.
The environment and gateway can be chosen with SHOP_SQLMESH_ENVIRONMENT and
SHOP_SQLMESH_GATEWAY (defaults: prod on DuckDB); SHOP_SQLMESH_APPLY_PLAN=1
lets runs apply a plan when the environment is missing or out of date.
"""

import os
from pathlib import Path

from dg_sqlmesh import sqlmesh_definitions_factory

defs = sqlmesh_definitions_factory(
    project_dir=str(Path(__file__).parent),
    gateway=os.environ.get("SHOP_SQLMESH_GATEWAY", "duckdb"),
    environment=os.environ.get("SHOP_SQLMESH_ENVIRONMENT", "prod"),
    external_asset_mapping="raw/{node.schema}/{node.name}",
    enable_schedule=True,
    # The quickstart opts in to creating/updating the environment with a plan.
    apply_plan=os.environ.get("SHOP_SQLMESH_APPLY_PLAN") == "1",
    allow_prod_plan=os.environ.get("SHOP_SQLMESH_APPLY_PLAN") == "1",
)
