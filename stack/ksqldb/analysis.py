"""What a query's expressions refer to (columns, aggregate calls, qualifiers), and the checks ksqlDB makes on
them before it plans anything. Shared by the planners of projections, aggregations and joins."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from . import ast
from .errors import KsqlStatementError
from .expressions import Compiler, Scope
from .functions.aggregates import is_aggregate
from .functions.datetime import TIME_UNITS, UNIT_FUNCTIONS

#: The window bounds, columns of a windowed aggregation's rows (and of windowed sources).
WINDOW_COLUMNS = ("WINDOWSTART", "WINDOWEND")


def free_columns(e: ast.Expr, bound: frozenset[str] = frozenset()) -> list[ast.ColumnRef]:
    """Column references in `e`, in order, but those that lambda parameters bind (`bound`: the parameters
    of the lambdas `e` is in) and the time-unit keyword of TIMESTAMPADD and its kin (not a column)."""
    out: list[ast.ColumnRef] = []
    units = {id(c.args[0]) for c in e.find_all(ast.FunctionCall) if _unit_argument(c)}
    for node in e.walk(prune=_is_lambda):
        if isinstance(node, ast.ColumnRef):
            if (node.source is not None or node.name not in bound) and id(node) not in units:
                out.append(node)
        elif isinstance(node, ast.Lambda):
            out += free_columns(node.body, bound | set(node.params))
    return out


def _unit_argument(call: ast.FunctionCall) -> bool:
    """`TIMESTAMPADD(SECONDS, ...)`: the first argument is a time unit keyword (expressions.py reads it so)."""
    first = call.args[0] if call.args else None
    return (
        call.name.upper() in UNIT_FUNCTIONS
        and isinstance(first, ast.ColumnRef)
        and first.source is None
        and first.name.upper() in TIME_UNITS
    )


def _is_lambda(node: ast.Node) -> bool:
    return isinstance(node, ast.Lambda)


def _is_aggregate_call(node: ast.Node) -> bool:
    return isinstance(node, ast.FunctionCall) and is_aggregate(node.name)


def find_aggregates(e: ast.Expr) -> list[ast.FunctionCall]:
    """The aggregate function calls in `e`, in order; not those in their arguments (nested aggregates)."""
    return [c for c in e.find_all(ast.FunctionCall, prune=_is_aggregate_call) if is_aggregate(c.name)]


def contains_aggregate(e: ast.Expr) -> bool:
    return any(_is_aggregate_call(node) for node in e.walk())


def is_aggregate_query(q: ast.Query) -> bool:
    """GROUP BY, WINDOW, or an aggregate function in the projection or HAVING."""
    if q.group_by or q.window or q.having is not None:
        return True
    return any(item.expr is not None and contains_aggregate(item.expr) for item in q.select)


def unqualified(e: ast.Expr) -> ast.Expr:
    """`e` with its column qualifiers dropped (`I.ID` and `ID` name the same column of one source)."""
    return e.transform(
        lambda x: dataclasses.replace(x, source=None) if isinstance(x, ast.ColumnRef) and x.source else None
    )


def qualified(e: ast.Expr, source: str) -> ast.Expr:
    """`e` with every column reference qualified by `source`, as ksqlDB prints expressions in messages."""
    return e.transform(lambda x: dataclasses.replace(x, source=source) if isinstance(x, ast.ColumnRef) else None)


def check_lambdas(q: ast.Query, column_names: set[str]) -> None:
    """ksqlDB's checks of lambda parameters while it prepares a statement (AstSanitizer), before anything is
    resolved: a parameter may not be named as a column of any source of the query (so within a statement a
    parameter shadows only pseudo columns), and a nested lambda may not reuse an enclosing one's parameter."""
    exprs = [item.expr for item in q.select] + [q.where, *q.group_by, *q.partition_by, q.having]
    exprs += [j.on for j in q.joins]
    for e in exprs:
        if e is not None:
            _check_lambda_params(e, column_names, frozenset())


def _check_lambda_params(e: ast.Expr, column_names: set[str], enclosing: frozenset[str]) -> None:
    for node in e.walk(prune=_is_lambda):
        if isinstance(node, ast.Lambda):
            for param in node.params:
                if param in column_names:
                    raise KsqlStatementError(f"Lambda function argument can't be a column name: {param}")
            if enclosing & set(node.params):
                raise KsqlStatementError("Reusing lambda arguments in nested lambda is not allowed")
            _check_lambda_params(node.body, column_names, enclosing | set(node.params))


def check_clauses(q: ast.Query, persistent: bool) -> None:
    """EMIT and LIMIT as ksqlDB allows them outside aggregations (the aggregation planner has its own rules)."""
    if q.emit is not None and q.emit.upper() not in ("CHANGES", "FINAL"):
        raise KsqlStatementError(f"Unknown EMIT type: {q.emit}")
    if q.emit is not None and q.emit.upper() == "FINAL":
        raise KsqlStatementError("EMIT FINAL is only supported for windowed aggregations.")
    if persistent and q.limit is not None:
        raise KsqlStatementError("CREATE STREAM AS SELECT and INSERT INTO statements don't support LIMIT clause.")


def check_columns(
    clauses: Sequence[tuple[str, Sequence[ast.Expr | None]]],
    scope: Scope,
    skip: Callable[[str, ast.ColumnRef], bool] = lambda clause, ref: False,
) -> None:
    """ksqlDB resolves every column reference, clause by clause, before it analyses the query: the first
    unknown one is reported as unknown, with its position, before any type or grouping error. `skip`
    leaves references to the later checks that know them (window bounds, synthetic join keys, ...)."""
    for clause, exprs in clauses:
        for e in exprs:
            for ref in free_columns(e) if e is not None else []:
                if not skip(clause, ref) and scope.lookup(ref) is None:
                    Compiler(scope, clause).compile(ref)  # raises the unknown-column error


def check_qualifiers(q: ast.Query, names: set[str]) -> None:
    """ksqlDB refuses a qualifier that names no source or alias of the query while it builds the statement,
    before it resolves any column (its message, prefix included)."""
    exprs = [item.expr for item in q.select] + [q.where, *q.group_by, *q.partition_by, q.having]
    for item in q.select:
        if item.star_source is not None and item.star_source not in names:
            raise KsqlStatementError(
                f"Failed to prepare statement: '{item.star_source}' is not a valid stream/table name or alias."
            )
    for e in exprs:
        for ref in free_columns(e) if e is not None else []:
            if ref.source is not None and ref.source not in names:
                raise KsqlStatementError(
                    f"Failed to prepare statement: '{ref.source}' is not a valid stream/table name or alias."
                )
