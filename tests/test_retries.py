"""Transient retries: what an attempt wrote survives a retry that cannot start."""

from __future__ import annotations

import threading
import time

from helpers.generated_models import descendants, key, step
from helpers.harness import executions, materialized, query, step_failures
from helpers.reliability import run_in_process
from projects.generate import project_models

from dg_sqlmesh.metadata import RUN

N = 12
BROKEN = "MODEL (name gen_l0.broken, kind FULL);\nSELECT FROM WHERE (\n"


def _on_first_retry(instance, action) -> threading.Thread:
    """Run ``action`` once the (only) run logs that it retries, during its backoff."""

    def wait() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = instance.get_runs(limit=1)
            logs = instance.all_logs(runs[0].run_id) if runs else []
            if any((r.user_message or "").startswith("Transient failure of") for r in logs):
                action()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_retry_that_cannot_start_keeps_what_the_first_attempt_wrote(generated, instance):
    """Attempt 1 writes every model but one (a transient failure) and its downstream;
    the project cannot be loaded for attempt 2. The written models stay materialized."""
    models = project_models(N)
    flaky = next(m["name"] for m in models if m["layer"] == 1 and descendants(models, m["name"]))
    stopped = {flaky} | descendants(models, flaky)
    project = generated(N, failing={flaky: "transient_error"})
    db = project / "db.duckdb"
    before = executions(db)

    # A deploy during the backoff leaves a model SQLMesh cannot parse.
    broken = project / "models" / "gen_l0" / "broken.sql"
    thread = _on_first_retry(instance, lambda: broken.write_text(BROKEN))
    resource = {
        "project_dir": str(project),
        "max_transient_retries": 1,
        "retry_backoff_seconds": 3.0,
    }
    result = run_in_process(resource, instance)
    thread.join(timeout=10)
    assert broken.exists(), "the run never retried"

    assert not result.success
    assert executions(db) - before == 1  # the retry never reached SQLMesh's run
    shown = materialized(instance, result.run_id)
    written = {m["name"] for m in models} - stopped
    assert set(shown) == {key(n) for n in written}
    for name in written:
        assert shown[key(name)][RUN.state] == "materialized"
        if next(m for m in models if m["name"] == name)["kind"] != "VIEW":
            assert query(db, f"SELECT COUNT(*) FROM {name}")[0][0] > 0, name
    # The retried model fails with the retry's error (its downstream steps do not run)
    failure = step_failures(instance, result.run_id)[step(flaky)]
    assert "SQLMesh could not start attempt 2" in failure, failure
    assert "could not load the project" in failure
    assert "connection reset by peer" in failure  # the first attempt's error
