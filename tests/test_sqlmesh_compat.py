"""The marked SQLMesh workarounds, on real projects."""

from __future__ import annotations

from sqlmesh import Context

from dg_sqlmesh.project_config import load_config
from dg_sqlmesh.sqlmesh_compat import cheap_environment_reads


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
