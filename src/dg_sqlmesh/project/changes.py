"""What the project on disk changes against a SQLMesh environment, per model, in SQLMesh's
own categories (what ``sqlmesh plan`` shows): the ``sqlmesh/change`` tag of each asset.

Reading them needs SQLMesh's state (where the environment is recorded), so unlike the
rest of ``project/`` it connects to the state store: only when a user asks for the tags
(``compare_with``).
"""

from __future__ import annotations

from typing import Any

from dg_sqlmesh.project.context import create_context
from dg_sqlmesh.project.dirs import ProjectDirs, resolve_project_dirs

UNCHANGED = "unchanged"


def change_category(category: Any) -> str:
    """SQLMesh's ``SnapshotChangeCategory`` as a tag value: ``BREAKING`` -> ``breaking``,
    ``INDIRECT_NON_BREAKING`` -> ``indirect-non-breaking``."""
    return str(category.name).lower().replace("_", "-")


def plan_changes(plan: Any) -> dict[str, str]:
    """Each model a SQLMesh plan changes (FQN -> ``new``, ``removed``, ``metadata`` or a
    change category), as the plan categorised it."""
    diff = plan.context_diff
    changes: dict[str, str] = {}
    for snapshot_id in diff.added:
        changes[snapshot_id.name] = "new"
    for snapshot_id in diff.removed_snapshots:
        changes[snapshot_id.name] = "removed"
    for snapshot in plan.new_snapshots:
        if snapshot.name not in changes and snapshot.change_category is not None:
            changes[snapshot.name] = change_category(snapshot.change_category)
    for snapshot_id in plan.metadata_updated:
        changes.setdefault(snapshot_id.name, "metadata")
    return dict(sorted(changes.items()))


def model_changes(
    project_dir: ProjectDirs, gateway: str | None, compare_with: str
) -> dict[str, str]:
    """What the project changes against environment ``compare_with``: SQLMesh's plan for
    that environment, computed and not applied (every model of a missing environment is
    ``new``)."""
    # Imported here: loading definitions that ask for no tags never imports SQLMesh.
    from dg_sqlmesh._compat.sqlmesh_run import quiet_console

    repos = resolve_project_dirs(project_dir)
    context: Any = create_context(repos, gateway, console=quiet_console())
    try:
        plan = context.plan_builder(compare_with, skip_tests=True).build()
        return plan_changes(plan)
    finally:
        context.close()
