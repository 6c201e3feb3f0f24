"""The README's architecture section names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.package import SOURCE, package_modules

README = Path(__file__).parent.parent / "README.md"


def architecture_section() -> str:
    text = README.read_text()
    start = text.index("## Architecture\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_architecture_section_names_every_module():
    section = architecture_section()
    named = set(re.findall(r"`(?:[a-z_]+/)?([a-z_]+\.py)`", section))
    named |= set(re.findall(r"\b([a-z_]+\.py)\b", section))  # in the diagram
    files = {p.name for p in package_modules().values() if p.name != "__init__.py"}
    assert files - named == set(), f"modules missing from the README: {sorted(files - named)}"
    # project*.py names a family; tests/test_*.py are not the package's
    unknown = {n for n in named - files if not n.startswith(("project", "test_"))}
    assert not unknown, f"the README names modules that do not exist: {sorted(unknown)}"
    assert (SOURCE / "components").is_dir() and "`components/`" in section
