"""Every model asset links to its source: ``dagster/code_references`` names the model's
file and the line that defines it (SQL and Python models), and Dagster's
``link_code_references_to_git`` turns it into a repository link."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from helpers.harness import copy_project

from dg_sqlmesh import sqlmesh_definitions_factory

TESTS = Path(__file__).parent
PROJECTS = {"shop": TESTS.parent / "examples" / "shop", "lineage": TESTS / "projects" / "lineage"}


def _references(defs: dg.Definitions) -> dict[str, dg.LocalFileCodeReference]:
    found = {}
    for asset in defs.assets:
        for spec in asset.specs:
            value = spec.metadata.get("dagster/code_references")
            if value is not None:
                (reference,) = value.code_references
                found[spec.key.to_user_string()] = reference
    return found


def test_every_model_links_to_the_line_that_defines_it(tmp_path):
    for name, source in PROJECTS.items():
        project = copy_project(source, tmp_path / name)
        defs = sqlmesh_definitions_factory(project_dir=str(project))
        references = _references(defs)
        models = [s for a in defs.assets if a.is_executable for s in a.specs]
        assert {s.key.to_user_string() for s in models} <= set(references)
        for key, reference in references.items():
            path = Path(reference.file_path)
            assert path.is_file() and path.is_relative_to(project), (key, path)
            if path.suffix not in (".sql", ".py"):  # a seed's or an external model's file
                continue
            line = path.read_text().splitlines()[reference.line_number - 1]
            if path.suffix == ".py":
                assert line.startswith("def execute("), (key, line)
            else:
                assert line.lstrip().upper().startswith("MODEL"), (key, line)


def test_the_references_link_to_git(tmp_path):
    project = copy_project(PROJECTS["lineage"], tmp_path / "lineage")
    defs = sqlmesh_definitions_factory(project_dir=str(project))
    linked = dg.link_code_references_to_git(
        assets_defs=list(defs.assets),
        git_url="https://github.com/acme/warehouse",
        git_branch="main",
        file_path_mapping=dg.AnchorBasedFilePathMapping(
            local_file_anchor=project, file_anchor_path_in_repository="sqlmesh"
        ),
    )
    urls = {
        spec.key.to_user_string(): spec.metadata["dagster/code_references"].code_references[0].url
        for asset in linked
        for spec in asset.specs
        if "dagster/code_references" in spec.metadata
    }
    scores = [url for key, url in urls.items() if key.endswith("customer_scores")]
    assert scores == [
        "https://github.com/acme/warehouse/tree/main/sqlmesh/models/customer_scores.py#L15"
    ]
