"""The default executor of the SQLMesh definitions: in-process unless a run asks otherwise.

One run executes SQLMesh once, in its leader step; every other SQLMesh step only reports
its model's recorded outcome. Under Dagster's default multiprocess executor each of those
steps is a fresh process that loads the code location, which costs far more than the
report itself ("Materialize all" from the UI at 100 models took about 12x ``sqlmesh run``).
In one process they cost what Dagster's own event writes cost.

``sqlmesh_executor`` takes the very run config of Dagster's default executor
(``execution: config: multiprocess: ...`` or ``in_process: ...``) and only changes its
default to ``in_process``, so the choice stays the user's: per run in the launchpad, per
job (``define_asset_job(executor_def=...)``), or for the whole code location
(``sqlmesh_definitions_factory(executor=...)``).

A ``multiprocess`` run that names no ``start_method`` starts its steps from a forkserver
that has imported Dagster, SQLMesh and dg-sqlmesh already (where the platform has one), so
a step that only reports its model costs little more than a trivial asset step; Dagster's
own default, ``spawn``, imports all three again in every step.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import dagster as dg

from dg_sqlmesh._compat.dagster import executor_modes

_MULTI, _IN_PROCESS, _create_multi, _create_in_process, _requirements = executor_modes()

PRELOADED_MODULES = ["dagster", "sqlmesh", "dg_sqlmesh"]


def multiprocess_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` of the multiprocess mode, with a preloading forkserver as the default
    ``start_method`` where the platform has one.

    Example:
        >>> multiprocess_defaults({"max_concurrent": 2})["start_method"]
        {'forkserver': {'preload_modules': ['dagster', 'sqlmesh', 'dg_sqlmesh']}}
        >>> multiprocess_defaults({"start_method": {"spawn": {}}})["start_method"]
        {'spawn': {}}
    """
    if config.get("start_method") or "forkserver" not in multiprocessing.get_all_start_methods():
        return config
    return {**config, "start_method": {"forkserver": {"preload_modules": PRELOADED_MODULES}}}


@dg.executor(
    name="sqlmesh_executor",
    config_schema=dg.Field(
        dg.Selector({"multiprocess": _MULTI, "in_process": _IN_PROCESS}),
        default_value={"in_process": {}},
    ),
    requirements=_requirements,
)
def sqlmesh_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's default executor with ``in_process`` as its default mode (and a
    preloading forkserver as the default start method of ``multiprocess``).

    Example:
        .. code-block:: yaml

            execution:
              config:
                multiprocess:
                  max_concurrent: 4
    """
    config = init_context.executor_config
    if "multiprocess" in config:
        return _create_multi(multiprocess_defaults(config["multiprocess"]))
    return _create_in_process(config["in_process"])
