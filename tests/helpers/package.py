"""The modules of the dg_sqlmesh package, read from its source tree."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "dg_sqlmesh"
SOURCE = Path(__file__).parent.parent.parent / "src" / PACKAGE


def package_modules(source: Path = SOURCE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` too)."""
    modules = {}
    for path in sorted(source.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(source).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules
