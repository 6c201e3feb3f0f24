"""The few places where we need more of Dagster than its public API offers.

Checked against Dagster 1.11.0, 1.12.0 (the floor pyproject.toml admits) and 1.13.27.
Everything here degrades to a safe answer when Dagster's internals move, or fails
closed (raises) when there is none.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import timedelta
from typing import Any

import dagster as dg

# Dagster's metadata set base class and its table set, which ``dagster`` does not export
# (checked against Dagster 1.12.0 and 1.13.27); dg_sqlmesh.metadata declares its keys with
# them, as dagster-dbt's metadata_set.py does.
from dagster._core.definitions.metadata.metadata_set import (  # noqa: F401 - re-exported
    NamespacedMetadataSet,
    TableMetadataSet,
)

from dg_sqlmesh.errors import SQLMeshDefinitionError


def run_step_keys(context: dg.AssetExecutionContext) -> set[str] | None:
    """The step keys the current run executes, across all its processes.

    Read from the run's execution plan snapshot stored in the instance, so every
    step process (multiprocess executor) computes the same set. Covers asset
    selections, op selections and re-execution from failure alike. None when the
    plan cannot be read.
    """
    run = context.run
    snapshot_id = getattr(run, "execution_plan_snapshot_id", None)
    if not snapshot_id:
        return None
    try:
        snapshot = context.instance.get_execution_plan_snapshot(snapshot_id)
    except Exception:  # noqa: BLE001 - internal API: fall back to the caller's default
        return None
    keys = getattr(snapshot, "step_keys_to_execute", None)
    if keys:
        return set(keys)
    return {step.key for step in getattr(snapshot, "steps", [])} or None


def selected_asset_keys(context: dg.AssetExecutionContext) -> AbstractSet[dg.AssetKey] | None:
    """The asset keys the run's job (as subset for this run) materializes.

    Its checks can be selected without an asset, which leaves that asset out. None when
    Dagster's asset layer does not say.
    """
    try:
        keys = context.job_def.asset_layer.selected_asset_keys
    except Exception:  # noqa: BLE001 - internal API: fall back to the caller's default
        return None
    return keys if isinstance(keys, AbstractSet) else None


def latest_data_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The data version of the asset's latest materialization, if any."""
    try:
        event = instance.get_latest_materialization_event(key)
    except Exception:  # noqa: BLE001 - a storage hiccup: no version is the safe answer
        return None
    materialization = getattr(event, "asset_materialization", None)
    tags = getattr(materialization, "tags", None) or {}
    return tags.get("dagster/data_version")


def latest_materialization_run(
    instance: dg.DagsterInstance, key: dg.AssetKey, no_op_key: str
) -> str | None:
    """The run that recorded the asset's latest materialization which wrote data (not
    marked true under ``no_op_key``), if any among its last 20."""
    try:
        records = instance.fetch_materializations(key, limit=20).records
    except Exception:  # noqa: BLE001 - internal API: say less rather than fail a step
        return None
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        no_op = metadata.get(no_op_key)
        if not getattr(no_op, "value", no_op):
            return record.run_id or None
    return None


def latest_data_version_record(
    instance: dg.DagsterInstance, key: dg.AssetKey
) -> tuple[str | None, int | None]:
    """The data version and storage id of the asset's latest materialization (any
    partition), or ``(None, None)``."""
    try:
        record = instance.get_latest_data_version_record(key)
    except Exception:  # noqa: BLE001 - internal API: no provenance rather than a failed step
        return None, None
    if record is None:
        return None, None
    tags = getattr(record.asset_materialization, "tags", None) or {}
    return tags.get("dagster/data_version"), record.storage_id


def provenance_tags(
    data_version: str,
    code_version: str | None,
    inputs: Mapping[dg.AssetKey, tuple[str | None, int | None]],
) -> dict[str, str]:
    """The tags Dagster writes on a materialization it records from a step's output (data
    version, code version, each input's data version and event pointer), for the
    materializations we record ourselves: per partition, and for models a plan evaluated.

    Without them Dagster has no provenance for the event and judges staleness by
    timestamps, so a run where an upstream did nothing would make the asset look stale.
    The tag names are Dagster's (``dagster._core.definitions.data_version``, checked
    against Dagster 1.12.0 and 1.13.27).
    """
    from dagster._core.definitions.data_version import (
        CODE_VERSION_TAG,
        DATA_VERSION_IS_USER_PROVIDED_TAG,
        DATA_VERSION_TAG,
        DEFAULT_DATA_VERSION,
        NULL_EVENT_POINTER,
        get_input_data_version_tag,
        get_input_event_pointer_tag,
    )

    tags = {DATA_VERSION_TAG: data_version, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}
    if code_version is not None:
        tags[CODE_VERSION_TAG] = code_version
        for key, (version, storage_id) in inputs.items():
            tags[get_input_data_version_tag(key)] = version or DEFAULT_DATA_VERSION.value
            tags[get_input_event_pointer_tag(key)] = (
                str(storage_id) if storage_id else NULL_EVENT_POINTER
            )
    return tags


def engine_event_data(metadata: Mapping[str, Any]) -> Any:
    """An ``EngineEventData`` carrying ``metadata``, for ``instance.report_engine_event``.

    ``DagsterInstance.report_engine_event`` is public, the type of its payload is not
    exported (checked against Dagster 1.11 to 1.13).
    """
    from dagster._core.events import EngineEventData

    return EngineEventData(metadata=dict(metadata))


def executor_modes() -> tuple[Any, Any, Callable[..., Any], Callable[..., Any], Any]:
    """The pieces of Dagster's default ``multi_or_in_process_executor``: its two config
    fields, its two executor constructors and its requirements function.

    Reused so that our executor takes exactly the run config Dagster's default takes
    (checked against Dagster 1.11 to 1.13).
    """
    from dagster._core.definitions import executor_definition as ed

    return (
        ed.MULTI_PROC_CONFIG,
        ed.IN_PROC_CONFIG,
        ed._core_multiprocess_executor_creation,
        ed._core_in_process_executor_creation,
        ed._get_default_executor_requirements,
    )


def last_check_evaluations(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, tuple[str, Any]]:
    """Each check's latest completed evaluation: ``(run_id, AssetCheckEvaluation)``.

    The event log storage's check history is not on ``DagsterInstance`` (checked against
    Dagster 1.11 to 1.13). A check whose history cannot be read is left out.
    """
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    found = {}
    for key in check_keys:
        try:
            history = instance.event_log_storage.get_asset_check_execution_history(
                key, limit=1, status={Status.SUCCEEDED, Status.FAILED}
            )
        except Exception:  # noqa: BLE001 - internal API: report nothing rather than guess
            continue
        event = history[0].event if history else None
        evaluation = getattr(getattr(event, "dagster_event", None), "event_specific_data", None)
        if evaluation is not None and hasattr(evaluation, "passed"):
            found[key] = (history[0].run_id, evaluation)
    return found


def checks_without_result(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey]
) -> set[dg.AssetCheckKey]:
    """The checks that have no completed evaluation in the instance (one batched read for
    the checks whose latest execution completed, one read each for the others)."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    try:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    except Exception:  # noqa: BLE001 - internal API: assume results exist, run nothing more
        return set()
    done = {Status.SUCCEEDED, Status.FAILED}
    unsure = [k for k in check_keys if k not in latest or latest[k].status not in done]
    return {k for k in unsure if k not in last_check_evaluations(instance, [k])}


def smallest_cron_interval(cron: str, timezone: str) -> timedelta | None:
    """The smallest gap between two ticks, measured as Dagster measures it when it
    validates a cron freshness policy, so a policy never exceeds it: in the cron's
    timezone (DST included, as Dagster 1.12+ checks) and in UTC (as Dagster 1.11 checks).

    ``dagster._utils.schedules.get_smallest_cron_interval`` is private (checked against
    Dagster 1.11.0 and 1.13.27); None without it (the caller measures with croniter).
    """
    try:
        from dagster._utils.schedules import get_smallest_cron_interval
    except ImportError:  # pragma: no cover - moved in a later Dagster
        return None
    return min(get_smallest_cron_interval(cron, timezone), get_smallest_cron_interval(cron))


def scaffold_component(request: Any, attributes: Mapping[str, Any]) -> None:
    """Dagster's ``scaffold_component``: writes a component's defs.yaml.

    Exported as ``dagster.scaffold_component`` (checked against Dagster 1.11.0 and
    1.13.27); the module it lives in is the fallback should the export go.
    """
    scaffold = getattr(dg, "scaffold_component", None)
    if scaffold is None:  # pragma: no cover - not exported by a later Dagster
        from dagster.components.component_scaffolding import scaffold_component as scaffold
    scaffold(request, dict(attributes))


def asset_attribute_changes(context: dg.ResolutionContext, attributes: Any) -> dict[str, Any]:
    """The ``AssetSpec`` changes a component's ``AssetAttributesModel`` asks for, resolved.

    Dagster's own components resolve ``translation:`` with
    ``resolve_asset_spec_update_kwargs_to_mapping``, which ``dagster`` does not export
    (checked against Dagster 1.11.0 and 1.13.27). Fails closed: without it, an error
    saying ``translation:`` cannot be read, never a spec left untranslated.
    """
    try:
        from dagster.components.resolved.core_models import (
            resolve_asset_spec_update_kwargs_to_mapping,
        )
    except ImportError as exc:  # pragma: no cover - moved in a later Dagster
        raise SQLMeshDefinitionError(
            f"This Dagster release ({dg.__version__}) does not resolve asset attributes the way "
            "dg-sqlmesh reads them, so SQLMeshProjectComponent's translation: cannot be "
            "applied. Install a Dagster release that pyproject.toml admits, or override "
            "get_translator() instead of using translation:."
        ) from exc
    return dict(resolve_asset_spec_update_kwargs_to_mapping(context, attributes))


def runs_every_step_here(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run executes all its steps in this process (Dagster's in-process
    executor, whose "Executing steps in process (pid: ...)" engine event names this
    process). False when unsure: the caller then keeps its step running to the end.

    The event's shape (metadata ``pid``) is ``EngineEventData.in_process``'s, checked
    against Dagster 1.11 to 1.13.
    """
    try:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20
        ).records
    except Exception:  # noqa: BLE001 - internal shape: unsure means no
        return False
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if entry.step_key is not None or event is None:
            continue
        metadata = getattr(event.engine_event_data, "metadata", None) or {}
        pid = metadata.get("pid")
        if "step_keys" in metadata and pid is not None and str(pid.value) == str(os.getpid()):
            return True
    return False


def local_defs_state_available(project_root: Any) -> bool:
    """Whether a component loaded from ``project_root`` can keep local state: Dagster finds
    it under the defs module of a ``dg`` project, and raises when ``project_root`` is not one
    (a component built in plain Python). Checked against Dagster 1.12 to 1.13."""
    from dagster._core.errors import DagsterError
    from dagster.components.utils.project_paths import get_defs_module_path_for_project

    try:
        get_defs_module_path_for_project(project_root)
    except (DagsterError, ImportError, OSError):
        return False
    return True


def executor_carries_pools(executor: dg.ExecutorDefinition | None) -> bool:
    """Whether runs on ``executor`` can carry ops in a pool. dagster-dask's executor
    cannot (checked against dagster-dask 0.29.27 with dask 2024.8 to 2026.8): it hands
    Dask the run, whose ops' pools make it carry a ``RunOpConcurrency`` record; Dask walks
    every tuple it is given, the run included, and the record refuses iteration, so every
    run fails before its first step ("Iteration is not allowed on @record
    RunOpConcurrency"). A plain Dagster job with a pool fails the same way."""
    return executor is None or executor.name != "dask"


def code_references(path: str, line: int | None, label: str) -> dg.CodeReferencesMetadataValue:
    """``dagster/code_references`` naming one file and line. Dagster marks these classes
    beta and warns at every construction: a warning per model, printed and slow at
    thousands of models, so it is silenced here, once. Checked against Dagster 1.12 to 1.13."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        reference = dg.LocalFileCodeReference(file_path=path, line_number=line, label=label)
        return dg.CodeReferencesMetadataValue(code_references=[reference])


_CLAIM_POOL = "dg_sqlmesh/leader"  # a pool no op is in: Dagster never assigns it a slot
_CLAIM_STEP = "dg_sqlmesh:leader"  # no step key holds a ':'


def first_claim(instance: dg.DagsterInstance, run_id: str, claimant: int) -> int | None:
    """The first claim ever made for ``run_id``: ``claimant`` (a positive number) if this
    call made it, else the number of whoever did. None when the instance's storage cannot
    serialise a claim (no SQL event log storage, as Dagster+'s hosted one).

    The claim is a row of the queue of Dagster's concurrency pools (``pending_steps``),
    whose unique index on pool, run and step lets one insert in: SQLite and PostgreSQL
    serialise concurrent inserts on it, Dagster's ``add_pending_step`` ignores the losers'
    conflict, and every caller reads back the one row, whose priority names its claimant.
    The row is in a pool that no op uses, so Dagster never assigns it a slot; it goes with
    the run's events, or earlier if run monitoring frees finished runs' slots
    (``free_slots_after_run_end_seconds``). Checked against Dagster 1.11 to 1.13.
    """
    if claimant < 1:
        raise ValueError("A claimant is a positive number")
    storage = instance.event_log_storage
    inner = getattr(storage, "_storage", None)  # a legacy combined storage wraps the real one
    storage = getattr(inner, "event_log_storage", storage)
    if not callable(getattr(storage, "add_pending_step", None)) or not _has_queue(storage):
        return None
    found = storage.check_concurrency_claim(_CLAIM_POOL, run_id, _CLAIM_STEP).priority
    if found is None:
        storage.add_pending_step(_CLAIM_POOL, run_id, _CLAIM_STEP, priority=claimant)
        found = storage.check_concurrency_claim(_CLAIM_POOL, run_id, _CLAIM_STEP).priority
    if found is None:
        raise RuntimeError(f"Dagster's storage lost the leader claim of run {run_id}")
    return found


def _has_queue(storage: Any) -> bool:
    try:
        return bool(storage.has_table("pending_steps"))
    except Exception:  # noqa: BLE001 - internal shape: no table means no claim
        return False
