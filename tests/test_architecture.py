"""The documentation's architecture page names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.package import SOURCE, package_modules

ARCHITECTURE = Path(__file__).parent.parent / "docs" / "architecture.md"


def architecture_section() -> str:
    return ARCHITECTURE.read_text()


def test_the_architecture_section_names_every_module():
    """A map of the folders: each folder, and each module by its name in its folder's entry."""
    section = architecture_section()
    modules = {p for p in package_modules().values() if p.name != "__init__.py"}
    folders = {p.parent.name for p in modules if p.parent != SOURCE}
    missing_folders = sorted(f for f in folders if f"{f}/" not in section)
    assert not missing_folders, f"folders missing from docs/architecture.md: {missing_folders}"
    words = set(re.findall(r"[a-z_]+", section))
    missing = sorted(str(p.relative_to(SOURCE)) for p in modules if p.stem not in words)
    assert not missing, f"modules missing from docs/architecture.md: {missing}"
    assert (SOURCE / "components").is_dir() and "components/" in section
