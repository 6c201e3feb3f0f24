"""Which SQLMesh environment a Dagster deployment runs: prod, or in a Dagster+ branch
deployment a development environment named after its pull request or branch.

Dagster+ sets these variables in a branch deployment's code servers and run workers
(https://docs.dagster.io/deployment/dagster-plus/ci-cd/branch-deployments):

* ``DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT``: ``1`` (or ``true``) in a branch deployment;
* ``DAGSTER_CLOUD_PULL_REQUEST_ID``: the pull request's number;
* ``DAGSTER_CLOUD_GIT_BRANCH``: the branch.

The rule, :func:`branch_environment_name`: ``pr_<number>`` for a pull request, otherwise
``branch_<branch>`` with the branch lowercased and every character that is not a letter, a
digit or ``_`` replaced by ``_`` (SQLMesh puts the name in schema names:
``<schema>__<environment>``), cut to :data:`MAX_NAME` characters. ``environment=`` on the
resource, the factories or the component always wins: pass your own rule's result there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from dg_sqlmesh.constants import PROD
from dg_sqlmesh.errors import SQLMeshDefinitionError

IS_BRANCH = "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT"
PULL_REQUEST = "DAGSTER_CLOUD_PULL_REQUEST_ID"
GIT_BRANCH = "DAGSTER_CLOUD_GIT_BRANCH"
MAX_NAME = 40  # <schema>__<environment> stays within PostgreSQL's 63-character names


def in_branch_deployment(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a Dagster+ branch deployment."""
    environ = os.environ if environ is None else environ
    return environ.get(IS_BRANCH, "").strip().lower() in ("1", "true", "yes")


def branch_environment_name(pull_request_id: str | None, git_branch: str | None) -> str | None:
    """The SQLMesh environment of a branch deployment: ``pr_<number>``, else
    ``branch_<branch>`` (identifier characters only); None without either.

    Example:
        >>> branch_environment_name("42", "feature/x")
        'pr_42'
        >>> branch_environment_name(None, "Feature/New-Orders")
        'branch_feature_new_orders'
    """
    if pull_request_id and pull_request_id.strip():
        name = f"pr_{pull_request_id.strip()}"
    elif git_branch and git_branch.strip():
        name = f"branch_{git_branch.strip()}"
    else:
        return None
    name = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return name[:MAX_NAME].rstrip("_")


def deployment_environment(environ: Mapping[str, str] | None = None) -> str:
    """The SQLMesh environment this deployment runs when none is given: the branch
    deployment's (:func:`branch_environment_name`), or prod."""
    environ = os.environ if environ is None else environ
    if not in_branch_deployment(environ):
        return PROD
    name = branch_environment_name(environ.get(PULL_REQUEST), environ.get(GIT_BRANCH))
    if name is None:  # never fall back to prod: the branch's code would run there
        raise SQLMeshDefinitionError(
            f"This is a branch deployment ({IS_BRANCH} is set) but neither {PULL_REQUEST} nor "
            f"{GIT_BRANCH} names it, so no SQLMesh environment can be named after it. Pass "
            "environment= (a development environment) to the resource, factory or component."
        )
    return name
