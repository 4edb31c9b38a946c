"""Plan any SELECT (`plan_query`): joins by join_planner.py, aggregations by aggregate_planner.py, and here
projections of one stream or table (`plan_select`): resolve the source, compile WHERE and the projection,
derive the output schema (key columns must be projected, as ksqlDB requires for streams)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import ast
from .aggregate_planner import plan_aggregate
from .aggregation import AggregatePlan
from .analysis import (
    WINDOW_COLUMNS,
    check_clauses,
    check_columns,
    check_lambdas,
    check_qualifiers,
    contains_aggregate,
    is_aggregate_query,
)
from .errors import KsqlStatementError, UnsupportedError
from .expressions import Compiled, Compiler, ErrorSink, Scope
from .formatter import format_expr
from .join_planner import plan_join
from .joins import JoinPlan
from .metastore import RESERVED, Column, LogicalSchema, MetaStore, check_projection, projection_order
from .pipeline import ProjectionPlan
from .types import NullType


def _check_supported(q: ast.Query) -> None:
    if q.window:
        raise UnsupportedError("windowed aggregations")
    if q.group_by:
        raise UnsupportedError("GROUP BY")
    if q.having is not None:
        raise UnsupportedError("HAVING")


#: Where `_unqualified` and `_qualify` leave column references as written, as this planner always has when it
#: matches select items to PARTITION BY expressions and prints them. (ksqlDB drops qualifiers there too, so a
#: select item qualifying a column inside CASE, MAP or STRUCT unlike the PARTITION BY expression does not match.)
_AS_WRITTEN = (ast.WhenClause, ast.MapCtor, ast.StructCtor)


def _unqualified(e: ast.Expr) -> ast.Expr:
    """The expression with column qualifiers dropped (`I.ID` and `ID` name the same column here), but in
    `_AS_WRITTEN` nodes."""

    def drop(x: ast.Node) -> ast.Node | None:
        if isinstance(x, ast.ColumnRef):
            return dataclasses.replace(x, source=None)
        return x if isinstance(x, _AS_WRITTEN) else None

    return e.transform(drop)


def _qualify(e: ast.Expr, source: str) -> ast.Expr:
    """Column references qualified with the source name, as ksqlDB prints partitioning expressions, but in
    `_AS_WRITTEN` nodes."""

    def qualify(x: ast.Node) -> ast.Node | None:
        if isinstance(x, ast.ColumnRef):
            return ast.ColumnRef(x.name, source)
        return x if isinstance(x, _AS_WRITTEN) else None

    return e.transform(qualify)


@dataclass
class _KeySpec:
    name: str
    expr: ast.Expr  # what a select item must be to project this key


def plan_select(q: ast.Query, metastore: MetaStore, sink_name: str | None, new_planner: bool = False) -> ProjectionPlan:
    if q.joins:  # several sources: join_planner.py plans them
        return plan_join(q, metastore, sink_name, new_planner)  # type: ignore[return-value]
    _check_supported(q)
    check_clauses(q, persistent=sink_name is not None)
    source = metastore.require(q.source.name)
    if source.kind != "STREAM" and q.partition_by:
        raise UnsupportedError("PARTITION BY on a table")
    schema = source.schema
    scope = Scope(schema.row_columns(), [source.name, q.source.alias or ""])

    for item in q.select:
        if item.expr is not None and contains_aggregate(item.expr):
            raise UnsupportedError("aggregate functions")

    check_qualifiers(q, scope.source_names)
    check_columns(
        [("WHERE", [q.where]), ("PARTITION BY", q.partition_by), ("SELECT", [item.expr for item in q.select])], scope
    )
    errors = ErrorSink()
    where = Compiler(scope, "WHERE", errors).compile_predicate(q.where) if q.where is not None else None
    compiler = Compiler(scope, "SELECT", errors)

    aliases = {i.alias for i in q.select if i.alias}
    generated = 0

    def next_generated() -> str:
        nonlocal generated
        while f"KSQL_COL_{generated}" in aliases:
            generated += 1
        name = f"KSQL_COL_{generated}"
        generated += 1
        return name

    def natural_name(expr: ast.Expr) -> str:
        if isinstance(expr, ast.ColumnRef):
            return expr.name
        if isinstance(expr, ast.Dereference):
            return expr.field
        return next_generated()

    # ---- which columns form the result's key
    partitioned = bool(q.partition_by)
    keyless_partition = (
        partitioned
        and len(q.partition_by) == 1
        and isinstance(q.partition_by[0], ast.Literal)
        and q.partition_by[0].kind == "NULL"
    )
    key_specs: list[_KeySpec] = []
    if partitioned and not keyless_partition:
        if any(isinstance(p, ast.Literal) and p.kind == "NULL" for p in q.partition_by):
            raise KsqlStatementError("Cannot PARTITION BY multiple columns including NULL")
        for p in q.partition_by:
            c = Compiler(scope, "PARTITION BY", errors).compile(p)
            if isinstance(c.type, NullType):
                raise KsqlStatementError("Can't infer a type of null in PARTITION BY.")
            key_specs.append(_KeySpec(natural_name(p), _unqualified(p)))
    elif not partitioned:
        key_specs = [_KeySpec(kc.name, ast.ColumnRef(kc.name)) for kc in schema.key]
    partition_refs = (
        {spec.expr.name for spec in key_specs if isinstance(spec.expr, ast.ColumnRef)} if partitioned else set()
    )

    # ---- expand the projection: (name, expr, compiled, key spec index or None)
    items: list[tuple[str, ast.Expr, Compiled, int | None]] = []
    for item in q.select:
        if item.is_star:
            if partitioned:
                star_exprs: list[tuple[str, ast.Expr, int | None]] = [
                    (spec.name, spec.expr, i) for i, spec in enumerate(key_specs)
                ]
                star_exprs += [
                    (c.name, ast.ColumnRef(c.name), None)
                    for c in schema.value + schema.headers
                    if c.name not in partition_refs
                ]
                star_exprs += [
                    (c.name, ast.ColumnRef(c.name), None) for c in schema.key if c.name not in partition_refs
                ]
            else:
                star_exprs = [
                    (c.name, ast.ColumnRef(c.name), i if i < len(schema.key) else None)
                    for i, c in enumerate(schema.key + schema.value + schema.headers)
                ]
                if source.window is not None and sink_name is None:  # a push query's * shows the window bounds
                    bounds = [(n, ast.ColumnRef(n), None) for n in WINDOW_COLUMNS]
                    star_exprs[len(schema.key) : len(schema.key)] = bounds
            for name, expr, key_index in star_exprs:
                items.append((name, expr, compiler.compile(expr), key_index))
            continue
        expr = item.expr
        assert expr is not None
        compiled = compiler.compile(expr)
        if isinstance(compiled.type, NullType):
            raise KsqlStatementError(
                "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR)."
            )
        plain = _unqualified(expr)
        if isinstance(plain, ast.ColumnRef) and not partitioned:
            key_index = next((i for i, spec in enumerate(key_specs) if spec.expr == plain), None)
        else:
            key_index = next((i for i, spec in enumerate(key_specs) if spec.expr == plain), None)
        if item.alias:
            name = item.alias
        elif key_index is not None:
            name = key_specs[key_index].name
        else:
            name = natural_name(expr)
        items.append((name, expr, compiled, key_index))

    # ---- every key must be projected exactly once
    key_positions: list[int] = []
    missing: list[str] = []
    for ki, spec in enumerate(key_specs):
        refs = [i for i, it in enumerate(items) if it[3] == ki]
        if not refs:
            missing.append(spec.name)
        elif len(refs) > 1:
            names = [items[i][0] for i in refs]
            raise KsqlStatementError(
                f"The projection contains a key column (`{spec.name}`) more than once, aliased as: "
                f"{' and '.join(names)}."
            )
        else:
            key_positions.append(refs[0])
    sink = f"`{sink_name}`" if sink_name else "the sink"
    if missing and partitioned:
        texts = [format_expr(_qualify(spec.expr, source.name)) for spec in key_specs]
        raise KsqlStatementError(
            f"The query used to build {sink} must include the partitioning expression{'s' if len(texts) > 1 else ''} "
            f"{' and '.join(texts)} in its projection (eg, SELECT {', '.join(texts)}...)."
        )
    transient = sink_name is None  # a push query: rows in projection order, with or without the key
    if missing and not (new_planner or transient):
        keys = [spec.name for spec in key_specs]
        if len(keys) == 1:
            raise KsqlStatementError(
                f"The query used to build {sink} must include the key column {keys[0]} in its projection "
                f"(eg, SELECT {keys[0]}...)."
            )
        raise KsqlStatementError(
            f"The query used to build {sink} must include the key columns {', '.join(keys[:-1])} and "
            f"{keys[-1]} in its projection (eg, SELECT {', '.join(keys)}...)."
        )
    if missing and len(missing) != len(key_specs) and not transient:
        raise UnsupportedError("new query planner with only some key columns projected")
    if missing:
        key_positions = []  # the new planner makes the result keyless, as push queries are
    elif new_planner:
        key_positions.sort()  # the new planner keeps the projection's order of key columns

    key_cols: list[Column] = []
    key_exprs: list[Compiled] = []
    for i in key_positions:
        name, _, c, _ = items[i]
        key_cols.append(Column(name, c.type, key=True))
        key_exprs.append(c)
    value_cols: list[Column] = []
    value_exprs: list[Compiled] = []
    value_texts: list[str] = []
    for i, (name, expr, c, _) in enumerate(items):
        if i in key_positions:
            continue
        value_cols.append(Column(name, c.type))
        value_exprs.append(c)
        value_texts.append(format_expr(expr))
    check_projection(key_cols, value_cols, persistent=sink_name is not None)
    out = LogicalSchema(tuple(key_cols), tuple(value_cols))
    # a tombstone has no value, and ksqlDB gives its pseudo columns no value either
    value_names = {c.name for c in schema.value} | RESERVED
    uses_value = [bool(_column_names(items[i][1]) & value_names) for i in key_positions]
    return ProjectionPlan(
        source,
        out,
        where,
        key_exprs,
        value_exprs,
        value_texts,
        q.limit,
        errors,
        partitioned,
        uses_value,
        result_kind=source.kind,
        projection_order=projection_order(key_positions, len(items)),
    )


def plan_query(
    q: ast.Query, metastore: MetaStore, sink_name: str | None, new_planner: bool = False, config: dict | None = None
) -> ProjectionPlan | AggregatePlan | JoinPlan:
    """Plan any SELECT: joins by join_planner.plan_join, aggregations (GROUP BY, WINDOW, aggregate functions)
    by aggregate_planner.plan_aggregate, projections of a stream or a table by plan_select. `config` holds the
    statement's properties."""
    sources = [metastore.get(r.name) for r in [q.source, *(j.right for j in q.joins)]]
    schemas = [s.schema for s in sources if s is not None]
    check_lambdas(q, {c.name for schema in schemas for c in schema.key + schema.value + schema.headers})
    if q.joins:  # several sources, aggregated or not: join_planner.py plans them
        return plan_join(q, metastore, sink_name, new_planner, config)
    if is_aggregate_query(q):
        return plan_aggregate(q, metastore, sink_name, config)
    return plan_select(q, metastore, sink_name, new_planner)


def _column_names(e: ast.Expr) -> set[str]:
    """The names of the columns `e` references (lambda parameters included)."""
    return {ref.name for ref in e.find_all(ast.ColumnRef)}


def with_window_bounds(plan: ProjectionPlan) -> ProjectionPlan:
    """A projection plan over a windowed source whose key values end with the row's window bounds, so that
    a windowed key serde writes each record under its source window."""
    scope = Scope(plan.source.schema.row_columns())
    bounds = [Compiler(scope).compile(ast.ColumnRef(name)) for name in WINDOW_COLUMNS]
    return dataclasses.replace(
        plan, key_exprs=plan.key_exprs + bounds, key_uses_value=plan.key_uses_value + [False, False]
    )
