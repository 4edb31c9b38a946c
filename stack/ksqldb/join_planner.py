"""Planning joins as ksqlDB does: the sides and their aliases, the join key of each binary join and whether
a side is re-keyed (an implicit repartition), the joined row's layout, the result's schema and key, and
ksqlDB's checks and messages. The result is a `joins.JoinPlan`, which joins.py runs.

Every expression (ON, WHERE, SELECT, PARTITION BY) is compiled once against the joined row (`JoinScope`).
GROUP BY over a join is planned by aggregate_planner.py over a virtual source whose row is the joined row
(`_plan_aggregate`).
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import ast
from .aggregate_planner import plan_aggregate
from .analysis import WINDOW_COLUMNS, check_clauses, check_columns, is_aggregate_query
from .errors import KsqlStatementError, UnsupportedError
from .expressions import Compiled, Compiler, ErrorSink, Scope
from .formatter import format_expr
from .joins import KEY_SLOT, SOURCES_START, JoinInput, JoinPlan, JoinStep, JoinWindow
from .metastore import RESERVED, Column, DataSource, LogicalSchema, MetaStore, check_projection, projection_order
from .types import BIGINT, INTEGER, NULL, NullType, SqlType, contains_map
from .windows import parse_duration

N = TypeVar("N", bound=ast.Node)

_JOIN_TEXT = {
    "INNER": "[INNER] JOIN",
    "LEFT": "LEFT [OUTER] JOIN",
    "RIGHT": "RIGHT [OUTER] JOIN",
    "FULL": "[FULL] OUTER JOIN",
}
#: Kafka Streams' grace for join windows made without one (JoinWindows.of): 24 hours minus the window.
_LEGACY_GRACE_MS = 24 * 3_600_000


# ---------------------------------------------------------------- scope
class JoinScope(Scope):
    """Columns of a join query: `alias.column` for any source, a bare column name when exactly one source
    has it, the result's pseudo columns, and the synthetic key column when the result has one."""

    def __init__(self, inputs: Sequence[JoinInput], width: int, synthetic: tuple[str, SqlType] | None = None) -> None:
        super().__init__([])
        self.size = width
        self.by_alias: dict[str, dict[str, tuple[int, SqlType]]] = {}
        owners: dict[str, list[str]] = {}
        for inp in inputs:
            cols = self.by_alias[inp.alias] = {}
            for j, (name, t) in enumerate(inp.source.schema.row_columns()):
                cols[name] = (inp.offset + j, t)
                owners.setdefault(name, []).append(inp.alias)
        self.owners = owners
        self.synthetic = synthetic
        self.source_names = set(self.by_alias)
        # what a bare name means (lambdas copy this map)
        self.columns = {"ROWTIME": (0, BIGINT), "ROWPARTITION": (1, INTEGER), "ROWOFFSET": (2, BIGINT)}
        for name, aliases in owners.items():
            if len(aliases) == 1 and name not in RESERVED:
                self.columns[name] = self.by_alias[aliases[0]][name]
        if synthetic is not None:
            self.columns[synthetic[0]] = (KEY_SLOT, synthetic[1])

    def resolve(self, ref: ast.ColumnRef) -> tuple[str | None, str] | None:
        """(alias, column) of a source column, (None, name) of a result column, None if unknown."""
        if ref.source is not None:
            if ref.source not in self.by_alias:
                raise KsqlStatementError(
                    f"Failed to prepare statement: '{ref.source}' is not a valid stream/table name or alias."
                )
            return (ref.source, ref.name) if ref.name in self.by_alias[ref.source] else None
        if (self.synthetic is not None and ref.name == self.synthetic[0]) or ref.name in RESERVED:
            return (None, ref.name)
        aliases = self.owners.get(ref.name, [])
        if len(aliases) > 1:
            options = [f"{a}.{ref.name}" for a in aliases]
            # ksqlDB finds these while preparing the statement, before analysing it
            raise KsqlStatementError(
                f"Exception while preparing statement: {ast.at(ref)}Column '{ref.name}' is ambiguous. "
                f"Could be {', '.join(options[:-1])} or {options[-1]}."
            )
        return (aliases[0], ref.name) if aliases else None

    def lookup(self, ref: ast.ColumnRef) -> tuple[int, SqlType] | None:
        found = self.resolve(ref)
        if found is None:
            return None
        alias, name = found
        return self.columns[name] if alias is None else self.by_alias[alias][name]

    def canonical(self, e: ast.Expr) -> ast.Expr:
        """The expression with every source column qualified by its alias (how ksqlDB prints and compares)."""

        def qualify(ref: ast.ColumnRef) -> ast.Expr:
            found = self.resolve(ref)
            if found is not None and found[0] is not None:
                return dataclasses.replace(ref, name=found[1], source=found[0])
            return ref

        return _map_refs(e, qualify)


def _map_refs(node: N, fn: Callable[[ast.ColumnRef], ast.Expr]) -> N:
    """`node` with `fn` applied to its column references, except inside lambdas (their parameters shadow
    columns)."""

    def visit(x: ast.Node) -> ast.Node | None:
        if isinstance(x, ast.ColumnRef):
            return fn(x)
        return x if isinstance(x, ast.Lambda) else None

    return node.transform(visit)


def _column_refs(exprs: Iterable[ast.Expr | None]) -> list[ast.ColumnRef]:
    """The column references of `exprs`, in order, except inside lambdas."""
    return [ref for e in exprs if e is not None for ref in e.find_all(ast.ColumnRef, prune=_is_lambda)]


def _is_lambda(node: ast.Node) -> bool:
    return isinstance(node, ast.Lambda)


# ---------------------------------------------------------------- planning
def parse_within(text: str) -> JoinWindow:
    """'1 MINUTE', '(11 SECONDS, 10 SECONDS)' and either with 'GRACE PERIOD 1 MINUTE' (as the parser
    hands WITHIN over: parts joined with ', ')."""
    parts = [p.strip() for p in text.split(",")]
    grace = None
    m = re.fullmatch(r"(.*?)\s*GRACE\s+PERIOD\s+(.+)", parts[-1], re.I)
    if m:
        grace = _duration(m.group(2))
        parts[-1] = m.group(1).strip()
        if not parts[-1]:
            parts.pop()
    if len(parts) == 1:
        before = after = _duration(parts[0])
    elif len(parts) == 2:
        before, after = _duration(parts[0]), _duration(parts[1])
    else:
        raise KsqlStatementError(f"Invalid WITHIN clause: {text}. Expected one size, or (before, after).")
    if grace is None:
        return JoinWindow(before, after, max(_LEGACY_GRACE_MS - 2 * before, 0), False)
    return JoinWindow(before, after, grace, True)


def _duration(text: str) -> int:
    return parse_duration(text, "WITHIN duration")


def _kind(join_type: str) -> str:
    return join_type.split()[0].upper()


def _synthetic_name(inputs: Sequence[JoinInput]) -> str:
    """ROWKEY, or ROWKEY_n for the smallest n no source column is called (ksqlDB's synthetic key name)."""
    taken = {c.name for i in inputs for c in i.source.schema.key + i.source.schema.value + i.source.schema.headers}
    name, n = "ROWKEY", 0
    while name in taken:
        n += 1
        name = f"ROWKEY_{n}"
    return name


def _single_key(inp: JoinInput) -> ast.ColumnRef | None:
    key = inp.source.schema.key
    return ast.ColumnRef(key[0].name, inp.alias) if len(key) == 1 else None


def plan_join(
    q: ast.Query,
    metastore: MetaStore,
    sink_name: str | None,
    new_planner: bool = False,
    config: dict[str, Any] | None = None,
) -> JoinPlan:
    aggregate = is_aggregate_query(q)
    if not aggregate:
        check_clauses(q, persistent=sink_name is not None)
    inputs = _inputs(q, metastore)
    width = inputs[-1].offset + inputs[-1].width
    known = {i.alias for i in inputs}
    exprs = [i.expr for i in q.select] + [j.on for j in q.joins] + [q.where, *q.partition_by, *q.group_by, q.having]
    for ref in _column_refs(exprs):
        if ref.source is not None and ref.source not in known:
            raise KsqlStatementError(
                f"Failed to prepare statement: '{ref.source}' is not a valid stream/table name or alias."
            )
    errors = ErrorSink()

    scope = JoinScope(inputs, width)
    for ref in _column_refs(exprs):
        if ref.source is None:
            scope.resolve(ref)  # ambiguous columns first: ksqlDB finds them while preparing the statement
    first = inputs[0]
    chain = _Chain(
        first.source.kind,
        [k for k in [_single_key(first)] if k is not None],
        (first.alias, first.source.topic),
        first.source.schema.key[0].type if len(first.source.schema.key) == 1 else NULL,
    )
    steps = [_plan_step(join, inputs, k + 1, scope, chain, errors) for k, join in enumerate(q.joins)]

    synthetic_key = (_synthetic_name(inputs), chain.key_type) if chain.synthetic else None
    scope = JoinScope(inputs, width, synthetic_key)
    _check_columns(q, scope)
    if aggregate:
        plan = _plan_aggregate(q, scope, inputs, chain, sink_name, config)
        plan.steps, plan.errors, plan.copartitioned = steps, errors, chain.copartitioned
        return plan
    projection = _plan_projection(q, scope, inputs, chain.candidates, synthetic_key, sink_name, errors)
    where = Compiler(scope, "WHERE", errors).compile_predicate(q.where) if q.where is not None else None
    if q.partition_by and chain.kind == "TABLE":
        raise UnsupportedError("PARTITION BY on a table")
    schema, key_exprs, value_exprs, value_texts, order = projection
    if inputs[0].source.window is not None:
        if q.partition_by:
            raise KsqlStatementError(
                "Implicit repartitioning of windowed sources is not supported. "
                "See https://github.com/confluentinc/ksql/issues/4385."
            )
        key_exprs = _with_window_bounds(key_exprs, inputs)
    return JoinPlan(
        inputs,
        steps,
        width,
        schema,
        where,
        key_exprs,
        value_exprs,
        value_texts,
        bool(q.partition_by),
        chain.kind,
        errors,
        q.limit,
        chain.copartitioned,
        projection_order=order,
    )


@dataclass
class _Chain:
    """The join result so far, as the next step sees its left side."""

    kind: str  # STREAM / TABLE
    candidates: list[ast.Expr]  # the column references equal to its key (none when the key is synthetic)
    partitioned_like: tuple[str, str] | None  # (name, topic) it is partitioned as, unless it was re-keyed
    key_type: SqlType
    synthetic: bool = False
    copartitioned: list[tuple[str, str, str, str]] = field(default_factory=list)


def _plan_step(
    join: ast.Join, inputs: list[JoinInput], index: int, scope: JoinScope, chain: _Chain, errors: ErrorSink
) -> JoinStep:
    """Analyse one JOIN ... ON of the chain (ksqlDB's checks and messages) and advance `chain`."""
    right = inputs[index]
    kind = _kind(join.kind)
    (left_expr, left_alias), (right_expr, _) = _join_sides(join.on, right, scope)
    compiler = Compiler(scope, "JOIN ON", errors)
    lc, rc = compiler.compile(left_expr), compiler.compile(right_expr)
    lcanon, rcanon = scope.canonical(left_expr), scope.canonical(right_expr)
    if lc.type != rc.type:
        raise KsqlStatementError(
            f"Invalid join condition: types don't match. Got {format_expr(lcanon)}{{{lc.type}}} = "
            f"{format_expr(rcanon)}{{{rc.type}}}."
        )
    got = f"Got {left_alias} {_JOIN_TEXT[kind]} {right.alias}."
    left_kind, right_kind = chain.kind, right.source.kind
    if left_kind == "TABLE" and right_kind == "STREAM":
        raise KsqlStatementError(
            f"Invalid join order: table-stream joins are not supported; only stream-table joins. {got}"
        )
    window = None
    if left_kind == "STREAM" and right_kind == "STREAM":
        if join.within is None:
            raise KsqlStatementError(
                "Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn about how "
                "to specify a WITHIN clause with a stream-stream join, please visit: "
                "https://docs.confluent.io/current/ksql/docs/syntax-reference.html#create-stream-as-select"
            )
        window = parse_within(join.within)
    elif join.within is not None:
        what = "Stream-Table" if left_kind == "STREAM" else "Table-Table"
        raise KsqlStatementError(
            f"A window definition was provided for a {what} join. These joins are not windowed. Please drop the "
            "window definition (ie. the WITHIN clause) and try to execute your join again."
        )
    if left_kind == "STREAM" and right_kind == "TABLE" and kind in ("RIGHT", "FULL"):
        what = "full-outer" if kind == "FULL" else "right-outer"
        raise KsqlStatementError(f"Invalid join type: {what} join not supported for stream-table join. {got}")
    right_keyed = rcanon == _single_key(right)
    if right_kind == "TABLE" and not right_keyed:
        what = (
            "stream-table joins require to join on the table's primary key"
            if left_kind == "STREAM"
            else "table-table joins require to join on the primary key of the right input table"
        )
        raise KsqlStatementError(f"Invalid join condition: {what}. Got {format_expr(lcanon)} = {format_expr(rcanon)}.")
    left_keyed = lcanon in chain.candidates
    foreign_key = left_kind == "TABLE" and not left_keyed
    if foreign_key and kind not in ("INNER", "LEFT"):
        what = "full-outer" if kind == "FULL" else "right-outer"
        raise KsqlStatementError(
            f"Invalid join type: {what} join not supported for foreign-key table-table join. {got}"
        )
    if right.source.window is not None:
        if not (left_keyed and right_keyed) or len({i.source.window for i in inputs[: index + 1]}) > 1:
            raise KsqlStatementError(
                "Implicit repartitioning of windowed sources is not supported. "
                "See https://github.com/confluentinc/ksql/issues/4385."
            )
        if index > 1:
            raise UnsupportedError("multi-way joins of windowed sources")
        # windowed keys match when their bytes do: the key and the window start (and end, for sessions)
        lc, rc = _windowed_key(lc, inputs[0]), _windowed_key(rc, right)
    if contains_map(lc.type):
        name = f"{lcanon.source}_{lcanon.name}" if isinstance(lcanon, ast.ColumnRef) else _synthetic_name(inputs)
        raise KsqlStatementError(
            "Map keys, including types that contain maps, are not supported as they may lead to unexpected "
            f"behavior due to inconsistent serialization. Key column name: `{name}`. Column type: {lc.type}. "
            "See https://github.com/confluentinc/ksql/issues/6621 for more."
        )

    # ---- what the result is keyed and partitioned by
    if left_keyed and right_keyed and chain.partitioned_like is not None:
        chain.copartitioned.append((*chain.partitioned_like, right.alias, right.source.topic))
    if not left_keyed and not foreign_key:  # the left is re-keyed: its repartition takes the right's count
        chain.partitioned_like = (right.alias, right.source.topic) if right_keyed else None
    if foreign_key:  # the result keeps the left table's key
        chain.synthetic = False
    else:
        chain.synthetic = kind == "FULL" or not (isinstance(lcanon, ast.ColumnRef) or isinstance(rcanon, ast.ColumnRef))
        chain.key_type = lc.type
        candidates: list[ast.Expr] = []
        if not chain.synthetic:
            if isinstance(lcanon, ast.ColumnRef):
                candidates += chain.candidates if left_keyed else [lcanon]
            if isinstance(rcanon, ast.ColumnRef):
                candidates.append(rcanon)
        chain.candidates = candidates
    chain.kind = "TABLE" if left_kind == right_kind == "TABLE" else "STREAM"
    op = (
        {"STREAM": "stream-stream", "TABLE": "stream-table"}[right_kind]
        if left_kind == "STREAM"
        else "foreign-key"
        if foreign_key
        else "table-table"
    )
    return JoinStep(kind, right, lc, rc, left_keyed, right_keyed, window, chain.kind, op)


def _check_columns(q: ast.Query, scope: JoinScope) -> None:
    """After the JOIN ON criteria, ksqlDB resolves the other clauses' columns in this order, before it plans
    the projection. Window bounds are left to the aggregation, which knows whether the result is windowed,
    and, as in ksqlDB, a projected name that could be a synthetic join key to the projection's checks."""

    def skip(clause: str, ref: ast.ColumnRef) -> bool:
        return ref.name in WINDOW_COLUMNS or (
            clause == "SELECT" and ref.source is None and ref.name.startswith("ROWKEY")
        )

    check_columns(
        [
            ("WHERE", [q.where]),
            ("GROUP BY", q.group_by),
            ("PARTITION BY", q.partition_by),
            ("HAVING", [q.having]),
            ("SELECT", [item.expr for item in q.select]),
        ],
        scope,
        skip,
    )


def _join_sides(on: ast.Expr, right: JoinInput, scope: JoinScope) -> list[tuple[ast.Expr, str]]:
    """The ON expression's two sides as (expression, source alias): the earlier sources' side first. The
    checks and messages are those of ksqlDB's Analyzer, in its order."""
    shown = format_expr(scope.canonical(on))
    if not _is_equality(on):
        if isinstance(on, ast.Logical) and on.op == "AND" and _is_equality(on.left) and _is_equality(on.right):
            raise KsqlStatementError(
                f"Invalid join condition: joins on multiple conditions are not yet supported. Got {shown}."
            )
        if isinstance(on, ast.Comparison):
            raise KsqlStatementError("Only equality join criteria is supported.")
        raise KsqlStatementError(f"Unsupported join expression: {shown}")
    assert isinstance(on, ast.Comparison)
    compiler = Compiler(scope, "JOIN ON")
    for side in (on.left, on.right):
        compiler.compile(side)  # unknown and ambiguous columns first, as ksqlDB reports them
    sides = []
    for side in (on.left, on.right):
        owners = {r.source for r in _column_refs([scope.canonical(side)]) if r.source is not None}
        if len(owners) != 1:
            raise KsqlStatementError(
                f"Invalid comparison expression '{format_expr(scope.canonical(side))}' in join "
                f"'{shown}'. Each side of the join comparision must contain references from exactly one source."
            )
        sides.append((side, owners.pop()))
    (_, left_source), (_, right_source) = sides
    if left_source == right_source:
        raise KsqlStatementError(
            "Each side of the join must reference exactly one source and not the same source. "
            f"Left side references {left_source} and right references {right_source}"
        )
    if right.alias not in (left_source, right_source):
        raise KsqlStatementError(
            f"A join criteria is expected to reference the source ({right.alias}) in the FROM clause, instead the "
            f"right source references {right_source} and the left source references {left_source}"
        )
    if sides[0][1] == right.alias:
        sides.reverse()
    return sides


def _is_equality(e: ast.Expr) -> bool:
    return isinstance(e, ast.Comparison) and e.op == "="


def _plan_aggregate(
    q: ast.Query,
    scope: JoinScope,
    inputs: list[JoinInput],
    chain: _Chain,
    sink_name: str | None,
    config: dict[str, Any] | None,
) -> JoinPlan:
    """GROUP BY over a join: aggregate_planner.plan_aggregate plans the query over a virtual source whose row
    layout is the joined row's: the join key as its key column, then every source column, named as ksqlDB
    names join columns (`ALIAS_COLUMN` when several sources have the column, else the column's name)."""
    if any(item.is_star for item in q.select):
        raise UnsupportedError("SELECT * with GROUP BY over a join")
    for ref in _column_refs(i.expr for i in q.select):
        if ref.source is None and ref.name in WINDOW_COLUMNS and scope.resolve(ref) is None:
            raise KsqlStatementError(f"{ast.at(ref)}SELECT column '{ref.name}' cannot be resolved.")  # as ksqlDB
    names: dict[tuple[str, str], str] = {}
    columns = []
    for inp in inputs:
        for name, t in inp.source.schema.row_columns():
            shared = len(scope.owners[name]) > 1 or name in RESERVED
            names[(inp.alias, name)] = f"{inp.alias}_{name}" if shared else name
            columns.append(Column(names[(inp.alias, name)], t))
    key_name = _synthetic_name(inputs)
    first = inputs[0].source
    virtual = DataSource(
        first.name,
        chain.kind,
        LogicalSchema((Column(key_name, chain.key_type, key=True),), tuple(columns)),
        topic="",
        key_format=first.key_format,
        value_format=first.value_format,
    )

    def rename(ref: ast.ColumnRef) -> ast.Expr:
        found = scope.resolve(ref)
        if found is None:  # a window bound (unknown columns were refused before): of the virtual source
            return dataclasses.replace(ref, source=first.name) if ref.source is not None else ref
        alias, name = found
        if alias is None:
            if scope.synthetic is not None and name == scope.synthetic[0]:
                return dataclasses.replace(ref, name=key_name)
            return ref
        return dataclasses.replace(ref, name=names[(alias, name)], source=None)

    renamed = dataclasses.replace(
        q,
        source=ast.Relation(first.name),
        joins=(),
        select=tuple(_map_refs(i, rename) for i in q.select),
        where=_map_refs(q.where, rename) if q.where is not None else None,
        group_by=tuple(_map_refs(g, rename) for g in q.group_by),
        having=_map_refs(q.having, rename) if q.having is not None else None,
    )
    metastore = MetaStore()
    metastore.add(virtual)
    aggregate = plan_aggregate(renamed, metastore, sink_name, config)
    return JoinPlan(
        inputs,
        [],
        scope.size,
        aggregate.schema,
        None,
        [],
        [],
        [],
        False,
        aggregate.result_kind,
        ErrorSink(),
        q.limit,
        aggregate=aggregate,
    )


def _window_start(inp: JoinInput) -> int:
    """Where a windowed source's WINDOWSTART sits in the joined row (WINDOWEND follows)."""
    return inp.offset + 3 + len(inp.source.schema.key)


def _windowed_key(c: Compiled, inp: JoinInput) -> Compiled:
    start, fn, session = _window_start(inp), c.fn, inp.source.window.is_session

    def key(row: list) -> Any:
        value = fn(row)
        if value is None:
            return None
        return (value, row[start], row[start + 1]) if session else (value, row[start])

    return Compiled(c.type, key)


def _with_window_bounds(key_exprs: list[Compiled], inputs: list[JoinInput]) -> list[Compiled]:
    """Key expressions of a join of windowed sources: the key (first part of the joined key), then the
    window of the side that is there, so that the windowed sink key serde writes it."""
    left, right = _window_start(inputs[0]), _window_start(inputs[1])

    def part(c: Compiled) -> Compiled:
        fn = c.fn
        return Compiled(c.type, lambda row: None if fn(row) is None else fn(row)[0])

    def bound(i: int) -> Compiled:
        return Compiled(BIGINT, lambda row: row[left + i] if row[left + i] is not None else row[right + i])

    return [part(c) for c in key_exprs] + [bound(0), bound(1)]


def _inputs(q: ast.Query, metastore: MetaStore) -> list[JoinInput]:
    inputs: list[JoinInput] = []
    offset = SOURCES_START
    for rel in [q.source] + [j.right for j in q.joins]:
        src = metastore.require(rel.name)
        if any(i.source.name == src.name for i in inputs):
            raise KsqlStatementError(f"Can not join '{src.name}' to '{src.name}': self joins are not yet supported.")
        alias = rel.alias or rel.name
        if any(i.alias == alias for i in inputs):
            raise KsqlStatementError(f"'{alias}' is used as the name of more than one source in the join.")
        width = len(src.schema.row_columns())
        inputs.append(JoinInput(src, alias, offset, width))
        offset += width
    kafka = [i.source.name for i in inputs if i.source.value_format.name == "KAFKA"]
    if kafka:
        raise KsqlStatementError(
            f"Source(s) {', '.join(kafka)} are using the 'KAFKA' value format. This format does not yet support JOIN."
        )
    windows = [i.source.window for i in inputs]
    if any(w is not None for w in windows) and any(w is None for w in windows):
        raise KsqlStatementError(
            "Can not join windowed source to non-windowed source.\n"
            + "\n".join(
                f"`{i.source.name}` is {'not' if i.source.window is None else i.source.window.type} windowed"
                for i in inputs
            )
        )
    if len({w.is_session for w in windows if w is not None}) > 1:
        raise KsqlStatementError(
            "Incompatible windowed sources.\n"
            + "\n".join(f"{side} source: {i.source.window.type}" for side, i in zip(("Left", "Right"), inputs))
            + "\nSession windowed sources can only be joined to other session windowed sources, and may still not "
            "result in expected behaviour as session bounds must be an exact match for the join to work\n"
            "Hopping and tumbling windowed sources can only be joined to other hopping and tumbling windowed sources"
        )
    return inputs


def _plan_projection(
    q: ast.Query,
    scope: JoinScope,
    inputs: list[JoinInput],
    candidates: list[ast.Expr],
    synthetic: tuple[str, SqlType] | None,
    sink_name: str | None,
    errors: ErrorSink,
) -> tuple[LogicalSchema, list[Compiled], list[Compiled], list[str], list[int]]:
    """The result's key and value columns, with ksqlDB's names: a source column selected with its
    qualifier is `ALIAS_COLUMN` when several sources have a column of that name, `*` always names columns
    `ALIAS_COLUMN`, and the key is the join key (or the PARTITION BY expressions)."""
    compiler = Compiler(scope, "SELECT", errors)
    aliases = {i.alias for i in q.select if i.alias}
    common = {name for name, owners in scope.owners.items() if len(owners) > 1}
    generated = 0

    def next_generated() -> str:
        nonlocal generated
        while f"KSQL_COL_{generated}" in aliases:
            generated += 1
        generated += 1
        return f"KSQL_COL_{generated - 1}"

    def natural_name(expr: ast.Expr, canon: ast.Expr, joined: bool = False) -> str:
        if isinstance(canon, ast.ColumnRef):
            if canon.source is not None and (
                joined or (isinstance(expr, ast.ColumnRef) and expr.source is not None and canon.name in common)
            ):
                return f"{canon.source}_{canon.name}"
            return canon.name
        if isinstance(expr, ast.Dereference):
            return expr.field
        return next_generated()

    # ---- what the key is: PARTITION BY expressions, else the join key
    key_specs: list[tuple[str, ast.Expr]] = []
    for p in q.partition_by:
        if isinstance(p, ast.Literal) and p.kind == "NULL":
            raise UnsupportedError("PARTITION BY NULL over a join")
        c = Compiler(scope, "PARTITION BY", errors).compile(p)
        if isinstance(c.type, NullType):
            raise KsqlStatementError("Can't infer a type of null in PARTITION BY.")
        canon = scope.canonical(p)
        key_specs.append((natural_name(p, canon, joined=True), canon))
    partitioned = bool(key_specs)
    partition_refs = {e for _, e in key_specs if isinstance(e, ast.ColumnRef)}

    def star(inp: JoinInput) -> list[ast.ColumnRef]:
        schema = inp.source.schema
        if partitioned:  # after a repartition every source column is a value column: values, pseudo, keys
            cols = (
                [c.name for c in schema.value + schema.headers]
                + sorted(RESERVED, key=_PSEUDO_ORDER.index)
                + [c.name for c in schema.key]
            )
        else:
            bounds = list(WINDOW_COLUMNS) if schema.windowed else []
            cols = [c.name for c in schema.key] + bounds + [c.name for c in schema.value + schema.headers]
        return [ast.ColumnRef(n, inp.alias) for n in cols if ast.ColumnRef(n, inp.alias) not in partition_refs]

    items: list[tuple[str, ast.Expr, ast.Expr]] = []  # (name, expression as written, canonical expression)
    for item in q.select:
        if item.is_star:
            if item.star_source is None:
                expanded = (
                    [(n, e) for n, e in key_specs]
                    if partitioned
                    else ([(synthetic[0], ast.ColumnRef(synthetic[0]))] if synthetic is not None else [])
                )
                expanded += [(f"{r.source}_{r.name}", r) for inp in inputs for r in star(inp)]
            else:
                inp = next((i for i in inputs if i.alias == item.star_source), None)
                if inp is None:
                    raise KsqlStatementError(
                        f"Failed to prepare statement: '{item.star_source}' is not a valid stream/table name or alias."
                    )
                expanded = [(f"{r.source}_{r.name}", r) for r in star(inp)]
            items += [(name, e, e) for name, e in expanded]
            continue
        assert item.expr is not None
        canon = scope.canonical(item.expr)
        spec = next((n for n, e in key_specs if e == canon), None)
        name = item.alias or spec or natural_name(item.expr, canon)
        items.append((name, item.expr, canon))

    compiled = [compiler.compile(expr) for _, expr, _ in items]
    for (_, expr, _), c in zip(items, compiled):
        if isinstance(c.type, NullType) and not isinstance(expr, ast.ColumnRef):
            raise KsqlStatementError(
                "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR)."
            )

    sink = f"`{sink_name}`" if sink_name else "the sink"
    key_positions: list[int] = []
    key_exprs: list[Compiled] = []
    if partitioned:
        for _name, canon in key_specs:
            found = [i for i, it in enumerate(items) if it[2] == canon]
            if not found:
                texts = [format_expr(e) for _, e in key_specs]
                raise KsqlStatementError(
                    f"The query used to build {sink} must include the partitioning expression"
                    f"{'s' if len(texts) > 1 else ''} {' and '.join(texts)} in its projection (eg, SELECT "
                    f"{', '.join(texts)}...)."
                )
            _check_once(items, found)
            key_positions.append(found[0])
            key_exprs.append(compiled[found[0]])
    else:
        targets = [ast.ColumnRef(synthetic[0])] if synthetic is not None else candidates
        chosen = next((t for t in targets if any(it[2] == t for it in items)), None)
        if chosen is None and sink_name is not None:
            raise KsqlStatementError(_missing_key_message(sink, targets, synthetic))
        found = [i for i, it in enumerate(items) if it[2] == chosen]
        _check_once(items, found)
        key_positions = found[:1]
        key_exprs = [Compiled(compiled[i].type, operator.itemgetter(KEY_SLOT)) for i in key_positions]

    key_cols = [Column(items[i][0], compiled[i].type, key=True) for i in key_positions]
    value_cols, value_exprs, value_texts = [], [], []
    for i, ((name, expr, _), c) in enumerate(zip(items, compiled)):
        if i in key_positions:
            continue
        value_cols.append(Column(name, c.type))
        value_exprs.append(c)
        value_texts.append(format_expr(expr))
    check_projection(key_cols, value_cols, persistent=sink_name is not None)
    order = projection_order(key_positions, len(items))
    return LogicalSchema(tuple(key_cols), tuple(value_cols)), key_exprs, value_exprs, value_texts, order


_PSEUDO_ORDER = ["ROWTIME", "ROWPARTITION", "ROWOFFSET"]


def _check_once(items: list[tuple[str, ast.Expr, ast.Expr]], found: list[int]) -> None:
    if len(found) > 1:
        names = sorted(items[i][0] for i in found)
        raise KsqlStatementError(
            f"The projection contains a key column (`{items[found[0]][0]}`) more than once, aliased as: "
            f"{' and '.join(names)}."
        )


def _missing_key_message(sink: str, targets: list[ast.Expr], synthetic: tuple[str, SqlType] | None) -> str:
    texts = [format_expr(t) for t in targets]
    lines = [
        "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.",
        f"The query used to build {sink} must include the join expression{'s' if len(texts) > 1 else ''} "
        f"{' or '.join(texts)} in its projection (eg, SELECT {texts[0] if texts else ''}...).",
    ]
    if synthetic is not None:
        lines.append(
            f"{synthetic[0]} was added as a synthetic key column because the join criteria did not match "
            "any source column. This expression must be included in the projection and may be aliased."
        )
    return "\n".join(lines)
