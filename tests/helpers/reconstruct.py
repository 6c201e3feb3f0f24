"""Jobs that every step process rebuilds, as Dagster's multiprocess executor and a code
server rebuild them: from ``helpers.defs_from_env``, over the project the environment names.

Dagster memoises the last reconstructed job per pointer, and every test has its own
project, so each helper forgets what an earlier test reconstructed.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg


def forget_reconstructed_jobs() -> None:
    from dagster._core.definitions.reconstruct import ReconstructableJob

    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()


def reconstructable_job(job_fn: Callable[[], dg.JobDefinition]):  # noqa: ANN201
    """``dg.reconstructable(job_fn)``, nothing memoised from an earlier test."""
    forget_reconstructed_jobs()
    return dg.reconstructable(job_fn)


def ui_job():  # noqa: ANN201
    """The code location's implicit asset job, as the UI launches it."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    forget_reconstructed_jobs()
    repository = ReconstructableRepository.for_module("helpers.defs_from_env", "defs")
    return repository.get_reconstructable_job("__ASSET_JOB")
