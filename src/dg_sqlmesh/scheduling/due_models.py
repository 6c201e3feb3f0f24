"""Which SQLMesh models are due at a time: read from SQLMesh's state, executing nothing.

A model is due when it has missing intervals whose cron has elapsed, exactly as
``sqlmesh run`` decides before it evaluates anything. The adaptive schedule asks this
on each tick.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dg_sqlmesh._compat.sqlmesh import no_fork_workers, use_sqlmesh_console
from dg_sqlmesh._compat.sqlmesh_state import environment_intervals
from dg_sqlmesh.constants import PROD
from dg_sqlmesh.errors import dagster_plan_option, plan_command
from dg_sqlmesh.project.config import load_config

if TYPE_CHECKING:
    from sqlmesh import Context

    from dg_sqlmesh.execution.settings import SQLMeshProject


@dataclass(frozen=True)
class DueModels:
    """What SQLMesh's state says about an environment at one execution time.

    ``due`` maps each due model (FQN, DAG order) to its missing intervals whose cron
    has elapsed; ``to_plan`` lists the models a plan would create or change (only
    filled when the resource may apply plans); ``not_ready`` says why nothing can
    run (the environment is missing, or a plan is updating it).
    """

    environment: str
    execution_time: datetime
    due: dict[str, tuple[tuple[datetime, datetime], ...]] = field(default_factory=dict)
    to_plan: tuple[str, ...] = ()
    next_due: datetime | None = None
    next_due_models: tuple[str, ...] = ()
    not_ready: str | None = None

    @property
    def selection(self) -> list[str]:
        """The models a run should select: due ones, and those a plan would touch."""
        return list(self.due) + [fqn for fqn in self.to_plan if fqn not in self.due]


def find_due_models(resource: SQLMeshProject, execution_time: datetime | None = None) -> DueModels:
    """Ask SQLMesh's state which models are due at ``execution_time``, executing nothing.

    A model is due when it has missing intervals that ended at or before the last
    tick of its cron (unless the resource has ``ignore_cron``), exactly as
    ``sqlmesh run`` decides at that time. Signals are not evaluated here (they may
    query the warehouse): a due model whose signal is not ready is left alone by the
    run itself. Opens the state connection for the duration of the call only.

    Example:
        >>> resource = SQLMeshResource(project_dir="examples/shop")  # doctest: +SKIP
        >>> find_due_models(resource, datetime(2026, 1, 10, tzinfo=UTC)).due
        ... # doctest: +SKIP
        {'"db"."shop"."orders"': ((datetime(...), datetime(...)),)}
    """
    execution_time = utc(execution_time or datetime.now(UTC))
    description = resource.describe()
    environment = resource.environment
    may_plan = resource.apply_plan and (environment.lower() != PROD or resource.allow_prod_plan)
    runnable = [m.fqn for m in description.models if not (m.is_external or m.is_embedded)]

    with state_context(resource) as context:
        state = environment_intervals(
            context, environment, execution_time, ignore_cron=resource.ignore_cron
        )

    if state is None:
        if may_plan:
            return DueModels(environment, execution_time, to_plan=tuple(runnable))
        where = f"{description.project_dir} (gateway {description.gateway})"
        return DueModels(
            environment,
            execution_time,
            not_ready=(
                f"SQLMesh environment '{environment}' does not exist in the state of {where}. "
                f"Create it with {plan_command(description.project_dir, environment)}, or "
                f"let Dagster plan it with {dagster_plan_option(environment)}."
            ),
        )
    if state.updating_plan:
        return DueModels(
            environment,
            execution_time,
            not_ready=(
                f"SQLMesh environment '{environment}' is being updated by plan "
                f"{state.updating_plan}; models run once the plan is applied."
            ),
        )

    order = {fqn: i for i, fqn in enumerate(m.fqn for m in description.models)}
    due = {
        fqn: tuple((_from_ms(s), _from_ms(e)) for s, e in intervals)
        for fqn, intervals in sorted(
            state.missing.items(), key=lambda item: (order.get(item[0], len(order)), item[0])
        )
    }
    to_plan: tuple[str, ...] = ()
    if may_plan:
        to_plan = tuple(
            m.fqn
            for m in description.models
            if not (m.is_external or m.is_embedded)
            and (m.fqn not in state.data_hashes or state.data_hashes[m.fqn] != m.data_hash)
        )
    next_ticks = {fqn: utc(tick) for fqn, tick in state.next_ticks.items()}
    next_due = min(next_ticks.values(), default=None)
    return DueModels(
        environment,
        execution_time,
        due=due,
        to_plan=to_plan,
        next_due=next_due,
        next_due_models=tuple(sorted(fqn for fqn, tick in next_ticks.items() if tick == next_due)),
    )


@contextlib.contextmanager
def state_context(resource: SQLMeshProject) -> Iterator[Context]:
    """A SQLMesh context that loads no model files: only its state connection is used,
    from a schedule's or sensor's thread (no forked workers), closed after."""
    from sqlmesh import Context

    path = resource.project_paths[0]  # SQLMesh connects with the first repo's config
    config, gateway = load_config(path, resource.gateway)
    use_sqlmesh_console()
    context = Context(paths=[path], config=config, gateway=gateway, load=False)
    try:
        with no_fork_workers():
            yield context
    finally:
        context.close()  # release the state connection (for DuckDB, the warehouse file)


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
