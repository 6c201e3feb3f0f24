"""No two executions of one SQLMesh environment at once.

SQLMesh has no run lock of its own: two concurrent ``run``\\ s of an environment compute
the same missing intervals and both evaluate them. Three layers keep them apart:

1. **Dagster's own guards** (docs/guides/deployment.md): every SQLMesh op is in the pool
   of its environment, so ``concurrency: pools: granularity: run`` with a limit of 1 makes
   the run queue hold a second run back; runs of ``sqlmesh_job`` and of the schedule also
   carry the ``dg_sqlmesh/environment`` tag for ``tag_concurrency_limits``.
2. **A check in the Dagster instance**, across hosts: the leader marks its run with
   ``dg_sqlmesh/executing`` = the environment, then looks for another active run that
   carries the same mark. Write first, read second: of two leaders racing, at least one
   sees the other, and a leader that sees another clears its mark, says in the run log
   which run it waits for, and tries again later (or fails after
   ``environment_lock_timeout``, naming that run).
3. **An OS file lock** on the host (``flock``, released by the kernel when its holder
   dies), the backstop for runs launched on one machine. Its files live in the system's
   temporary folder (``DG_SQLMESH_LOCK_DIR`` overrides it), never in Dagster's storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg

from dg_sqlmesh.errors import EnvironmentBusy
from dg_sqlmesh.execution.settings import SQLMeshProject
from dg_sqlmesh.project.description import ProjectDescription

EXECUTING_TAG = "dg_sqlmesh/executing"
HOLDER_TAG = "dg_sqlmesh/executing_holder"
# The mark's values when the run does not hold the environment (it matches no environment).
RELEASED = "released"
WAITING = "waiting"
LOCK_DIR_ENV = "DG_SQLMESH_LOCK_DIR"

_ACTIVE = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def environment_id(project_dir: str, gateway: str | None, environment: str) -> str:
    """The value that names one SQLMesh environment in run tags, the same on every host
    that deploys the same project (the project folder's name, not its path)."""
    return f"{environment}@{gateway or 'default'}/{Path(project_dir).name}"


@contextlib.contextmanager
def hold_environment(
    instance: dg.DagsterInstance,
    run_id: str,
    environment: str,
    *,
    description: str,
    timeout_seconds: float,
    log: Callable[[str, str], None],
) -> Iterator[None]:
    """Hold ``environment`` (an :func:`environment_id`) for the duration of the block."""
    deadline = time.monotonic() + timeout_seconds
    holder = f"Dagster run {run_id} (pid {os.getpid()}, {socket.gethostname()})"
    with host_lock(
        description,
        holder=holder,
        deadline=deadline,
        describe=description,
        waited=timeout_seconds,
        on_wait=lambda current: log(
            "warning", f"Waiting for {current} to finish with {description} before running SQLMesh"
        ),
    ):
        _claim_in_instance(
            instance, run_id, environment, description, deadline, timeout_seconds, log
        )
        try:
            yield
        finally:
            # Dagster cannot remove a run tag: the mark says it was released (never empty).
            instance.add_run_tags(run_id, {EXECUTING_TAG: RELEASED})


def _claim_in_instance(
    instance: dg.DagsterInstance,
    run_id: str,
    environment: str,
    description: str,
    deadline: float,
    waited: float,
    log: Callable[[str, str], None],
) -> None:
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
    waited_for: str | None = None
    while True:
        instance.add_run_tags(run_id, {EXECUTING_TAG: environment, HOLDER_TAG: me})
        other = _other_holder(instance, run_id, environment)
        if other is None:
            return
        instance.add_run_tags(run_id, {EXECUTING_TAG: WAITING})
        if time.monotonic() >= deadline:
            raise EnvironmentBusy(
                f"{description} is still being run by Dagster run {other.run_id} "
                f"({_holder_text(other)}) after waiting {waited:.0f} s. Wait for that run to "
                "finish (or terminate it if it is dead), or raise "
                "SQLMeshResource(environment_lock_timeout=...)."
            )
        if waited_for != other.run_id:
            waited_for = other.run_id
            log(
                "warning",
                f"Waiting for Dagster run {other.run_id} ({_holder_text(other)}) to finish with "
                f"{description} before running SQLMesh. Nothing in Dagster held this run "
                "back: give the SQLMesh assets' pool a limit of 1 with run granularity (see "
                "docs/guides/deployment.md) to have Dagster queue such runs instead.",
            )
        time.sleep(0.5 + random.random())  # a random back-off breaks a tie between two


def _other_holder(
    instance: dg.DagsterInstance, run_id: str, environment: str
) -> dg.DagsterRun | None:
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={EXECUTING_TAG: environment}, statuses=_ACTIVE)
    )
    for run in runs:
        if run.run_id != run_id and not _is_dead(run):
            return run
    return None


def _holder(run: dg.DagsterRun) -> dict:
    """The holder a run's tag names: ``{"pid", "host", "since"}``, or ``{}``."""
    try:
        holder = json.loads(run.tags.get(HOLDER_TAG) or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_dead(run: dg.DagsterRun) -> bool:
    """A holder on this host whose process is gone (a killed run keeps its tags)."""
    holder = _holder(run)
    if holder.get("host") != socket.gethostname() or not holder.get("pid"):
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _holder_text(run: dg.DagsterRun) -> str:
    holder = _holder(run)
    if not holder:
        return "status " + run.status.value
    return f"pid {holder.get('pid')} on {holder.get('host')}"


def hold_project_environment(
    instance: dg.DagsterInstance,
    run_id: str,
    project: SQLMeshProject,
    description: ProjectDescription,
    log: Callable[[str, str], None],
) -> contextlib.AbstractContextManager[None]:
    """:func:`hold_environment` for the project's environment, as every job holds it."""
    return hold_environment(
        instance,
        run_id,
        environment_id(description.project_dir, description.gateway, project.environment),
        description=(
            f"SQLMesh environment '{project.environment}' of {description.project_dir} "
            f"(gateway {description.gateway})"
        ),
        timeout_seconds=project.environment_lock_timeout,
        log=log,
    )


@contextlib.contextmanager
def host_lock(
    key: str,
    *,
    holder: str,
    deadline: float,
    describe: str,
    waited: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """An exclusive OS lock on ``key`` among the processes of this host.

    The holder's description is written into the lock file so that waiters can say whom
    they wait for.
    """
    directory = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir(), "dg_sqlmesh"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"environment-{hashlib.sha1(key.encode()).hexdigest()[:16]}.lock"
    with open(path, "a+") as handle:
        announced = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                current = handle.read().strip() or "another run"
                if time.monotonic() >= deadline:
                    raise EnvironmentBusy(
                        f"{describe} is still being run by {current} after waiting "
                        f"{waited:.0f} s. Wait for that run to finish, or raise "
                        "SQLMeshResource(environment_lock_timeout=...)."
                    ) from None
                if not announced and on_wait is not None:
                    on_wait(current)
                    announced = True
                time.sleep(0.5)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(holder)
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
