"""Every metadata key the library writes or reads, declared once.

One rule for namespaces:

* ``sqlmesh/<field>``: what SQLMesh knows or did: a model's settings
  (:class:`SQLMeshModelMetadataSet`), its audits (:class:`SQLMeshAuditMetadataSet`, on check
  specs and check results alike) and what a run did to it (:class:`SQLMeshRunMetadataSet`);
* ``dg_sqlmesh/<field>``: what this library records about Dagster's own record: no-ops,
  carried-over results, plans, partitions, the run's engine events
  (:class:`DgSQLMeshMetadataSet`);
* ``dagster/<field>``: Dagster's own keys (``TableMetadataSet``: table name, column schema,
  column lineage, row count), which the UI knows.

Writers use the keys (``RUN.state``), readers the keys or ``<Set>.extract(metadata)``, as
Dagster's ``TableMetadataSet`` and dagster-dbt's ``DbtMetadataSet`` are used.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import dagster as dg

from dg_sqlmesh._compat.dagster import NamespacedMetadataSet, TableMetadataSet


class SQLMeshModelMetadataSet(NamespacedMetadataSet):
    """A model's settings, on its asset's definition (and ``file`` on a standalone audit)."""

    model: str | None = None
    kind: str | None = None
    cron: str | None = None
    cron_tz: str | None = None
    dialect: str | None = None
    interval_unit: str | None = None
    time_column: str | None = None
    grain: str | None = None
    file: str | None = None
    rendered_query: dg.MarkdownMetadataValue | None = None

    @classmethod
    def namespace(cls) -> str:
        return "sqlmesh"


class SQLMeshAuditMetadataSet(NamespacedMetadataSet):
    """An audit: on its check spec, and on each of its results."""

    audit: str | None = None
    audit_args: dg.JsonMetadataValue | None = None
    blocking: bool | None = None
    audited_node: str | None = None  # the external model or standalone audit checked
    standalone: bool | None = None
    failing_rows: int | None = None
    query: dg.MarkdownMetadataValue | None = None

    @classmethod
    def namespace(cls) -> str:
        return "sqlmesh"


class SQLMeshRunMetadataSet(NamespacedMetadataSet):
    """What a run did to a model: on its materialization, observation or failed step."""

    state: str | None = None
    detail: str | None = None
    intervals: dg.JsonMetadataValue | None = None
    interval_start: str | None = None
    interval_end: str | None = None
    interval: str | None = None  # one partition's interval
    batches: int | None = None
    interval_count: int | None = None
    duration_s: float | None = None
    rows_written: int | None = None
    bytes_processed: int | None = None
    lookback: str | None = None
    unapplied_change: str | None = None
    failed_upstreams: dg.JsonMetadataValue | None = None
    error_class: str | None = None
    error_reason: str | None = None
    retryable: bool | None = None
    attempts: int | None = None

    @classmethod
    def namespace(cls) -> str:
        return "sqlmesh"


class DgSQLMeshMetadataSet(NamespacedMetadataSet):
    """What this library records about Dagster's record of a run."""

    no_op: bool | None = None  # nothing was due: no new data
    up_to_date: str | None = None  # since which run the data is unchanged
    restated: bool | None = None  # a partition held, cleared and evaluated again
    partitions_recorded: int | None = None
    partitions_failed: dg.JsonMetadataValue | None = None
    run_alone: bool | None = None  # a check's audit ran without evaluating its model
    carried_over_from_run: str | None = None
    note: str | None = None
    evaluated_by_plan_of_run: str | None = None
    source: str | None = None  # a runless event's origin (SQLMesh's state)
    leading: dg.JsonMetadataValue | None = None  # a leader began: its process and host
    execution: dg.JsonMetadataValue | None = None  # engine events of the run's leader
    outcomes: dg.JsonMetadataValue | None = None
    live: bool | None = None  # outcomes published as they became final, before the end
    error: str | None = None

    @classmethod
    def namespace(cls) -> str:
        return "dg_sqlmesh"


def keys(metadata_set: type[Any]) -> Any:
    """The set's keys as attributes: ``keys(SQLMeshRunMetadataSet).state == "sqlmesh/state"``."""
    return SimpleNamespace(
        **{name: f"{metadata_set.namespace()}/{name}" for name in metadata_set.model_fields}
    )


MODEL = keys(SQLMeshModelMetadataSet)
AUDIT = keys(SQLMeshAuditMetadataSet)
RUN = keys(SQLMeshRunMetadataSet)
DG = keys(DgSQLMeshMetadataSet)
TABLE = keys(TableMetadataSet)  # Dagster's: table_name, column_schema, column_lineage, row_count
