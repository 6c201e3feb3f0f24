"""The check results of a model's audits, from the outcomes SQLMesh recorded."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from dg_sqlmesh.execution.outcomes import AuditOutcome
from dg_sqlmesh.metadata import AUDIT, DG
from dg_sqlmesh.translation.checks import AUDITED_NODE


def check_results(
    specs: Sequence[dg.AssetCheckSpec], outcomes: Sequence[AuditOutcome]
) -> list[dg.AssetCheckResult]:
    """Match recorded audit outcomes to check specs, by audit name and arguments."""
    remaining = list(outcomes)
    results = []
    for spec in specs:
        audit_name = spec.metadata.get(AUDIT.audit, spec.name)
        args = spec.metadata.get(AUDIT.audit_args, {})
        node = spec.metadata.get(AUDITED_NODE)
        match = next(
            (
                o
                for o in remaining
                if o.node == node and o.name == audit_name and (not o.args or o.args == args)
            ),
            None,
        )
        if match is None:
            continue
        remaining.remove(match)
        results.append(_result(spec, match))
    return results


def _result(spec: dg.AssetCheckSpec, outcome: AuditOutcome) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {
        AUDIT.audit: outcome.name,
        AUDIT.audit_args: dict(outcome.args),
        AUDIT.blocking: outcome.blocking,
        AUDIT.failing_rows: outcome.failing_rows,
    }
    if outcome.query:
        metadata[AUDIT.query] = dg.MetadataValue.md(f"```sql\n{outcome.query}\n```")
    return dg.AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=outcome.passed,
        severity=(dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN),
        metadata=metadata,
    )


def run_alone(result: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """``result``, marked as an audit run on the table as it is, without its model."""
    return dg.AssetCheckResult(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        metadata={**result.metadata, DG.run_alone: True},
    )
