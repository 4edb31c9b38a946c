"""Planning GROUP BY aggregations, windowed or not, over streams and tables, as ksqlDB analyses them: every
non-aggregate expression must be a GROUP BY expression or built from them, the grouping expressions must be
projected and become the key columns, key columns are named after their select items or KSQL_COL_n. The
result is an `aggregation.AggregatePlan`, which aggregation.py runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import ast
from .aggregation import AggregateCall, AggregatePlan
from .analysis import (
    WINDOW_COLUMNS,
    check_columns,
    check_qualifiers,
    contains_aggregate,
    find_aggregates,
    free_columns,
    qualified,
    unqualified,
)
from .errors import KsqlStatementError, UnsupportedError
from .expressions import Compiled, Compiler, ErrorSink, Scope
from .formatter import format_expr, quote_ident
from .functions import REGISTRY
from .functions.aggregates import UNSUPPORTED as UNSUPPORTED_AGGREGATES
from .functions.aggregates import is_aggregate, resolve_aggregate
from .functions.registry import UNSUPPORTED_FUNCTIONS
from .metastore import RESERVED, Column, LogicalSchema, MetaStore
from .pipeline import ProjectionPlan
from .types import BIGINT, NullType, SqlType, is_complex
from .windows import parse_window


def plan_aggregate(
    q: ast.Query, metastore: MetaStore, sink_name: str | None, config: dict[str, Any] | None = None
) -> AggregatePlan:
    """Analyse an aggregation (see the module docstring); raises ksqlDB's errors for invalid ones.
    `config`: the statement's properties (ksql.functions.collect_list.limit, ...)."""
    if q.joins:
        raise UnsupportedError("aggregations over joins")
    if q.partition_by:
        raise UnsupportedError("PARTITION BY with GROUP BY")
    if q.emit is not None and q.emit.upper() not in ("CHANGES", "FINAL"):
        raise KsqlStatementError(f"Unknown EMIT type: {q.emit}")
    if sink_name is not None and q.limit is not None:
        raise KsqlStatementError("CREATE TABLE AS SELECT statements don't support LIMIT clause.")
    source = metastore.require(q.source.name)
    if source.value_format.name == "KAFKA":
        raise KsqlStatementError(
            f"Source(s) {source.name} are using the 'KAFKA' value format. This format does not yet support GROUP BY."
        )
    if getattr(source, "window", None) is not None:
        raise UnsupportedError("aggregations over windowed sources")
    window = parse_window(q.window) if q.window else None
    if (
        window is not None
        and not q.group_by
        and q.having is None
        and not any(item.expr is not None and contains_aggregate(item.expr) for item in q.select)
    ):
        raise KsqlStatementError(f"{ast.at(q.window_loc)}WINDOW clause requires a GROUP BY clause.")
    if window is not None and source.kind == "TABLE":
        raise UnsupportedError("windowed aggregations over tables")
    emit_final = q.emit is not None and q.emit.upper() == "FINAL"
    if emit_final and window is None:
        raise KsqlStatementError("EMIT FINAL is only supported for windowed aggregations.")

    schema = source.schema
    names = [source.name, q.source.alias or ""]
    scope = Scope(schema.row_columns(), names)
    errors = ErrorSink()

    check_qualifiers(q, scope.source_names)
    _check_columns(q, scope, window is not None)
    if window is not None:
        _check_window_bounds(q, scope)
    _check_functions_exist([i.expr for i in q.select if i.expr is not None] + [q.having] * (q.having is not None))
    for e in [i.expr for i in q.select if i.expr is not None] + [q.having] * (q.having is not None):
        for call in find_aggregates(e):
            if any(find_aggregates(arg) for arg in call.args):
                raise KsqlStatementError(f"Aggregate functions can not be nested: {format_expr(unqualified(call))}")

    # ---- the projection, with `*` expanded
    items: list[tuple[ast.Expr, str | None]] = []
    for item in q.select:
        if item.is_star:
            items += [(ast.ColumnRef(c.name), None) for c in schema.key + schema.value]
        else:
            assert item.expr is not None
            items.append((_star_args(item.expr), item.alias))
    having_expr = _star_args(q.having) if q.having is not None else None

    # ---- GROUP BY
    group_by = [unqualified(g) for g in q.group_by]
    for g in q.group_by:
        found = find_aggregates(g)
        if found:
            raise KsqlStatementError(
                f"GROUP BY does not support aggregate functions: {found[0].name.upper()} is an aggregate function."
            )
    for i, g in enumerate(group_by):
        if g in group_by[:i]:
            raise KsqlStatementError(f"Duplicate GROUP BY expression: {format_expr(qualified(g, source.name))}")
    group_compiled = [Compiler(scope, "GROUP BY", errors).compile(g) for g in group_by]
    for c in group_compiled:
        if isinstance(c.type, NullType):
            raise KsqlStatementError("Can't infer a type of null in GROUP BY.")

    # ---- aggregate calls: shared when written the same way
    calls: list[ast.FunctionCall] = []
    for e in [e for e, _ in items] + ([having_expr] if having_expr is not None else []):
        for call in find_aggregates(e):
            plain = unqualified(call)
            if plain not in calls:
                calls.append(plain)
    if group_by and not calls:
        raise KsqlStatementError("GROUP BY requires aggregate functions in either the SELECT or HAVING clause.")

    # ---- the aggregate row: grouping values, aggregate results, window bounds
    gb_names = [f"\0GROUP{i}" for i in range(len(group_by))]
    agg_names = [f"\0AGG{i}" for i in range(len(calls))]

    def to_agg_row(e: ast.Expr) -> ast.Expr:
        def fn(x: ast.Node) -> ast.Expr | None:
            if not isinstance(x, ast.Expr):
                return None  # a CASE branch: its condition and result are looked at in turn
            plain = unqualified(x)
            if plain in group_by:
                return ast.ColumnRef(gb_names[group_by.index(plain)])
            if isinstance(x, ast.FunctionCall) and is_aggregate(x.name):
                return ast.ColumnRef(agg_names[calls.index(plain)])
            return None

        return e.transform(fn)

    window_names = set(WINDOW_COLUMNS) if window is not None else set()

    def unresolved(e: ast.Expr) -> list[ast.ColumnRef]:
        return [
            c
            for c in free_columns(to_agg_row(e))
            if not c.name.startswith("\0")
            and not (c.name in window_names and c.source in (None, source.name, q.source.alias))
        ]

    bad = [format_expr(unqualified(e)) for e, _ in items if unresolved(e)]
    if bad:
        raise KsqlStatementError(
            f"Non-aggregate SELECT expression(s) not part of GROUP BY: {', '.join(bad)}\n"
            "Either add the column(s) to the GROUP BY or remove them from the SELECT."
        )
    if having_expr is not None:
        cols = []
        for c in unresolved(having_expr):
            if c.name not in cols:
                cols.append(c.name)
        if cols:
            raise KsqlStatementError(f"Non-aggregate HAVING expression not part of GROUP BY: {', '.join(cols)}")
    if not group_by:
        kind = "CREATE TABLE AS SELECT" if sink_name is not None else "SELECT"
        raise KsqlStatementError(
            f"{kind} statement does not support aggregate function [{', '.join(format_expr(c) for c in calls)}] "
            "without a GROUP BY clause."
        )

    # ---- resolve the aggregate functions; their arguments are computed before aggregation
    where_index = 0 if (q.where is not None and source.kind == "TABLE") else None
    arg_base = (1 if where_index is not None else 0) + len(group_by)
    arg_exprs: list[Compiled] = []
    arg_texts: list[str] = []
    aggregates: list[AggregateCall] = []
    for call in calls:
        if not call.args:
            raise KsqlStatementError(f"Function '{call.name.upper()}' needs an argument.")
        arg = Compiler(scope, "SELECT", errors).compile(call.args[0])
        params = [_literal_value(call, a) for a in call.args[1:]]
        fn = resolve_aggregate(call.name, arg.type, params, config)
        aggregates.append(AggregateCall(call, fn, arg_base + len(arg_exprs)))
        arg_exprs.append(arg)
        arg_texts.append(format_expr(call.args[0]))
    if source.kind == "TABLE":
        not_for_tables = []
        for a in aggregates:
            if not a.function.table_capable and a.function.name not in not_for_tables:
                not_for_tables.append(a.function.name)
        if not_for_tables:
            raise KsqlStatementError(
                f"The aggregation function{'s' if len(not_for_tables) > 1 else ''} {_and_list(not_for_tables)} "
                f"cannot be applied to a table source, only to a stream source."
            )
    if source.value_format.name == "DELIMITED" and any(is_complex(a.function.intermediate) for a in aggregates):
        raise KsqlStatementError(
            "One of the functions used in the statement has an intermediate type that the value format can not "
            "handle. Please remove the function or change the format."
        )

    agg_columns = [(n, c.type) for n, c in zip(gb_names, group_compiled)]
    agg_columns += [(n, a.function.return_type) for n, a in zip(agg_names, aggregates)]
    if window is not None:
        agg_columns += [(n, BIGINT) for n in WINDOW_COLUMNS]
    agg_scope = Scope(agg_columns, names)
    post_errors = ErrorSink()

    # ---- names: aliases, else the column's name, else KSQL_COL_n in projection order
    aliases = {alias for _, alias in items if alias}
    generated = 0

    def natural_name(expr: ast.Expr) -> str:
        nonlocal generated
        if isinstance(expr, ast.ColumnRef):
            return expr.name
        if isinstance(expr, ast.Dereference):
            return expr.field
        while f"KSQL_COL_{generated}" in aliases:
            generated += 1
        generated += 1
        return f"KSQL_COL_{generated - 1}"

    named = [(alias or natural_name(e), e) for e, alias in items]

    # ---- key columns: the select items that are grouping expressions, in GROUP BY order
    key_positions: list[int] = []  # their select positions
    key_groups: list[int] = []  # their GROUP BY positions
    missing: list[str] = []
    for gi, g in enumerate(group_by):
        matches = [i for i, (_, e) in enumerate(named) if unqualified(e) == g]
        if not matches:
            missing.append(format_expr(g))
        elif len(matches) > 1:
            raise KsqlStatementError(
                "The projection contains a key column more than once: "
                f"{' and '.join(f'`{named[i][0]}`' for i in matches)}."
            )
        else:
            key_positions.append(matches[0])
            key_groups.append(gi)
    if missing and sink_name is not None:  # (a push query need not project them)
        many = len(missing) > 1
        raise KsqlStatementError(
            f"The query used to build `{sink_name}` must include the grouping expression{'s' if many else ''} "
            f"{_and_list(missing)} in its projection (eg, SELECT {', '.join(missing)}...)."
        )

    key_cols = [Column(named[i][0], group_compiled[gi].type, key=True) for gi, i in zip(key_groups, key_positions)]
    value_cols: list[Column] = []
    value_exprs: list[Compiled] = []
    value_texts: list[str] = []
    compiler = Compiler(agg_scope, "SELECT", post_errors)
    internal = dict(zip(gb_names, group_by)) | dict(zip(agg_names, calls))
    for i, (name, e) in enumerate(named):
        if i in key_positions:
            continue
        with _as_written(internal):
            c = compiler.compile(to_agg_row(e))
        if isinstance(c.type, NullType):
            raise KsqlStatementError(
                "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR)."
            )
        value_cols.append(Column(name, c.type))
        value_exprs.append(c)
        value_texts.append(format_expr(unqualified(e)))
    if sink_name is not None:
        if not value_cols:
            raise KsqlStatementError("The projection contains no value columns.")
        for col in value_cols:
            if col.name in RESERVED or col.name in WINDOW_COLUMNS:
                raise KsqlStatementError(
                    f"Reserved column name in select: `{col.name}`. Please remove or alias the column."
                )
    key_names = {c.name for c in key_cols}
    seen: set[str] = set()
    for col in value_cols:
        if col.name in key_names:
            raise KsqlStatementError(f"Duplicate value columns found in schema: `{col.name}` {col.type}")
        if col.name in seen:
            raise KsqlStatementError(f"The projection contains the column `{col.name}` more than once.")
        seen.add(col.name)
    having = None
    if having_expr is not None:
        with _as_written(internal):
            having = Compiler(agg_scope, "HAVING", post_errors).compile_predicate(to_agg_row(having_expr))

    # ---- the pre-aggregation projection run by the Pipeline
    pre_exprs: list[Compiled] = []
    pre_texts: list[str] = []
    where = None
    if q.where is not None:
        predicate = Compiler(scope, "WHERE", errors).compile_predicate(q.where)
        if where_index is not None:
            pre_exprs.append(predicate)
            pre_texts.append(format_expr(q.where))
        else:
            where = predicate
    pre_exprs += group_compiled + arg_exprs
    pre_texts += [format_expr(g) for g in group_by] + arg_texts
    key_exprs = [Compiler(scope).compile(ast.ColumnRef(c.name)) for c in schema.key] if source.kind == "TABLE" else []
    pre_schema = LogicalSchema((), tuple(Column(f"\0PRE{i}", c.type) for i, c in enumerate(pre_exprs)))
    pre = ProjectionPlan(
        source, pre_schema, where, key_exprs, pre_exprs, pre_texts, None, errors, False, [False] * len(key_exprs)
    )
    push_columns: list[tuple[str, SqlType, int]] = []
    value_positions = [i for i in range(len(named)) if i not in key_positions]
    for i in range(len(named)):
        if i in key_positions:
            k = key_positions.index(i)
            push_columns.append((key_cols[k].name, key_cols[k].type, key_groups[k]))
        else:
            v = value_positions.index(i)
            push_columns.append((value_cols[v].name, value_cols[v].type, len(group_by) + v))
    return AggregatePlan(
        source,
        LogicalSchema(tuple(key_cols), tuple(value_cols)),
        pre,
        where_index,
        [c.type for c in group_compiled],
        aggregates,
        having,
        value_exprs,
        value_texts,
        window,
        emit_final,
        q.limit,
        post_errors,
        query_sql=_query_sql(q, source.name, [name for name, _ in named]),
        push_columns=push_columns,
    )


def _check_columns(q: ast.Query, scope: Scope, windowed: bool) -> None:
    """An aggregation's columns in ksqlDB's order (WHERE, GROUP BY, HAVING, SELECT); references to an
    unknown source are left to the checks that name it."""
    bounds = set(WINDOW_COLUMNS) if windowed else set()

    def skip(_: str, ref: ast.ColumnRef) -> bool:
        return ref.name in bounds or (ref.source is not None and ref.source not in scope.source_names)

    check_columns(
        [
            ("WHERE", [q.where]),
            ("GROUP BY", q.group_by),
            ("HAVING", [q.having]),
            ("SELECT", [item.expr for item in q.select]),
        ],
        scope,
        skip,
    )


@contextmanager
def _as_written(internal: dict[str, ast.Expr]) -> Iterator[None]:
    """Errors of expressions compiled over the aggregate row name its grouping expressions and aggregate
    calls as the user wrote them, not by their internal column names."""
    try:
        yield
    except KsqlStatementError as err:
        message = err.message
        for name, expr in internal.items():
            message = message.replace(format_expr(ast.ColumnRef(name)), format_expr(expr))
        raise KsqlStatementError(message) from None


def _check_window_bounds(q: ast.Query, scope: Scope) -> None:
    """ksqlDB's AggregateAnalyzer: in a windowed aggregation the window bounds are columns of the result
    only, usable in the projection but not in an aggregate function's arguments, WHERE, GROUP BY or HAVING."""
    args = [a for item in q.select if item.expr is not None for call in find_aggregates(item.expr) for a in call.args]
    for e in [*args, q.where, *q.group_by, q.having]:
        for ref in free_columns(e) if e is not None else []:
            if ref.name in WINDOW_COLUMNS and (ref.source is None or ref.source in scope.source_names):
                raise KsqlStatementError(
                    f"Window bounds column {ref.name} can only be used in the SELECT clause of windowed "
                    "aggregations and can not be passed to aggregate functions.\n"
                    "See https://github.com/confluentinc/ksql/issues/4397"
                )


def _and_list(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _query_sql(q: ast.Query, source: str, names: list[str]) -> str:
    """The query as ksqlDB's formatter prints it: columns qualified, every select item named."""
    alias = q.source.alias or source
    written: list[ast.Expr] = []
    for item in q.select:
        if item.expr is None:
            written += [ast.ColumnRef(n) for n in names[len(written) : len(written) + 1]]
        else:
            written.append(item.expr)
    lines = [
        "SELECT",
        ",\n".join(f"  {format_expr(qualified(e, alias))} {quote_ident(n)}" for e, n in zip(written, names)),
        f"FROM {quote_ident(source)} {quote_ident(alias)}",
    ]
    if q.window:
        lines.append(f"WINDOW {q.window}")
    if q.where is not None:
        lines.append(f"WHERE {format_expr(qualified(q.where, alias))}")
    lines.append("GROUP BY " + ", ".join(format_expr(qualified(g, alias)) for g in q.group_by))
    if q.having is not None:
        lines.append(f"HAVING {format_expr(qualified(q.having, alias))}")
    lines.append(f"EMIT {(q.emit or 'CHANGES').upper()}")
    return lines[0] + "\n" + "\n".join(lines[1:])


def _check_functions_exist(exprs: list[ast.Expr]) -> None:
    """Unknown functions are reported before the aggregation analysis, as ksqlDB does."""
    for e in exprs:
        for call in e.find_all(ast.FunctionCall):
            name = call.name.upper()
            if name in UNSUPPORTED_FUNCTIONS:
                raise UnsupportedError(UNSUPPORTED_FUNCTIONS[name])
            if name in UNSUPPORTED_AGGREGATES:
                raise UnsupportedError(f"aggregate function {name}")
            if not is_aggregate(name) and name not in REGISTRY and name not in ("TRANSFORM", "FILTER", "REDUCE"):
                raise KsqlStatementError(f"Can't find any functions with the name '{name}'")


def _star_args(e: ast.Expr) -> ast.Expr:
    """`COUNT(*)` and `COUNT()` aggregate ROWTIME, as ksqlDB documents for every aggregate function."""

    def fn(x: ast.Node) -> ast.Expr | None:
        if isinstance(x, ast.FunctionCall) and is_aggregate(x.name) and (x.star or not x.args):
            return ast.FunctionCall(x.name, (ast.ColumnRef("ROWTIME"),))
        return None

    return e.transform(fn)


def _literal_value(call: ast.FunctionCall, e: ast.Expr) -> Any:
    if isinstance(e, ast.Literal):
        return e.value
    raise KsqlStatementError(
        f"Parameter {format_expr(e)} of {call.name.upper()} must be a literal: only the first argument of an "
        "aggregate function may reference columns."
    )
