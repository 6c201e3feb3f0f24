"""One step's side of many elections, in a process of its own: for each run, at the same
moment as the other processes, write the step's start event (as Dagster does before the
step's body) and elect the run's leader. Prints the leaders it computed, as JSON.

    python -m helpers.elect INSTANCE_REF STEP STEPS START GAP RUN_ID...
"""

from __future__ import annotations

import json
import sys
import time

import dagster as dg

from dg_sqlmesh.execution.coordinator import RunCoordinator
from helpers.other_process import open_instance


def start_step(instance: dg.DagsterInstance, run: dg.DagsterRun, step: str) -> None:
    instance.report_dagster_event(
        dg.DagsterEvent(event_type_value="STEP_START", job_name=run.job_name, step_key=step),
        run.run_id,
    )


def main(ref: str, step: str, steps: str, start: str, gap: str, *run_ids: str) -> None:
    instance = open_instance(ref)
    leaders = []
    for i, run_id in enumerate(run_ids):
        time.sleep(max(0.0, float(start) + i * float(gap) - time.time()))
        run = instance.get_run_by_id(run_id)
        start_step(instance, run, step)
        leaders.append(RunCoordinator(instance, run, steps.split(",")).leader(step))
    print(json.dumps(leaders))


if __name__ == "__main__":
    main(*sys.argv[1:])
