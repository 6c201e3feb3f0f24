"""A run where nothing was due keeps the model's checks current: its last real audit
results, carried over and marked with the run they come from."""

from __future__ import annotations

import dagster as dg

from dg_sqlmesh._compat.dagster import last_check_evaluations
from dg_sqlmesh.metadata import DG


def carried_over(
    instance: dg.DagsterInstance, specs: list[dg.AssetCheckSpec]
) -> list[dg.AssetCheckResult]:
    """The model's last real audit results, for a run where nothing was due.

    SQLMesh audits a model when it evaluates it; nothing was evaluated, so the data those
    results describe is unchanged. Each is marked with the run it comes from. A failed
    blocking result is not carried (it would fail this step for an audit not run here),
    and a check that never ran reports nothing.
    """
    if not specs:
        return []
    last = last_check_evaluations(instance, [spec.key for spec in specs])
    results = []
    for spec in specs:
        found = last.get(spec.key)
        if found is None:
            continue
        run_id, evaluation = found
        if not evaluation.passed and spec.blocking:
            continue
        # A result carried over already names the run whose audit produced it.
        origin = evaluation.metadata.get(DG.carried_over_from_run)
        run_id = getattr(origin, "value", origin) or run_id
        results.append(
            dg.AssetCheckResult(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=evaluation.passed,
                severity=evaluation.severity,
                metadata={
                    **{
                        k: v
                        for k, v in evaluation.metadata.items()
                        if k != DG.carried_over_from_run
                    },
                    DG.carried_over_from_run: run_id,
                    DG.note: (
                        "nothing was due: SQLMesh evaluated and audited nothing in this run, "
                        "so the result of the audit in that run stands"
                    ),
                },
            )
        )
    return results
