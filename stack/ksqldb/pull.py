"""Pull queries: `SELECT ... FROM <table> [WHERE ...] [LIMIT n]` without EMIT, answered from the table's
materialised state, then done.

A table is queryable when a persistent query writes it (CREATE TABLE AS SELECT): the runtime keeps, in
that query's state stores, the latest row per key of everything the query produced
(`materialization.Materialization`, fed with the query's output records, so it works for any operator:
aggregations, windows, joins, projections of tables). The pull query reads the committed state, never a half-processed batch.

As in ksqlDB: key lookups when the WHERE clause fixes every key column (`=` or `IN` with literals, ANDed
with anything else, such as WINDOWSTART/WINDOWEND bounds on windowed tables), else a table scan, which
`ksql.query.pull.table.scan.enabled=false` turns into ksqlDB's errors. The WHERE clause is always
evaluated on the rows found, so a lookup only narrows what is read.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ast
from . import values as V
from .analysis import WINDOW_COLUMNS
from .errors import KsqlStatementError, UnsupportedError
from .expressions import Compiler, Scope
from .formats.coerce import coerce
from .formatter import format_expr, quote_ident
from .materialization import MATERIALIZED
from .metastore import DataSource, MetaStore
from .types import BIGINT, STRING, SqlType

SYNTAX_HELP = " See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query."
TABLE_SCAN = "ksql.query.pull.table.scan.enabled"


# ---------------------------------------------------------------- planning
@dataclass
class PullPlan:
    source: DataSource
    query_id: str  # the persistent query whose state holds the table
    names: list[str]
    types: list[SqlType]
    key_flags: list[bool]  # marked KEY in the header
    lookups: list[list[Any]] | None  # key values to read, None for a table scan
    where: Callable[[tuple], Any] | None
    projection: list[Callable[[tuple], Any]]
    limit: int | None

    @property
    def schema(self) -> str:
        return ", ".join(
            f"`{n}` {t}" + (" KEY" if k else "") for n, t, k in zip(self.names, self.types, self.key_flags)
        )


@dataclass
class PullResult:
    """What a pull query returns: the header and every row (JSON-ready values are the server's job)."""

    query_id: str
    names: list[str]
    types: list[str]
    schema: str
    rows: list[list[Any]]


def _error(message: str) -> KsqlStatementError:
    return KsqlStatementError(message + SYNTAX_HELP)


def _where_error(message: str, windowed: bool) -> KsqlStatementError:
    extra = (
        (
            "\n - (optionally) limits the time bounds of the windowed table.\n\t Bounds on [`WINDOWSTART`, "
            "`WINDOWEND`] are supported\n\t Supported operators are [EQUAL, GREATER_THAN, GREATER_THAN_OR_EQUAL, "
            "LESS_THAN, LESS_THAN_OR_EQUAL]"
        )
        if windowed
        else ""
    )
    return KsqlStatementError(
        f"{message}.{SYNTAX_HELP}\nPull queries require a WHERE clause that:\n"
        " - includes a key equality expression, e.g. `SELECT * FROM X WHERE <key-column> = Y;`.\n"
        " - in the case of a multi-column key, is a conjunction of equality expressions that cover all key columns."
        "\n - to support range expressions, e.g.,  SELECT * FROM X WHERE <key-column> < Y;`, range scans need to be "
        f"enabled by setting ksql.query.pull.range.scan.enabled=true{extra}\n"
        "If more flexible queries are needed, , table scans can be enabled by setting "
        "ksql.query.pull.table.scan.enabled=true."
    )


def _conjuncts(e: ast.Expr) -> list[ast.Expr]:
    """The terms of a WHERE clause's top-level ANDs."""
    if isinstance(e, ast.Logical) and e.op.upper() == "AND":
        return _conjuncts(e.left) + _conjuncts(e.right)
    return [e]


def _has_or(e: ast.Expr) -> bool:
    """An OR, or a NOT, among the WHERE clause's top-level AND/OR connectives (key lookups need neither)."""
    if isinstance(e, ast.Logical):
        return e.op.upper() == "OR" or _has_or(e.left) or _has_or(e.right)
    return isinstance(e, ast.Not)


def _columns(e: ast.Expr) -> list[str]:
    """The names of the columns `e` references, in order (lambda parameters included)."""
    return [ref.name for ref in e.find_all(ast.ColumnRef)]


def _window_literals(e: ast.Expr) -> ast.Expr:
    """WINDOWSTART/WINDOWEND compared with a string: the string is an ISO-8601 datetime (ksqlDB's rule)."""

    def fix(side: ast.Expr) -> ast.Expr:
        if isinstance(side, ast.Literal) and side.kind == "STRING":
            try:
                return ast.Literal(V.timestamp_to_millis(V.parse_timestamp(side.value)), "BIGINT")
            except ValueError:
                raise KsqlStatementError(f"Failed to parse datetime: {side.value}") from None
        return side

    if isinstance(e, ast.Logical):
        return ast.Logical(e.op, _window_literals(e.left), _window_literals(e.right))
    if isinstance(e, ast.Comparison):
        if isinstance(e.left, ast.ColumnRef) and e.left.name in WINDOW_COLUMNS:
            return ast.Comparison(e.op, e.left, fix(e.right))
        if isinstance(e.right, ast.ColumnRef) and e.right.name in WINDOW_COLUMNS:
            return ast.Comparison(e.op, fix(e.left), e.right)
    if isinstance(e, ast.Between) and isinstance(e.value, ast.ColumnRef) and e.value.name in WINDOW_COLUMNS:
        return ast.Between(e.value, fix(e.low), fix(e.high), e.negated)
    return e


def _constant(e: ast.Expr) -> tuple[Any, SqlType] | None:
    """The value of an expression without column references (a literal, -1, CAST(...)), else None."""
    if _columns(e):
        return None
    c = Compiler(Scope([]), "WHERE").compile(e)
    return c.fn(()), c.type


def _key_values(conjunct: ast.Expr, key_names: dict[str, SqlType]) -> tuple[str, list[Any]] | None:
    """(key column, its values) when the conjunct is `key = constant` or `key IN (constants)`."""
    if isinstance(conjunct, ast.Comparison) and conjunct.op == "=":
        for col, other in ((conjunct.left, conjunct.right), (conjunct.right, conjunct.left)):
            if isinstance(col, ast.ColumnRef) and col.name in key_names:
                found = _constant(other)
                if found is None:
                    return None
                return col.name, [_key_value(col.name, key_names[col.name], found, conjunct)]
    if (
        isinstance(conjunct, ast.InList)
        and not conjunct.negated
        and isinstance(conjunct.value, ast.ColumnRef)
        and conjunct.value.name in key_names
    ):
        name = conjunct.value.name
        found = [_constant(item) for item in conjunct.items]
        if any(f is None for f in found):
            return None
        return name, [_key_value(name, key_names[name], f, conjunct) for f in found if f is not None]
    return None


def _key_value(name: str, key_type: SqlType, found: tuple[Any, SqlType], where: ast.Expr) -> Any:
    value, value_type = found
    if value is None:
        raise KsqlStatementError(f"Primary key columns can not be NULL: ({format_expr(where)})")
    if (key_type == STRING) != (value_type == STRING):
        raise KsqlStatementError(
            f"Error in WHERE expression: Cannot compare {name} ({key_type}) to {format_expr_value(value)} "
            f"({value_type}) with EQUAL."
        )
    try:
        return coerce(value, key_type)
    except Exception:  # noqa: BLE001 - any coercion failure is the same user error
        raise KsqlStatementError(
            f"'{value}' can not be converted to the type of the key column: {name} {key_type} KEY"
        ) from None


def format_expr_value(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def plan_pull(
    q: ast.Query, metastore: MetaStore, running: Callable[[str], bool], properties: dict[str, Any]
) -> PullPlan:
    """Check a pull query as ksqlDB does and plan it: which keys to read (or a scan), WHERE, projection.
    `running(query_id)` says whether a persistent query is running (its state is the table's)."""
    for present, clause in (
        (q.joins, "JOIN"),
        (q.window, "WINDOW"),
        (q.group_by, "GROUP BY"),
        (q.partition_by, "PARTITION BY"),
        (q.having is not None, "HAVING"),
    ):
        if present:
            raise _error(f"Pull queries don't support {clause} clauses.")
    source = metastore.require(q.source.name)
    if source.kind != "TABLE":
        raise UnsupportedError("pull queries on streams")
    query_id = source.created_by
    if query_id is None or not running(query_id):
        name = source.name
        raise KsqlStatementError(
            f"The `{name}` table isn't queryable. To derive a queryable table, you can do "
            f"'CREATE TABLE QUERYABLE_{name} AS SELECT * FROM {name}'.{SYNTAX_HELP}"
        )
    windowed = source.window is not None
    schema = source.schema
    key_cols = [(c.name, c.type) for c in schema.key]
    window_cols = [(n, BIGINT) for n in WINDOW_COLUMNS] if windowed else []
    value_cols = [(c.name, c.type) for c in schema.value]
    row_cols = key_cols + window_cols + value_cols + [("ROWTIME", BIGINT)]
    scope = Scope(row_cols, [source.name, q.source.alias or ""])

    # ---- the projection
    for e in [item.expr for item in q.select if item.expr is not None]:
        bad = [c for c in _columns(e) if c in ("ROWPARTITION", "ROWOFFSET")]
        if bad:
            raise _error(f"Pull queries don't support the following columns in SELECT clauses: {', '.join(bad)}\n")
    names: list[str] = []
    types: list[SqlType] = []
    key_flags: list[bool] = []
    projection: list[Callable[[tuple], Any]] = []
    key_like = {n for n, _ in key_cols + window_cols}
    generated = 0
    aliases = {item.alias for item in q.select if item.alias}
    compiler = Compiler(scope, "SELECT")
    for item in q.select:
        if item.expr is None:
            if item.star_source not in (None, source.name, q.source.alias):
                raise KsqlStatementError(f"'{item.star_source}.*' cannot be resolved: unknown source")
            for i, (n, t) in enumerate(key_cols + window_cols + value_cols):
                names.append(n)
                types.append(t)
                key_flags.append(n in key_like)
                projection.append(lambda row, _i=i: row[_i])
            continue
        c = compiler.compile(item.expr)
        if item.alias:
            name = item.alias
        elif isinstance(item.expr, ast.ColumnRef):
            name = item.expr.name
        elif isinstance(item.expr, ast.Dereference):
            name = item.expr.field
        else:
            while f"KSQL_COL_{generated}" in aliases:
                generated += 1
            name = f"KSQL_COL_{generated}"
            generated += 1
        names.append(name)
        types.append(c.type)
        key_flags.append(isinstance(item.expr, ast.ColumnRef) and item.expr.name in key_like)
        projection.append(c.fn)

    # ---- WHERE: key lookups or a scan
    scans = str(properties.get(TABLE_SCAN, True)).strip().lower() != "false"
    where = None
    lookups: list[list[Any]] | None = None
    if q.where is None:
        if not scans:
            raise _error("Missing WHERE clause.")
    else:
        bad = [c for c in _columns(q.where) if c in ("ROWPARTITION", "ROWOFFSET")]
        if bad:
            raise _error(f"Pull queries don't support the following columns in WHERE clauses: {', '.join(bad)}\n")
        for c in _columns(q.where):
            if c in WINDOW_COLUMNS and not windowed:
                raise _where_error("Cannot use WINDOWSTART/WINDOWEND on non-windowed source", False)
        expr = _window_literals(q.where)
        keys: dict[str, list[Any]] = {}
        if not _has_or(expr):
            key_types = dict(key_cols)
            for conjunct in _conjuncts(expr):
                found = _key_values(conjunct, key_types)
                if found is not None and found[0] not in keys:
                    keys[found[0]] = found[1]
        where = Compiler(scope, "WHERE").compile_predicate(expr).fn
        if len(keys) == len(key_cols) and key_cols:
            lookups = [list(combo) for combo in itertools.product(*(keys[n] for n, _ in key_cols))]
        elif not scans:
            if keys:
                raise _where_error(
                    f"Multi-column sources must specify every key in the WHERE clause. Specified: "
                    f"[{', '.join(quote_ident(n) for n in keys)}] Expected: "
                    f"[{', '.join(f'{quote_ident(n)} {t} KEY' for n, t in key_cols)}]",
                    windowed,
                )
            raise _where_error(f"WHERE clause missing key column for disjunct: {format_expr(q.where)}", windowed)
    return PullPlan(source, query_id, names, types, key_flags, lookups, where, projection, q.limit)


# ---------------------------------------------------------------- running
class StateSource:
    """What `run_pull` reads: a query's committed state (`durable_state.StateReader`)."""

    def get(self, store: str, key: tuple) -> Any | None: ...

    def items(self, store: str) -> list[tuple[tuple, Any]]: ...

    def windows(self, store: str, key: tuple | None = None) -> list[tuple[tuple, int, int, Any]]: ...


def run_pull(plan: PullPlan, state: StateSource, key_serde: Any, value_serde: Any) -> PullResult:
    """Read the rows (lookups or a scan), keep those that pass WHERE, project, honour LIMIT."""
    windowed = plan.source.window is not None
    inner = key_serde.inner if windowed else key_serde
    found: list[tuple[bytes, int | None, int | None, Any]] = []
    if plan.lookups is not None:
        for keys in plan.lookups:
            raw = inner.serialize(keys)
            if windowed:
                found += [(raw, s, e, v) for _, s, e, v in state.windows(MATERIALIZED, (raw,))]
            else:
                entry = state.get(MATERIALIZED, (raw,))
                if entry is not None:
                    found.append((raw, None, None, entry))
    elif windowed:
        found = [(k[0], s, e, v) for k, s, e, v in state.windows(MATERIALIZED)]
    else:
        found = [(k[0], None, None, v) for k, v in state.items(MATERIALIZED)]
    rows: list[list[Any]] = []
    for raw_key, start, end, (raw_value, ts) in found:
        if plan.limit is not None and len(rows) >= plan.limit:
            break
        keys = inner.deserialize(raw_key) if inner.columns else []
        values = value_serde.deserialize(raw_value)
        row = tuple(list(keys or []) + ([start, end] if windowed else []) + list(values or []) + [ts])
        if plan.where is not None and plan.where(row) is not True:
            continue
        rows.append([fn(row) for fn in plan.projection])
    return PullResult(f"query_{int(time.time() * 1000)}", plan.names, [str(t) for t in plan.types], plan.schema, rows)
