"""Names shared across the package: the job, the run tags, metadata keys.

A leaf module: it imports nothing, so every other module can use these names without
importing the module that happens to use them most.
"""

from __future__ import annotations

#: The job selecting every SQLMesh asset of a project.
JOB_NAME = "sqlmesh_job"

#: SQLMesh's production environment, protected from plans unless allowed.
PROD = "prod"

#: Run tag naming the SQLMesh environment a run executes (run queue limits read it).
ENVIRONMENT_TAG = "dg_sqlmesh/environment"
# On a run of the assets: apply the plan reviewed in that run of the plan job, and only it.
REVIEWED_PLAN_TAG = "dg_sqlmesh/reviewed_plan"
# On each asset (with compare_with): what the project changes against that environment.
CHANGE_TAG = "sqlmesh/change"
#: Run tags of the adaptive schedule's runs: its name, and the tick's scheduled time.
SCHEDULE_TAG = "dg_sqlmesh/schedule"
SCHEDULED_TIME_TAG = "dg_sqlmesh/scheduled_time"

#: Persistent failures must never be retried blindly: a failed step does not make
#: Dagster's run-retry daemon re-launch the run (transient errors are retried inside
#: the run's SQLMesh execution instead, with backoff).
NO_RUN_RETRY_TAGS = {"dagster/retry_on_asset_or_op_failure": "false"}
