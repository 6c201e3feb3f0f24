"""The adaptive schedule's requests when due models are partitioned assets.

A Dagster run names one partition range for all its partitioned assets, while SQLMesh's
due models can miss different intervals (a model added last week misses more days than
its upstream). A tick therefore requests one run per distinct range of due partitions,
each selecting the partitioned models missing exactly that range, plus one run of the
unpartitioned due models. The schedule's runs never restate (``execution.intervals``):
a partition SQLMesh already holds inside a range (a gap) stays as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import dagster as dg

from dg_sqlmesh.execution.intervals import RANGE_END_TAG, RANGE_START_TAG

if TYPE_CHECKING:
    from dg_sqlmesh.scheduling.due_models import DueModels
    from dg_sqlmesh.translation.specs import SQLMeshAssetGraph


def partitioned_run_requests(
    graph: SQLMeshAssetGraph,
    found: DueModels,
    selected: Sequence[str],
    *,
    run_key: str,
    tags: Mapping[str, str],
) -> list[dg.RunRequest]:
    """One run request per distinct due partition range, and one for unpartitioned models."""
    unpartitioned: list[str] = []
    by_range: dict[tuple[str, str], list[str]] = {}
    for fqn in selected:
        partitions_def = graph.specs[fqn].partitions_def
        due = found.due.get(fqn, ())
        keys: list[str] = []
        if partitions_def is not None:
            for start, end in due:
                window = dg.TimeWindow(start, end)
                keys.extend(partitions_def.get_partition_keys_in_time_window(window))
        if partitions_def is None or not keys:
            unpartitioned.append(fqn)  # also: due only through a plan (no intervals yet)
            continue
        by_range.setdefault((min(keys), max(keys)), []).append(fqn)
    requests = []
    if unpartitioned:
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                asset_selection=[graph.specs[f].key for f in unpartitioned],
                tags=dict(tags),
            )
        )
    for (first, last), fqns in sorted(by_range.items()):
        requests.append(
            dg.RunRequest(
                run_key=f"{run_key}:{first}..{last}",
                asset_selection=[graph.specs[f].key for f in fqns],
                tags={**tags, RANGE_START_TAG: first, RANGE_END_TAG: last},
            )
        )
    return requests
