"""Column-level lineage of a SQL model, read from its rendered (optimized) query.

SQLMesh renders every SQL model's query qualified and with stars expanded: each
column reference names the table, CTE or subquery it reads. One walk of the query's
scopes resolves every output column to the columns of the upstream models it reads,
following CTEs, derived tables and ``UNION`` branches, without the per-column cost
of ``sqlglot.lineage``.

A query the walk cannot resolve completely (an unqualified column, a star left
unexpanded, a subquery inside a projection, a table function reading columns, a
table that is not one of the model's dependencies) gets no lineage at all rather
than a partial or wrong one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.optimizer.scope import Scope

logger = logging.getLogger(__name__)

#: An upstream column: the upstream model's fully qualified name and the column's name.
ColumnRef = tuple[str, str]
#: Output column -> the upstream columns it reads, sorted.
ColumnLineage = dict[str, tuple[ColumnRef, ...]]


class _Unresolved(Exception):
    """The query has a reference the walk does not resolve with certainty."""


def query_column_lineage(
    query: exp.Expression, depends_on: Collection[str], *, model: str = ""
) -> ColumnLineage | None:
    """For each output column of ``query``, the upstream columns it reads.

    Args:
        query: the model's rendered query, as SQLMesh optimizes it (qualified columns,
            fully qualified tables). It is not modified.
        depends_on: the fully qualified names of the model's upstream models; a table
            the query reads must be one of them.
        model: the model's name, for the debug log.

    Returns:
        A mapping from every output column to its upstream columns (empty for a column
        computed from literals), or None when the query cannot be resolved.

    Example:
        >>> import sqlglot
        >>> query = sqlglot.parse_one('SELECT "t"."a" AS "b" FROM "db"."s"."t" AS "t"')
        >>> query_column_lineage(query, {'"db"."s"."t"'})
        {'b': (('"db"."s"."t"', 'a'),)}
    """
    from sqlglot.optimizer.scope import build_scope

    try:
        root = build_scope(query)
        if root is None:
            raise _Unresolved("not a query")
        walker = _Walker(frozenset(depends_on))
        names = _named_selects(root)
        if len(set(names)) != len(names):
            raise _Unresolved("two output columns share a name")
        return {
            name: tuple(sorted(walker.deps_at(root, index))) for index, name in enumerate(names)
        }
    except _Unresolved as exc:
        logger.debug("No column lineage for model %s: %s", model, exc)
    except Exception as exc:  # noqa: BLE001 - metadata only, never fails a load
        logger.debug("No column lineage for model %s: %s: %s", model, type(exc).__name__, exc)
    return None


def _is_set_operation(scope: Scope) -> bool:
    """A ``UNION``/``INTERSECT``/``EXCEPT``: its columns are its branches' by position."""
    from sqlglot import exp

    return isinstance(scope.expression, getattr(exp, "SetOperation", exp.Union))


def _named_selects(scope: Scope) -> list[str]:
    return list(scope.expression.named_selects)


class _Walker:
    def __init__(self, depends_on: frozenset[str]) -> None:
        self.depends_on = depends_on
        self.memo: dict[tuple[int, int], frozenset[ColumnRef]] = {}
        self.scopes: list[Scope] = []  # keeps memoised scopes alive, so ids stay unique

    def deps_at(self, scope: Scope, index: int) -> frozenset[ColumnRef]:
        """The upstream columns of the ``index``-th output column of ``scope``."""
        key = (id(scope), index)
        if key not in self.memo:
            self.scopes.append(scope)
            self.memo[key] = self._deps_at(scope, index)
        return self.memo[key]

    def _deps_at(self, scope: Scope, index: int) -> frozenset[ColumnRef]:
        from sqlglot import exp

        if _is_set_operation(scope):
            deps: frozenset[ColumnRef] = frozenset()
            for branch in scope.union_scopes:
                deps |= self.deps_at(branch, index)
            return deps
        if not isinstance(scope.expression, exp.Select):
            # VALUES, UNNEST, LATERAL...: constant rows are fine, anything reading columns is not
            if scope.expression.find(exp.Column):
                raise _Unresolved(f"a {type(scope.expression).__name__} reads columns")
            return frozenset()
        selects = scope.expression.selects
        if index >= len(selects):
            raise _Unresolved("a set operation's branches have different widths")
        return self.expression_deps(scope, selects[index])

    def deps_of(self, scope: Scope, name: str) -> frozenset[ColumnRef]:
        """The upstream columns of the output column ``name`` of ``scope``."""
        from sqlglot import exp

        if not _is_set_operation(scope) and not isinstance(scope.expression, exp.Select):
            return self.deps_at(scope, 0)  # VALUES, UNNEST...: the same for every column
        names = _named_selects(scope)
        if name not in names:
            raise _Unresolved(f"column {name} not found in a subquery")
        return self.deps_at(scope, names.index(name))

    def expression_deps(self, scope: Scope, expression: exp.Expression) -> frozenset[ColumnRef]:
        from sqlglot import exp

        if isinstance(expression, exp.Star) or expression.find(exp.Select, exp.Subquery):
            raise _Unresolved("a projection is a star or holds a subquery")
        deps: set[ColumnRef] = set()
        for column in expression.find_all(exp.Column):
            if isinstance(column.this, exp.Star):
                raise _Unresolved(f"unexpanded star {column.sql()}")
            if not column.table:
                raise _Unresolved(f"unqualified column {column.sql()}")
            source = scope.sources.get(column.table)
            if source is None:
                raise _Unresolved(f"column {column.sql()} reads an unknown source")
            if isinstance(source, exp.Table):
                deps.update(self._table_deps(source, column.name))
            else:
                deps.update(self.deps_of(source, column.name))
        return frozenset(deps)

    def _table_deps(self, table: exp.Table, column: str) -> set[ColumnRef]:
        from sqlglot import exp

        if not isinstance(table.this, exp.Identifier):  # a table function
            if table.this.find(exp.Column):
                raise _Unresolved(f"table function {table.sql()} reads columns")
            return set()
        fqn = exp.table_name(table, identify=True)
        if fqn not in self.depends_on:
            raise _Unresolved(f"table {fqn} is not an upstream model")
        return {(fqn, column)}
