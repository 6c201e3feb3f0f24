"""The marked SQLMesh workarounds, on real projects."""

from __future__ import annotations

from sqlmesh import Context

from dg_sqlmesh._compat.sqlmesh import cheap_environment_reads
from dg_sqlmesh.project.config import load_config


def _context(project) -> Context:  # noqa: ANN001
    config, gateway = load_config(project, None)
    return Context(paths=[project], config=config, gateway=gateway)


def test_an_unchanged_environment_is_decoded_once_and_a_new_plan_is_seen(generated):
    project = generated(6)
    context = _context(project)
    try:
        inner = context.state_sync.state_sync
        decodes = []
        original = inner.get_environment

        def counting(name):  # noqa: ANN001, ANN202
            decodes.append(name)
            return original(name)

        inner.get_environment = counting
        with cheap_environment_reads(context):
            first = context.state_sync.get_environment("prod")
            again = context.state_sync.get_environment("prod")
            assert again is first and len(decodes) == 1
            assert context.state_sync.get_environment("nope") is None
            # a plan applied meanwhile (another environment's, then prod's) is seen at once
            context.plan("dev", auto_apply=True, no_prompts=True, include_unmodified=True)
            assert context.state_sync.get_environment("dev").name == "dev"
            before = context.state_sync.get_environment("prod").plan_id
            (project / "models").joinpath("extra.sql").write_text(
                "MODEL (name gen_l0.extra, kind FULL); SELECT 1 AS x"
            )
            context.load()
            context.plan("prod", auto_apply=True, no_prompts=True)
            assert context.state_sync.get_environment("prod").plan_id != before
            assert context.run("prod")  # SQLMesh's run works with the reads in place
        assert "get_environment" not in vars(context.state_sync)  # restored
    finally:
        context.close()


def test_a_selection_of_thousands_of_models_is_expanded(tmp_path):
    """SQLMesh's selector evaluates all selections as one ``a | b | ...`` tree, recursively:
    about 500 selected models raised RecursionError (a 1000-model run failed before
    evaluating anything). Ours expands them in chunks: the same set."""
    from pathlib import Path

    from helpers.harness import copy_project

    from dg_sqlmesh.execution.console import ExactSelector

    project = copy_project(Path(__file__).parent / "projects" / "plans", tmp_path / "plans")
    context = _context(project)
    try:
        selector = ExactSelector(context.state_reader, context.models)
        wanted = sorted(fqn for fqn, model in context.models.items() if not model.kind.is_external)
        absent = [f'"warehouse"."shop"."absent_{i}"' for i in range(3000)]
        assert selector.expand_model_selections([*absent, *wanted]) == set(wanted)
    finally:
        context.close()
