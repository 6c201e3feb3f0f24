"""dg-sqlmesh: orchestrate a SQLMesh project with Dagster.

Every SQLMesh model is its own Dagster asset, every audit an asset check, and a
Dagster run executes SQLMesh once for everything it selected.
"""

from dg_sqlmesh.components import SQLMeshProjectComponent
from dg_sqlmesh.definitions.asset_selection import (
    build_sqlmesh_asset_selection,
    get_asset_key_for_model,
    get_model_for_asset_key,
)
from dg_sqlmesh.definitions.assets import build_sqlmesh_asset_specs, sqlmesh_assets_factory
from dg_sqlmesh.definitions.deployment import branch_environment_name, deployment_environment
from dg_sqlmesh.definitions.executor import sqlmesh_executor
from dg_sqlmesh.definitions.janitor_job import sqlmesh_janitor_job, sqlmesh_janitor_schedule
from dg_sqlmesh.definitions.job import sqlmesh_job
from dg_sqlmesh.definitions.plan_job import sqlmesh_plan_job
from dg_sqlmesh.definitions.project_definitions import sqlmesh_definitions_factory
from dg_sqlmesh.definitions.resource import SQLMeshResource, SQLMeshResultsResource
from dg_sqlmesh.errors import (
    DagsterSQLMeshError,
    ErrorClass,
    SQLMeshDefinitionError,
    SQLMeshEnvironmentError,
    SQLMeshRunFailure,
    classify_error,
)
from dg_sqlmesh.execution.outcomes import ModelOutcome, ModelState
from dg_sqlmesh.metadata import (
    DgSQLMeshMetadataSet,
    SQLMeshAuditMetadataSet,
    SQLMeshModelMetadataSet,
    SQLMeshRunMetadataSet,
)
from dg_sqlmesh.project.description import ModelInfo, ProjectDescription
from dg_sqlmesh.project.load import load_project
from dg_sqlmesh.scheduling.due_models import find_due_models
from dg_sqlmesh.scheduling.partition_status import sqlmesh_partition_status_sensor
from dg_sqlmesh.scheduling.schedules import (
    build_sqlmesh_schedule_from_selection,
    sqlmesh_adaptive_schedule_factory,
    sqlmesh_schedules_by_cron,
)
from dg_sqlmesh.translation.automation import cron_automation_condition
from dg_sqlmesh.translation.checks import default_check_specs
from dg_sqlmesh.translation.defaults import (
    default_asset_key,
    default_column_lineage,
    default_description,
    default_freshness_policy,
    default_group_name,
    default_kinds,
    default_metadata,
    default_owners,
    default_tags,
)
from dg_sqlmesh.translation.freshness import cron_freshness_policy
from dg_sqlmesh.translation.tags import parse_tags
from dg_sqlmesh.translation.translator import SQLMeshTranslator
from dg_sqlmesh.translation.translator_settings import SQLMeshTranslatorSettings

__version__ = "0.1.0"

__all__ = [
    "DagsterSQLMeshError",
    "DgSQLMeshMetadataSet",
    "ErrorClass",
    "ModelInfo",
    "ModelOutcome",
    "ModelState",
    "ProjectDescription",
    "SQLMeshAuditMetadataSet",
    "SQLMeshDefinitionError",
    "SQLMeshEnvironmentError",
    "SQLMeshModelMetadataSet",
    "SQLMeshProjectComponent",
    "SQLMeshResource",
    "SQLMeshResultsResource",
    "SQLMeshRunFailure",
    "SQLMeshRunMetadataSet",
    "SQLMeshTranslator",
    "SQLMeshTranslatorSettings",
    "branch_environment_name",
    "build_sqlmesh_asset_selection",
    "build_sqlmesh_asset_specs",
    "build_sqlmesh_schedule_from_selection",
    "classify_error",
    "cron_automation_condition",
    "cron_freshness_policy",
    "default_asset_key",
    "default_check_specs",
    "default_column_lineage",
    "default_description",
    "default_freshness_policy",
    "default_group_name",
    "default_kinds",
    "default_metadata",
    "default_owners",
    "default_tags",
    "deployment_environment",
    "find_due_models",
    "get_asset_key_for_model",
    "get_model_for_asset_key",
    "load_project",
    "parse_tags",
    "sqlmesh_adaptive_schedule_factory",
    "sqlmesh_assets_factory",
    "sqlmesh_definitions_factory",
    "sqlmesh_executor",
    "sqlmesh_janitor_job",
    "sqlmesh_janitor_schedule",
    "sqlmesh_job",
    "sqlmesh_partition_status_sensor",
    "sqlmesh_plan_job",
    "sqlmesh_schedules_by_cron",
]
