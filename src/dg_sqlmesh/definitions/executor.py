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
"""

from __future__ import annotations

import dagster as dg

from dg_sqlmesh._compat.dagster import executor_modes

_MULTI, _IN_PROCESS, _create_multi, _create_in_process, _requirements = executor_modes()


@dg.executor(
    name="sqlmesh_executor",
    config_schema=dg.Field(
        dg.Selector({"multiprocess": _MULTI, "in_process": _IN_PROCESS}),
        default_value={"in_process": {}},
    ),
    requirements=_requirements,
)
def sqlmesh_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's default executor with ``in_process`` as its default mode.

    Example:
        .. code-block:: yaml

            execution:
              config:
                multiprocess:
                  max_concurrent: 4
    """
    config = init_context.executor_config
    if "multiprocess" in config:
        return _create_multi(config["multiprocess"])
    return _create_in_process(config["in_process"])
