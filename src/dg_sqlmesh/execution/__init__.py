"""Executing a Dagster run's SQLMesh models once, and reporting each model from it.

Internal: the public API is exported from ``dg_sqlmesh``. Read in the order of a run:
``definitions.step`` and ``definitions.leader`` (what each model's step does) ->
``coordinator`` (which step leads, the published outcomes) -> ``background`` (SQLMesh
beside the steps) -> ``guard`` (one execution of an environment at a time) ->
``runner`` (the leader's SQLMesh execution, with retries) -> ``environment`` (the
environment's state and plans) -> ``row_counts`` (the tables' rows after the run) and
``checks_alone`` (audits of checks executed without their asset) -> ``console`` and
``events`` (what SQLMesh said) -> ``live`` (outcomes final before the end) ->
``settle`` and ``attempts`` (the rules: one state per model) -> ``outcomes`` (the
records) -> ``report`` (the records as Dagster events).
"""
