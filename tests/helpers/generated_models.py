"""Asset keys, step keys and family trees of the models of generated projects
(``projects.generate``)."""

from __future__ import annotations


def key(name: str) -> str:
    """Asset key string of a generated model (catalog 'db' from db.duckdb)."""
    return "db/" + name.replace(".", "/")


def step(name: str) -> str:
    return "db__" + name.replace(".", "__")


def descendants(models: list[dict], name: str) -> set[str]:
    found: set[str] = set()
    frontier = {name}
    while frontier:
        children = {m["name"] for m in models if set(m["parents"]) & frontier}
        frontier = children - found
        found |= children
    return found


def pick_with_children(models: list[dict]) -> tuple[str, set[str], set[str]]:
    """A layer-1 model with descendants, its descendants, and the unrelated models."""
    for m in models:
        if m["layer"] == 1:
            below = descendants(models, m["name"])
            if below:
                ancestors = set(m["parents"])
                others = {o["name"] for o in models} - below - {m["name"]} - ancestors
                return m["name"], below, others
    raise AssertionError("no layer-1 model with children")
