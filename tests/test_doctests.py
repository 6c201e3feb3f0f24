"""The examples in the package's docstrings run, and show what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest
from helpers.package import package_modules

from dg_sqlmesh.project.description import ModelInfo

# The model the translator's examples talk about.
EXAMPLE_MODEL = ModelInfo(
    fqn='"db"."shop"."orders"',
    name="shop.orders",
    catalog="db",
    schema="shop",
    table="orders",
    kind="FULL",
    cron="@daily",
    engine="duckdb",
)
MODULES = sorted(package_modules())


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, extraglobs={"model": EXAMPLE_MODEL}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found():
    """The finder reads the modules at all: the translator's hooks hold examples."""
    import dg_sqlmesh.translation.translator

    tests = doctest.DocTestFinder().find(
        dg_sqlmesh.translation.translator, "dg_sqlmesh.translation.translator"
    )
    assert sum(len(t.examples) for t in tests) > 20
