"""Plan a SELECT over a stream: resolve the source, compile WHERE and the projection, derive the
output schema (key columns must be projected, as ksqlDB requires for streams)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ast
from .errors import KsqlStatementError, UnsupportedError
from .expressions import Compiled, Compiler, ErrorSink, Scope
from .metastore import RESERVED, Column, DataSource, LogicalSchema, MetaStore, check_projection, projection_order
from .types import NullType


@dataclass
class ProjectionPlan:
    source: DataSource
    schema: LogicalSchema  # output schema
    where: Compiled | None
    key_exprs: list[Compiled]
    value_exprs: list[Compiled]
    value_texts: list[str]
    limit: int | None = None
    errors: ErrorSink | None = None
    partitioned: bool = False
    key_uses_value: list[bool] = field(default_factory=list)  # key expression reads value columns
    result_kind: str = "STREAM"  # TABLE when projecting a table (its changelog)
    projection_order: list[int] = field(default_factory=list)  # per SELECT item, its index in key + value columns


def _check_clauses(q: ast.Query, persistent: bool) -> None:
    if q.emit is not None and q.emit.upper() not in ("CHANGES", "FINAL"):
        raise KsqlStatementError(f"Unknown EMIT type: {q.emit}")
    if q.emit is not None and q.emit.upper() == "FINAL":
        raise KsqlStatementError("EMIT FINAL is only supported for windowed aggregations.")
    if persistent and q.limit is not None:
        raise KsqlStatementError("CREATE STREAM AS SELECT and INSERT INTO statements don't support LIMIT clause.")


def _check_supported(q: ast.Query) -> None:
    if q.window:
        raise UnsupportedError("windowed aggregations")
    if q.group_by:
        raise UnsupportedError("GROUP BY")
    if q.having is not None:
        raise UnsupportedError("HAVING")


def _contains_aggregate(e: ast.Expr) -> bool:
    from .functions import REGISTRY

    if isinstance(e, ast.FunctionCall):
        if e.name.upper() not in REGISTRY and e.name.upper() in {
            "COUNT",
            "SUM",
            "AVG",
            "MIN",
            "MAX",
            "COLLECT_LIST",
            "COLLECT_SET",
            "TOPK",
            "TOPKDISTINCT",
            "EARLIEST_BY_OFFSET",
            "LATEST_BY_OFFSET",
            "HISTOGRAM",
            "COUNT_DISTINCT",
            "STDDEV_SAMPLE",
            "STDDEV_SAMP",
            "CORRELATION",
            "ATTR",
        }:
            return True
        return any(_contains_aggregate(a) for a in e.args)
    for value in vars(e).values() if hasattr(e, "__dict__") else ():
        if isinstance(value, ast.Expr) and _contains_aggregate(value):
            return True
    return False


def _unqualified(e: ast.Expr) -> ast.Expr:
    """The expression with column qualifiers dropped (`I.ID` and `ID` name the same column here)."""
    import dataclasses

    if isinstance(e, ast.ColumnRef):
        return dataclasses.replace(e, source=None)  # keeps its position
    if dataclasses.is_dataclass(e):
        changes = {}
        for f in dataclasses.fields(e):
            v = getattr(e, f.name)
            if isinstance(v, ast.Expr):
                changes[f.name] = _unqualified(v)
            elif isinstance(v, tuple) and v and all(isinstance(x, ast.Expr) for x in v):
                changes[f.name] = tuple(_unqualified(x) for x in v)
        return dataclasses.replace(e, **changes) if changes else e
    return e


def _qualify(e: ast.Expr, source: str) -> ast.Expr:
    """Column references qualified with the source name, as ksqlDB prints partitioning expressions."""
    import dataclasses

    if isinstance(e, ast.ColumnRef):
        return ast.ColumnRef(e.name, source)
    if dataclasses.is_dataclass(e):
        changes = {}
        for f in dataclasses.fields(e):
            v = getattr(e, f.name)
            if isinstance(v, ast.Expr):
                changes[f.name] = _qualify(v, source)
            elif isinstance(v, tuple) and v and all(isinstance(x, ast.Expr) for x in v):
                changes[f.name] = tuple(_qualify(x, source) for x in v)
        return dataclasses.replace(e, **changes) if changes else e
    return e


@dataclass
class _KeySpec:
    name: str
    expr: ast.Expr  # what a select item must be to project this key


def plan_select(q: ast.Query, metastore: MetaStore, sink_name: str | None, new_planner: bool = False) -> ProjectionPlan:
    if q.joins:  # several sources: joins.py plans them
        from .joins import plan_join

        return plan_join(q, metastore, sink_name, new_planner)  # type: ignore[return-value]
    _check_supported(q)
    _check_clauses(q, persistent=sink_name is not None)
    source = metastore.require(q.source.name)
    if source.kind != "STREAM" and q.partition_by:
        raise UnsupportedError("PARTITION BY on a table")
    schema = source.schema
    scope = Scope(schema.row_columns(), [source.name, q.source.alias or ""])

    for item in q.select:
        if item.expr is not None and _contains_aggregate(item.expr):
            raise UnsupportedError("aggregate functions")

    from .aggregation import check_columns, check_qualifiers

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
                    bounds = [(n, ast.ColumnRef(n), None) for n in ("WINDOWSTART", "WINDOWEND")]
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
        from .formatter import format_expr as fmt

        texts = [fmt(_qualify(spec.expr, source.name)) for spec in key_specs]
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

    from .formatter import format_expr

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
):
    """Plan any SELECT: joins by joins.plan_join, aggregations (GROUP BY, WINDOW, aggregate functions) by
    aggregation.plan_aggregate, projections of a stream or a table by plan_select. `config` holds the
    statement's properties."""
    from .aggregation import is_aggregate_query, plan_aggregate

    if q.joins:  # several sources, aggregated or not: joins.py plans them
        from .joins import plan_join

        return plan_join(q, metastore, sink_name, new_planner, config)
    if is_aggregate_query(q):
        return plan_aggregate(q, metastore, sink_name, config)
    return plan_select(q, metastore, sink_name, new_planner)


def _column_names(e: ast.Expr) -> set[str]:
    import dataclasses

    if isinstance(e, ast.ColumnRef):
        return {e.name}
    names: set[str] = set()
    if dataclasses.is_dataclass(e):
        for f in dataclasses.fields(e):
            v = getattr(e, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            for x in vals:
                if isinstance(x, ast.Expr):
                    names |= _column_names(x)
                elif isinstance(x, (tuple, ast.WhenClause)):
                    for y in x if isinstance(x, tuple) else (x.condition, x.result):
                        if isinstance(y, ast.Expr):
                            names |= _column_names(y)
    return names
