"""Materialize the shop example through Dagster and print what happened to each model.

Runs ``sqlmesh_job`` against a Dagster instance in ``.dagster_home`` at the
repository root (so ``dagster dev`` shows the same runs afterwards). The first run
creates the SQLMesh ``prod`` environment: the demo opts in to applying a plan for
prod explicitly (``apply_plan=True, allow_prod_plan=True``); a production
deployment keeps that off.

    python examples/shop/materialize.py [--executor multiprocess]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOME = HERE.parent.parent / ".dagster_home"
INSTANCE_CONFIG = """\
# Written by examples/shop/materialize.py: Dagster queues a second run of a SQLMesh
# environment (its pool, sqlmesh_<environment>) until the first one ends.
concurrency:
  pools:
    granularity: run
    default_limit: 1
"""


# Each step its own process, started from a forkserver that has imported Dagster, SQLMesh
# and dg-sqlmesh already: a step that only reports its model then costs little more than
# a trivial asset step (Dagster's default start method, spawn, imports all three per step).
MULTIPROCESS_RUN_CONFIG = {
    "execution": {
        "config": {
            "multiprocess": {
                "start_method": {
                    "forkserver": {"preload_modules": ["dagster", "sqlmesh", "dg_sqlmesh"]}
                }
            }
        }
    }
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=["in_process", "multiprocess"], default="in_process")
    args = parser.parse_args()

    HOME.mkdir(exist_ok=True)
    config = HOME / "dagster.yaml"
    if not config.exists():  # one run of a SQLMesh environment at a time (see docs/guides/deployment.md)
        config.write_text(INSTANCE_CONFIG)
    os.environ.setdefault("DAGSTER_HOME", str(HOME))
    os.environ["SHOP_SQLMESH_APPLY_PLAN"] = "1"

    import warnings

    import dagster as dg

    # SQLMesh's seed loader passes arguments pandas deprecates; not ours to act on.
    warnings.filterwarnings("ignore", module="sqlmesh")
    sys.path.insert(0, str(HERE))
    from definitions import defs  # noqa: E402

    instance = dg.DagsterInstance.get()
    if args.executor == "in_process":
        result = defs.resolve_job_def("sqlmesh_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
    else:
        result = dg.execute_job(
            dg.reconstructable(_job),
            instance=instance,
            run_config=MULTIPROCESS_RUN_CONFIG,
            raise_on_error=False,
        )
    print_outcomes(instance, result.run_id, defs)
    return 0 if result.success else 1


def _job():
    sys.path.insert(0, str(HERE))
    from definitions import defs

    return defs.resolve_job_def("sqlmesh_job")


def print_outcomes(instance, run_id: str, defs) -> None:
    import dagster as dg

    materialized, partitions, checks, failures, succeeded = {}, {}, {}, {}, set()
    for record in instance.get_records_for_run(run_id).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = data.materialization
            if mat.partition is not None:  # a partitioned model: one event per partition
                partitions.setdefault(mat.asset_key, []).append(mat.partition)
            else:
                materialized[mat.asset_key] = {k: v.value for k, v in mat.metadata.items()}
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            checks.setdefault(data.asset_key, []).append(data)
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            succeeded.add(event.step_key)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            user = getattr(data, "user_failure_data", None)
            failures[event.step_key] = (user.description if user else None) or data.error.message

    print(f"\nDagster run {run_id}:")
    graph = defs.resolve_asset_graph()
    for key in [k for k in graph.toposorted_asset_keys if k in graph.materializable_asset_keys]:
        name = key.to_user_string()
        step = "__".join(key.path)
        audits = checks.get(key, [])
        failed = [c.check_name for c in audits if not c.passed]
        audit_text = f", audits {len(audits) - len(failed)}/{len(audits)} passed" if audits else ""
        if failed:
            audit_text += f" (failed: {', '.join(failed)})"
        if key in partitions:
            keys = sorted(set(partitions[key]))
            print(f"  {name:45} materialized {len(keys)} partition(s) {_span(keys)}{audit_text}")
        elif key in materialized:
            meta = materialized[key]
            state = meta.get("sqlmesh/state")
            if state == "up_to_date":
                state = "up to date (no interval due, nothing executed)"
            span = ""
            if meta.get("sqlmesh/interval_start"):
                span = f" {_day(meta['sqlmesh/interval_start'])}..{_last_day(meta)}"
            print(f"  {name:45} {state}{span}{audit_text}")
        elif step in succeeded:  # a partitioned model with nothing due records no partition
            print(f"  {name:45} up to date (no interval due, nothing executed){audit_text}")
        else:
            reason = failures.get(step, "not run (upstream failed)")
            first, *rest = reason.strip().splitlines() or [""]
            print(f"  {name:45} NOT materialized: {first}")
            for line in rest[:20]:  # the whole reason, indented under the model
                print(f"  {'':45}   {line}")


def _day(iso: str) -> str:
    return iso[:10]


def _last_day(meta: dict) -> str:
    """The last day the evaluated intervals cover (their end is exclusive)."""
    from datetime import datetime, timedelta

    end = datetime.fromisoformat(meta["sqlmesh/interval_end"]) - timedelta(microseconds=1)
    return end.date().isoformat()


def _span(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


if __name__ == "__main__":
    raise SystemExit(main())
