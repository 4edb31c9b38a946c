"""Plan a SELECT over a stream: resolve the source, compile WHERE and the projection, derive the
output schema (key columns must be projected, as ksqlDB requires for streams)."""

from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .errors import KsqlStatementError, UnsupportedError
from .expressions import Compiled, Compiler, ErrorSink, Scope
from .formatter import quote_ident
from .metastore import Column, DataSource, LogicalSchema, MetaStore
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


def _check_supported(q: ast.Query) -> None:
    if q.joins:
        raise UnsupportedError("joins")
    if q.window:
        raise UnsupportedError("windowed aggregations")
    if q.group_by:
        raise UnsupportedError("GROUP BY")
    if q.partition_by:
        raise UnsupportedError("PARTITION BY")
    if q.having is not None:
        raise UnsupportedError("HAVING")


def _contains_aggregate(e: ast.Expr) -> bool:
    from .functions import REGISTRY

    if isinstance(e, ast.FunctionCall):
        if e.name.upper() not in REGISTRY and e.name.upper() in {
            "COUNT", "SUM", "AVG", "MIN", "MAX", "COLLECT_LIST", "COLLECT_SET", "TOPK", "TOPKDISTINCT",
            "EARLIEST_BY_OFFSET", "LATEST_BY_OFFSET", "HISTOGRAM", "COUNT_DISTINCT", "STDDEV_SAMPLE",
            "STDDEV_SAMP", "CORRELATION", "ATTR",
        }:
            return True
        return any(_contains_aggregate(a) for a in e.args)
    for value in vars(e).values() if hasattr(e, "__dict__") else ():
        if isinstance(value, ast.Expr) and _contains_aggregate(value):
            return True
    return False


def plan_select(q: ast.Query, metastore: MetaStore, sink_name: str | None, new_planner: bool = False) -> ProjectionPlan:
    _check_supported(q)
    source = metastore.require(q.source.name)
    if source.kind != "STREAM":
        raise UnsupportedError("queries over tables")
    schema = source.schema
    scope = Scope(schema.row_columns(), [source.name, q.source.alias or ""])

    for item in q.select:
        if item.expr is not None and _contains_aggregate(item.expr):
            raise UnsupportedError("aggregate functions")

    errors = ErrorSink()
    where = Compiler(scope, "WHERE", errors).compile_predicate(q.where) if q.where is not None else None

    compiler = Compiler(scope, "SELECT", errors)
    items: list[tuple[str, ast.Expr | None, Compiled]] = []
    used_names: set[str] = set()
    generated = 0

    def next_generated() -> str:
        nonlocal generated
        while f"KSQL_COL_{generated}" in used_names or any(
            i.alias == f"KSQL_COL_{generated}" for i in q.select
        ):
            generated += 1
        name = f"KSQL_COL_{generated}"
        generated += 1
        return name

    row_columns = schema.row_columns()
    for item in q.select:
        if item.is_star:
            if item.star_source is not None and item.star_source not in (source.name, q.source.alias):
                raise KsqlStatementError(f"'{item.star_source}.*' cannot be resolved: unknown source")
            for i, col in enumerate(list(schema.key) + list(schema.value)):
                ref = ast.ColumnRef(col.name)
                items.append((col.name, ref, compiler.compile(ref)))
                used_names.add(col.name)
            continue
        expr = item.expr
        assert expr is not None
        compiled = compiler.compile(expr)
        if isinstance(compiled.type, NullType):
            raise KsqlStatementError(
                "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR).")
        if item.alias:
            name = item.alias
        elif isinstance(expr, ast.ColumnRef):
            name = expr.name
        elif isinstance(expr, ast.Dereference):
            name = expr.field
        else:
            name = next_generated()
        items.append((name, expr, compiled))
        used_names.add(name)
    _ = row_columns

    # ---- key columns: streams without PARTITION BY keep the source key, which must be projected.
    key_positions: list[int] = []
    if schema.key:
        missing = []
        for kc in schema.key:
            refs = [i for i, (_, e, _) in enumerate(items)
                    if isinstance(e, ast.ColumnRef) and e.name == kc.name]
            if not refs:
                missing.append(kc.name)
            elif len(refs) > 1:
                names = [items[i][0] for i in refs]
                raise KsqlStatementError(
                    f"The projection contains a key column (`{kc.name}`) "
                    f"more than once, aliased as: {' and '.join(names)}.")
            else:
                key_positions.append(refs[0])
        if missing and not new_planner:
            sink = f"`{sink_name}`" if sink_name else "the sink"
            keys = [kc.name for kc in schema.key]
            if len(keys) == 1:
                raise KsqlStatementError(
                    f"The query used to build {sink} must include the key column {keys[0]} in its projection "
                    f"(eg, SELECT {keys[0]}...).")
            raise KsqlStatementError(
                f"The query used to build {sink} must include the key columns {', '.join(keys[:-1])} and "
                f"{keys[-1]} in its projection (eg, SELECT {', '.join(keys)}...).")
        if missing and len(missing) != len(schema.key):
            raise UnsupportedError("new query planner with only some key columns projected")
        if missing:
            key_positions = []  # the new planner makes the result keyless
        elif new_planner:
            key_positions.sort()  # the new planner keeps the projection's order of key columns

    key_cols: list[Column] = []
    key_exprs: list[Compiled] = []
    value_cols: list[Column] = []
    value_exprs: list[Compiled] = []
    value_texts: list[str] = []
    for i in key_positions:
        name, _, c = items[i]
        key_cols.append(Column(name, c.type, key=True))
        key_exprs.append(c)
    from .formatter import format_expr

    for i, (name, expr, c) in enumerate(items):
        if i in key_positions:
            continue
        value_cols.append(Column(name, c.type))
        value_exprs.append(c)
        value_texts.append(format_expr(expr) if expr is not None else name)
    if not value_cols and sink_name is not None:
        raise KsqlStatementError("The projection contains no value columns.")
    seen: set[str] = set()
    for col in key_cols + value_cols:
        if col.name in seen:
            raise KsqlStatementError(f"The projection contains the column `{col.name}` more than once.")
        seen.add(col.name)
    out = LogicalSchema(tuple(key_cols), tuple(value_cols))
    return ProjectionPlan(source, out, where, key_exprs, value_exprs, value_texts, q.limit, errors)
