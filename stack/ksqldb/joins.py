"""Joins: planning (sides, join keys, implicit repartitions, the joined schema, the result's key) and the
operators that run them, with ksqlDB's semantics (which are Kafka Streams' join operators).

Why it is built this way:

- A join query reads several topics. `JoinFlow` turns records of any of them into joined rows; `JoinQuery`
  filters, projects and serialises those rows into the sink. A query is a left-deep chain of binary joins
  (`A JOIN B ... JOIN C ...`): step k joins the result of steps < k with source k + 1.
- Every row travels as one flat list laid out for the whole query: the result's own pseudo columns and
  join key, then each source's columns (pseudo, key, value, header columns) at a fixed offset. Missing
  sides (outer joins) are NULLs. All expressions (ON, WHERE, SELECT, PARTITION BY) compile once against
  that layout (`JoinScope`).
- An implicit repartition (joining a stream on something other than its key) is a re-key: the join key is
  the ON expression's value, so it is simply evaluated for every record. Records are processed one at a
  time, in arrival order, exactly as a topology test driver pipes them through a repartition topic.
- State lives in `state.StateStores` stores: windowed buffers per side for stream-stream joins (kept for
  before + after + grace), the latest row per key for table sides (tombstones delete), and, for left/outer
  stream-stream joins with a GRACE PERIOD, the records still waiting for a partner.
- GROUP BY over a join reuses aggregation.py unchanged: the joined rows are presented as the rows of a
  virtual source (`_plan_aggregate`), and `JoinAggregateQuery` feeds them to its aggregator.

Stream-stream semantics (Kafka Streams' KStreamKStreamJoin): a record joins every record of the other
side with the same key whose timestamp lies in [ts - before, ts + after] (seen from the left) and that is
still retained (newer than the other buffer's stream time minus the retention). Results carry the larger
timestamp. Without GRACE PERIOD (the legacy window, 24 hours of grace) a left/outer record that finds no
partner is emitted at once padded with NULLs; with GRACE PERIOD it is held back and emitted only when its
window has closed without a match (or at once when it arrives after its window closed).
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import ast
from .aggregation import AggregateQuery
from .errors import EvalError, KsqlStatementError, SerdeError, UnsupportedError
from .executor import PushRows, projected_columns
from .expressions import Compiled, Compiler, ErrorSink, Scope
from .formatter import format_expr
from .metastore import RESERVED, Column, DataSource, LogicalSchema, MetaStore, check_projection, projection_order
from .state import InMemoryStateStores, StateStores
from .types import BIGINT, INTEGER, NULL, NullType, SqlType, contains_map

# the joined row: the result's ROWTIME, ROWPARTITION, ROWOFFSET and join key, then each source's columns
_ROWTIME, _KEY, _BASE = 0, 3, 4

_JOIN_TEXT = {
    "INNER": "[INNER] JOIN",
    "LEFT": "LEFT [OUTER] JOIN",
    "RIGHT": "RIGHT [OUTER] JOIN",
    "FULL": "[FULL] OUTER JOIN",
}
#: Kafka Streams' grace for join windows made without one (JoinWindows.of): 24 hours minus the window.
_LEGACY_GRACE_MS = 24 * 3_600_000


# ---------------------------------------------------------------- plan
@dataclass
class JoinInput:
    """One source of the join and where its columns sit in the joined row."""

    source: DataSource
    alias: str  # the name columns are qualified with (the alias, else the source name)
    offset: int
    width: int

    @property
    def is_table(self) -> bool:
        return self.source.kind == "TABLE"


@dataclass(frozen=True)
class JoinWindow:
    """WITHIN: how far before and after a left record right records may lie (ms), and the grace period."""

    before: int
    after: int
    grace: int
    spurious_fix: bool  # GRACE PERIOD given: unmatched outer records wait for their window to close

    @property
    def retention(self) -> int:
        return self.before + self.after + self.grace


@dataclass
class JoinStep:
    """One binary join: the result so far (left) with `right`."""

    kind: str  # INNER / LEFT / RIGHT / FULL
    right: JoinInput
    left_key: Compiled  # the ON expression of each side, over the joined row
    right_key: Compiled
    left_keyed: bool  # the left is already keyed by its ON expression (no repartition)
    right_keyed: bool
    window: JoinWindow | None  # stream-stream joins only
    result_kind: str  # STREAM / TABLE
    op: str  # stream-stream / stream-table / table-table / foreign-key (table-table on the left's ON expression)


@dataclass
class JoinPlan:
    """A planned join query: its sources, the chain of binary joins, and what becomes of the joined rows
    (a projection into the sink, or an aggregation)."""

    inputs: list[JoinInput]
    steps: list[JoinStep]
    width: int
    schema: LogicalSchema  # the result's schema
    where: Compiled | None
    key_exprs: list[Compiled]
    value_exprs: list[Compiled]
    value_texts: list[str]
    partitioned: bool
    result_kind: str
    errors: ErrorSink
    limit: int | None = None
    #: (left name, left topic, right name, right topic) pairs that must have equal partition counts
    copartitioned: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: GROUP BY over the join: the joined rows are the rows of this aggregation's (virtual) source
    aggregate: Any = None
    #: per SELECT item, its index in key + value columns (push queries send rows in projection order)
    projection_order: list[int] = field(default_factory=list)

    @property
    def window(self) -> Any:
        """The WINDOW of an aggregation over the join (the engine makes the sink windowed by it)."""
        return self.aggregate.window if self.aggregate is not None else None

    @property
    def source(self) -> DataSource:
        """The left-most source: the sink inherits its formats, as in ksqlDB."""
        return self.inputs[0].source

    @property
    def sources(self) -> list[DataSource]:
        return [i.source for i in self.inputs]

    def check_copartitioning(self, partitions_of: Callable[[str], int | None]) -> None:
        """Sides joined on their keys without a repartition must have as many partitions (the topics'
        counts, looked up through the runtime)."""
        for left, left_topic, right, right_topic in self.copartitioned:
            lp, rp = partitions_of(left_topic), partitions_of(right_topic)
            if lp is not None and rp is not None and lp != rp:
                raise KsqlStatementError(
                    f"Can't join `{left}` with `{right}` since the number of partitions don't match. `{left}` "
                    f"partitions = {lp}; `{right}` partitions = {rp}. Please repartition either one so that the "
                    "number of partitions match."
                )

    def build(
        self,
        query_id: str,
        sink: DataSource,
        serdes: Callable[[DataSource], tuple[Any, Any]],
        key_out: Any,
        value_out: Any,
        plog: Any,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> Any:
        side_serdes = [serdes(i.source) for i in self.inputs]
        if self.aggregate is not None:
            return JoinAggregateQuery(query_id, self, sink, side_serdes, key_out, value_out, plog, sql, stores)
        return JoinQuery(query_id, self, sink, side_serdes, key_out, value_out, plog, sql, stores)

    def transient(self, query_id: str, serdes: Callable[[DataSource], tuple[Any, Any]], plog: Any) -> Any:
        """A push query over the join: its rows (or an aggregation's changes), its state in memory."""
        sink = DataSource(query_id, self.result_kind, self.schema, "", self.source.key_format, self.source.value_format)
        query = self.build(query_id, sink, serdes, _Values(), _Values(), plog)
        if self.aggregate is not None:
            from .aggregation import AggregateTransientQuery

            return AggregateTransientQuery(query_id, self.aggregate, None, None, plog, query)
        return JoinTransientQuery(query_id, self, query)


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
            self.columns[synthetic[0]] = (_KEY, synthetic[1])

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


def _map_refs(node: Any, fn: Callable[[ast.ColumnRef], ast.Expr]) -> Any:
    if isinstance(node, ast.ColumnRef):
        return fn(node)
    if isinstance(node, ast.Lambda):
        return node  # its parameters shadow columns
    if isinstance(node, tuple):
        return tuple(_map_refs(x, fn) for x in node)
    if isinstance(node, (ast.Expr, ast.WhenClause)) and dataclasses.is_dataclass(node):
        return dataclasses.replace(
            node, **{f.name: _map_refs(getattr(node, f.name), fn) for f in dataclasses.fields(node)}
        )
    return node


def _column_refs(e: Any) -> list[ast.ColumnRef]:
    found: list[ast.ColumnRef] = []

    def visit(ref: ast.ColumnRef) -> ast.Expr:
        found.append(ref)
        return ref

    _map_refs(e, visit)
    return found


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
    from .windows import parse_duration

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
    from .aggregation import is_aggregate_query
    from .planner import _check_clauses

    aggregate = is_aggregate_query(q)
    if not aggregate:
        _check_clauses(q, persistent=sink_name is not None)
    inputs = _inputs(q, metastore)
    width = inputs[-1].offset + inputs[-1].width
    known = {i.alias for i in inputs}
    exprs = [i.expr for i in q.select] + [j.on for j in q.joins] + [q.where, *q.partition_by, *q.group_by, q.having]
    for ref in _column_refs(tuple(e for e in exprs if e is not None)):
        if ref.source is not None and ref.source not in known:
            raise KsqlStatementError(
                f"Failed to prepare statement: '{ref.source}' is not a valid stream/table name or alias."
            )
    errors = ErrorSink()

    scope = JoinScope(inputs, width)
    for ref in _column_refs(tuple(e for e in exprs if e is not None)):
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
    from .aggregation import check_columns

    def skip(clause: str, ref: ast.ColumnRef) -> bool:
        return ref.name in ("WINDOWSTART", "WINDOWEND") or (
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
    """The ON expression's two sides as (expression, source alias): the earlier sources' side first."""
    if isinstance(on, ast.Logical) and on.op == "AND":
        raise KsqlStatementError(
            "Invalid join condition: joins on multiple conditions are not yet supported. "
            f"Got {format_expr(scope.canonical(on))}."
        )
    if not (isinstance(on, ast.Comparison) and on.op == "="):
        raise KsqlStatementError(
            f"Invalid join condition: only equality (=) joins are supported. Got {format_expr(scope.canonical(on))}."
        )
    compiler = Compiler(scope, "JOIN ON")
    sides = []
    for side in (on.left, on.right):
        compiler.compile(side)  # unknown and ambiguous columns first, as ksqlDB reports them
        owners = {r.source for r in _column_refs(scope.canonical(side)) if r.source is not None}
        if len(owners) != 1:
            raise KsqlStatementError(
                f"Invalid comparison expression '{format_expr(scope.canonical(side))}' in join "
                f"'{format_expr(scope.canonical(on))}'. Each side of the join comparision must contain "
                "references from exactly one source."
            )
        sides.append((side, owners.pop()))
    if sides[0][1] == right.alias and sides[1][1] != right.alias:
        sides.reverse()
    if sides[1][1] != right.alias or sides[0][1] == right.alias:
        raise KsqlStatementError(
            f"Invalid join condition: {format_expr(scope.canonical(on))} must compare an expression of "
            f"{right.alias} with one of the sources before it."
        )
    return sides


def _plan_aggregate(
    q: ast.Query,
    scope: JoinScope,
    inputs: list[JoinInput],
    chain: _Chain,
    sink_name: str | None,
    config: dict[str, Any] | None,
) -> JoinPlan:
    """GROUP BY over a join: aggregation.plan_aggregate plans the query over a virtual source whose row
    layout is the joined row's: the join key as its key column, then every source column, named as ksqlDB
    names join columns (`ALIAS_COLUMN` when several sources have the column, else the column's name)."""
    from .aggregation import plan_aggregate

    if any(item.is_star for item in q.select):
        raise UnsupportedError("SELECT * with GROUP BY over a join")
    for ref in _column_refs(tuple(i.expr for i in q.select)):
        if ref.source is None and ref.name in ("WINDOWSTART", "WINDOWEND") and scope.resolve(ref) is None:
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
        select=tuple(dataclasses.replace(i, expr=_map_refs(i.expr, rename)) for i in q.select),
        where=_map_refs(q.where, rename),
        group_by=_map_refs(q.group_by, rename),
        having=_map_refs(q.having, rename),
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
    offset = _BASE
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
            bounds = ["WINDOWSTART", "WINDOWEND"] if schema.windowed else []
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
        key_exprs = [Compiled(compiled[i].type, operator.itemgetter(_KEY)) for i in key_positions]

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


# ---------------------------------------------------------------- running
Event = tuple  # (join key, joined row, deleted (a table row went away), timestamp)


class _SideReader:
    """Deserialises one source's records into joined rows: its own columns filled in, the others NULL."""

    def __init__(self, flow: JoinFlow, inp: JoinInput, key_in: Any, value_in: Any) -> None:
        from .executor import _header_reader, _timestamp_extractor

        self.flow, self.inp = flow, inp
        self.key_in, self.value_in = key_in, value_in
        schema = inp.source.schema
        self.n_keys, self.n_values = len(schema.key), len(schema.value)
        self.ts_extract = _timestamp_extractor(inp.source)
        self.header_fns = [_header_reader(c.header) for c in schema.headers]

    def read(self, rec: Any) -> tuple[list, bool, int] | None:
        """(row, deleted, timestamp); None when the record is skipped (bad bytes go to the processing log;
        streams skip records without a value, tables take them as deletes)."""
        plog, qid, table = self.flow.plog, self.flow.id, self.inp.is_table
        try:
            keys = self.key_in.deserialize(rec.key) if self.n_keys else []
        except SerdeError as e:
            plog.deserialization_error(qid, rec, "key", str(e))
            return None
        if keys is None:
            keys = [None] * self.n_keys
        if table and (not keys or any(k is None for k in keys)):
            return None  # a table row needs its primary key
        try:
            values = self.value_in.deserialize(rec.value)
        except SerdeError as e:
            plog.deserialization_error(qid, rec, "value", str(e))
            return None
        ts = rec.timestamp
        if values is None:
            if not table:
                return None
            values = [None] * self.n_values
        elif self.ts_extract is not None:
            try:
                ts = self.ts_extract(keys, values)
            except (EvalError, ValueError, TypeError, OverflowError) as e:
                plog.deserialization_error(qid, rec, "timestamp", str(e))
                return None
            if ts is None or ts < 0:
                plog.deserialization_error(qid, rec, "timestamp", f"Invalid timestamp extracted: {ts}")
                return None
        row: list = [None] * self.flow.width
        start = self.inp.offset
        row[start : start + self.inp.width] = [
            ts,
            rec.partition,
            rec.offset,
            *keys,
            *values,
            *(f(rec.headers) for f in self.header_fns),
        ]
        return row, rec.value is None, ts


class _Step:
    """Shared by the join operators: rows are merged into the joined layout, the result key and time set."""

    def __init__(self, step: JoinStep, width: int) -> None:
        self.step = step
        self.width = width
        self.rs, self.re = step.right.offset, step.right.offset + step.right.width
        self.left_outer = step.kind in ("LEFT", "FULL")
        self.right_outer = step.kind in ("RIGHT", "FULL")

    def merge(self, left: list | None, right: list | None, key: Any, ts: int) -> list:
        """`left`: a joined row; `right`: the right source's columns only."""
        row = list(left) if left is not None else [None] * self.width
        if right is not None:
            row[self.rs : self.re] = right
        row[_KEY], row[_ROWTIME] = key, ts
        return row

    def tombstone(self, key: Any, ts: int) -> Event:
        row: list = [None] * self.width
        row[_KEY], row[_ROWTIME] = key, ts
        return (key, row, True, ts)


class _StreamStream(_Step):
    """KStreamKStreamJoin: windowed buffers per side, NULL-padded results for unmatched outer records."""

    def __init__(self, step: JoinStep, width: int, stores: StateStores, name: str) -> None:
        super().__init__(step, width)
        assert step.window is not None
        self.w = step.window
        self.buffers = {True: stores.window(f"{name}-left"), False: stores.window(f"{name}-right")}
        self.times = stores.key_value(f"{name}-stream-time")
        self.unmatched = (
            stores.key_value(f"{name}-unmatched")
            if self.w.spurious_fix and (self.left_outer or self.right_outer)
            else None
        )
        self._expired_to = {True: -1, False: -1}
        self._times: dict[str, int] = {}  # stream times, read through from `times`

    def _time(self, which: str) -> int:
        t = self._times.get(which)
        if t is None:
            stored = self.times.get((which,))
            t = self._times[which] = -1 if stored is None else stored
        return t

    def _advance(self, which: str, ts: int) -> int:
        """Stream time `which` (shared, left, right) moved up to `ts`, written through to the store."""
        t = self._time(which)
        if ts > t:
            t = self._times[which] = ts
            self.times.put((which,), ts)
        return t

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._process(True, key, row, ts)

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._process(False, key, row[self.rs : self.re], ts)

    def _padded(self, is_left: bool, data: list, key: Any, ts: int) -> Event:
        return (key, self.merge(data, None, key, ts) if is_left else self.merge(None, data, key, ts), False, ts)

    def _process(self, is_left: bool, key: Any, data: list, ts: int) -> list[Event]:
        w = self.w
        outer = self.left_outer if is_left else self.right_outer
        if key is None:  # KIP-962: a left/outer record without a key joins nothing but is kept
            return [self._padded(is_left, data, key, ts)] if outer else []
        out: list[Event] = []
        stream_time = self._advance("shared", ts)
        lo, hi = (ts - w.before, ts + w.after) if is_left else (ts - w.after, ts + w.before)
        lo, hi = max(lo, 0), max(hi, 0)
        if self.unmatched is not None and ts == stream_time:
            out += self._emit_closed(stream_time)
        other = not is_left
        visible_from = max(lo, self._time("left" if other else "right") - w.retention + 1)
        matched = False
        for start, _, rows in self.buffers[other].windows((key,)):
            if start < visible_from:
                continue
            if start > hi:
                break
            for other_data in rows:
                matched = True
                if self.unmatched is not None:
                    self.unmatched.delete((start, other, key))
                left, right = (data, other_data) if is_left else (other_data, data)
                joined_ts = max(ts, start)
                out.append((key, self.merge(left, right, key, joined_ts), False, joined_ts))
        if not matched and outer:
            if self.unmatched is None or hi < stream_time:
                out.append(self._padded(is_left, data, key, ts))
            else:
                self.unmatched.put((ts, is_left, key), data)
        self._buffer(is_left, key, data, ts)
        return out

    def _buffer(self, is_left: bool, key: Any, data: list, ts: int) -> None:
        own_time = self._advance("left" if is_left else "right", ts)
        retained_from = own_time - self.w.retention + 1
        if ts < retained_from:
            return  # already out of the window store's retention: Kafka Streams drops it too
        buffer = self.buffers[is_left]
        rows = buffer.get((key,), ts, ts)
        buffer.put((key,), ts, ts, (rows or []) + [data])
        if retained_from - self._expired_to[is_left] > self.w.retention // 2 + 1:
            buffer.expire(retained_from)
            self._expired_to[is_left] = retained_from

    def _emit_closed(self, stream_time: int) -> list[Event]:
        """Unmatched outer records whose window (plus grace) has closed, oldest first, right side first on
        equal timestamps (the order of Kafka Streams' outer-join store)."""
        assert self.unmatched is not None
        w = self.w
        out = []
        for (ts, is_left, key), data in sorted(self.unmatched.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if ts + (w.after if is_left else w.before) + w.grace < stream_time:
                out.append(self._padded(is_left, data, key, ts))
                self.unmatched.delete((ts, is_left, key))
        return out


class _StreamTable(_Step):
    """KStreamKTableJoin: a stream record looks the key up in the table; table updates emit nothing."""

    def __init__(self, step: JoinStep, width: int, stores: StateStores, name: str) -> None:
        super().__init__(step, width)
        self.table = stores.key_value(f"{name}-table")

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        found = self.table.get((key,)) if key is not None else None
        if found is None:
            return [(key, self.merge(row, None, key, ts), False, ts)] if self.left_outer else []
        return [(key, self.merge(row, found[1], key, ts), False, ts)]

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        if deleted:
            self.table.delete((key,))
        else:
            self.table.put((key,), [ts, row[self.rs : self.re]])
        return []


class _TableTable(_Step):
    """KTableKTableJoin on primary keys: an update of either side emits the new joined row, or a delete.
    As in Kafka Streams: an inner join emits only when the other side has the key; a preserved (outer) side
    emits itself padded with NULLs when the other side has not, and a full outer join stays silent when a
    key that neither side had is deleted. The result carries the later of the two rows' timestamps."""

    def __init__(self, step: JoinStep, width: int, stores: StateStores, name: str) -> None:
        super().__init__(step, width)
        self.tables = {True: stores.key_value(f"{name}-left"), False: stores.key_value(f"{name}-right")}

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._update(True, key, None if deleted else row, ts)

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        return self._update(False, key, None if deleted else row[self.rs : self.re], ts)

    def _update(self, is_left: bool, key: Any, data: list | None, ts: int) -> list[Event]:
        if key is None:
            return []
        table = self.tables[is_left]
        old = table.get((key,))
        if data is None:
            table.delete((key,))
        else:
            table.put((key,), [ts, data])
        other = self.tables[not is_left].get((key,))
        this_outer, other_outer = (
            (self.left_outer, self.right_outer) if is_left else (self.right_outer, self.left_outer)
        )
        if other is None:
            if not this_outer or (data is None and old is None and self.step.kind == "FULL"):
                return []
            if data is None:
                return [self.tombstone(key, ts)]
            return [(key, self.merge(data, None, key, ts) if is_left else self.merge(None, data, key, ts), False, ts)]
        other_ts, other_data = other
        ts = max(ts, other_ts)
        if data is None and not other_outer:
            return [self.tombstone(key, ts)]
        left, right = (data, other_data) if is_left else (other_data, data)
        return [(key, self.merge(left, right, key, ts), False, ts)]


class _ForeignKey(_Step):
    """KTable-KTable foreign-key join (INNER or LEFT): each left row joins the right row whose primary key
    is the left row's ON expression; the result is keyed by the left row's key. A right update re-joins
    every left row pointing at it. As in Kafka Streams, an inner join deletes a row whose foreign key
    moved to a missing right row, and a left row with a NULL foreign key joins nothing (KIP-962: a left
    join keeps it padded with NULLs)."""

    def __init__(
        self, step: JoinStep, width: int, stores: StateStores, name: str, foreign_key: Callable[[list], Any]
    ) -> None:
        super().__init__(step, width)
        self.lefts = stores.key_value(f"{name}-left")  # left key -> [ts, row, foreign key]
        self.rights = stores.key_value(f"{name}-right")  # right key -> [ts, right columns]
        self.subscribers = stores.key_value(f"{name}-subscribers")  # right key -> [left keys]
        self.foreign_key = foreign_key

    def _subscribe(self, fk: Any, key: Any, add: bool) -> None:
        keys = [k for k in self.subscribers.get((fk,)) or [] if k != key]
        if add:
            keys.append(key)
        if keys:
            self.subscribers.put((fk,), keys)
        else:
            self.subscribers.delete((fk,))

    def left(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        if key is None:
            return []
        old = self.lefts.get((key,))
        old_fk = old[2] if old is not None else None
        if deleted:
            if old is None:
                return []
            self.lefts.delete((key,))
            if old_fk is not None:
                self._subscribe(old_fk, key, False)
            return [self.tombstone(key, ts)]
        fk = self.foreign_key(row)
        self.lefts.put((key,), [ts, row, fk])
        moved = old is not None and old_fk != fk
        if moved and old_fk is not None:
            self._subscribe(old_fk, key, False)
        if fk is not None and (old is None or moved):
            self._subscribe(fk, key, True)
        right = self.rights.get((fk,)) if fk is not None else None
        if right is not None:
            joined_ts = max(ts, right[0])
            return [(key, self.merge(row, right[1], key, joined_ts), False, joined_ts)]
        if self.left_outer:
            return [(key, self.merge(row, None, key, ts), False, ts)]
        return [self.tombstone(key, ts)] if moved else []

    def right(self, key: Any, row: list, deleted: bool, ts: int) -> list[Event]:
        if key is None:
            return []
        data = None if deleted else row[self.rs : self.re]
        if data is None:
            if self.rights.get((key,)) is None:
                return []
            self.rights.delete((key,))
        else:
            self.rights.put((key,), [ts, data])
        out: list[Event] = []
        for left_key in self.subscribers.get((key,)) or []:
            left_ts, left_row, _ = self.lefts.get((left_key,))
            joined_ts = max(ts, left_ts)
            if data is None and not self.left_outer:
                out.append(self.tombstone(left_key, joined_ts))
            else:
                out.append((left_key, self.merge(left_row, data, left_key, joined_ts), False, joined_ts))
        return out


_OPERATORS = {
    "stream-stream": _StreamStream,
    "stream-table": _StreamTable,
    "table-table": _TableTable,
    "foreign-key": _ForeignKey,
}


class JoinFlow:
    """Records of any joined source in, joined rows out, through the chain of join operators."""

    def __init__(
        self, query_id: str, plan: JoinPlan, serdes: list[tuple[Any, Any]], plog: Any, stores: StateStores
    ) -> None:
        self.id, self.plan, self.plog = query_id, plan, plog
        self.width = plan.width
        self.processed = 0
        self.current: Any = None
        self.readers = {
            inp.source.topic: (i, _SideReader(self, inp, *serde))
            for i, (inp, serde) in enumerate(zip(plan.inputs, serdes))
        }
        self.stores = stores
        self.reload_state()
        first = plan.inputs[0]
        self._first_key = first.offset + 3 if len(first.source.schema.key) == 1 else None
        plan.errors.handler = self.expression_error

    def reload_state(self) -> None:
        """(Re)build the join operators from the stores: after a runtime rolls a failed batch back, the stream
        times they cache must be those of the committed state again."""
        plan, stores = self.plan, self.stores
        self.ops = [
            _OPERATORS[s.op](s, plan.width, stores, f"join{j}")
            if s.op != "foreign-key"
            else _ForeignKey(s, plan.width, stores, f"join{j}", lambda row, c=s.left_key: self._key(c, row))
            for j, s in enumerate(plan.steps)
        ]

    def expression_error(self, text: str, error: str) -> None:
        if self.current is not None:
            self.plog.expression_error(self.id, self.current, text, error)

    def _key(self, c: Compiled, row: list) -> Any:
        try:
            return c.fn(row)
        except (EvalError, ArithmeticError, ValueError, TypeError) as e:
            self.expression_error("JOIN ON", str(e))
            return None

    def feed(self, rec: Any) -> list[Event]:
        entry = self.readers.get(rec.topic)
        if entry is None:
            return []
        index, reader = entry
        self.current = rec
        got = reader.read(rec)
        if got is None:
            return []
        self.processed += 1
        row, deleted, ts = got
        steps = self.plan.steps
        if index == 0:
            own_key = row[self._first_key] if self._first_key is not None else None
            events = self.ops[0].left(self._left_key(steps[0], own_key, row), row, deleted, ts)
        else:
            events = self.ops[index - 1].right(self._key(steps[index - 1].right_key, row), row, deleted, ts)
        for j in range(max(index, 1), len(self.ops)):
            step, op, nxt = steps[j], self.ops[j], []
            for key, row, deleted, ts in events:
                nxt += op.left(self._left_key(step, key, row), row, deleted, ts)
            events = nxt
        return events

    def _left_key(self, step: JoinStep, own_key: Any, row: list) -> Any:
        """What a step's left side is keyed by: its own key when it needs no re-keying (and for a
        foreign-key join, which looks the foreign key up itself), else the ON expression's value (which
        for windowed sources carries the window too)."""
        if step.op == "foreign-key" or (step.left_keyed and step.right.source.window is None):
            return own_key
        return self._key(step.left_key, row)


class JoinQuery:
    """A persistent join query: joined rows -> WHERE -> key and projection -> the sink topic. A table
    result is a changelog: a deleted row, or one that stops matching WHERE, becomes a tombstone."""

    def __init__(
        self,
        query_id: str,
        plan: JoinPlan,
        sink: DataSource,
        serdes: list[tuple[Any, Any]],
        key_out: Any,
        value_out: Any,
        plog: Any,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> None:
        from .executor import _safe

        self.id, self.plan, self.sink, self.sql = query_id, plan, sink, sql
        self.source = plan.source
        self.source_topics = [i.source.topic for i in plan.inputs]
        self.state = "RUNNING"
        self.stores = stores if stores is not None else InMemoryStateStores()
        self.flow = JoinFlow(query_id, plan, serdes, plog, self.stores)
        self.key_out, self.value_out, self.plog = key_out, value_out, plog
        handler = self.flow.expression_error
        self._where = plan.where.fn if plan.where is not None else None
        self._key_fns = [_safe(c, "KEY", handler) for c in plan.key_exprs]
        self._value_fns = [_safe(c, t, handler) for c, t in zip(plan.value_exprs, plan.value_texts)]
        # a table result filtered by WHERE forwards a delete only for a key whose previous row passed
        self._live = (
            self.stores.key_value("result-keys") if plan.result_kind == "TABLE" and plan.where is not None else None
        )
        names = [c.name for c in sink.schema.value]
        self._sink_ts_index = names.index(sink.timestamp_column) if sink.timestamp_column in names else None

    @property
    def processed(self) -> int:
        return self.flow.processed

    def reload_state(self) -> None:
        self.flow.reload_state()

    def process(self, records: list[Any]) -> list[Any]:
        """Join a batch of records of any source topic (in arrival order) into sink records."""
        out = []
        for rec in records:
            for _, row, deleted, ts in self.flow.feed(rec):
                produced = self._emit(rec, row, deleted, ts)
                if produced is not None:
                    out.append(produced)
        self.flow.current = None
        return out

    def _emit(self, rec: Any, row: list, deleted: bool, ts: int) -> Any:
        from . import values as V
        from .executor import Record

        if not deleted and self._where is not None:
            try:
                passed = self._where(row) is True
            except (EvalError, ArithmeticError, ValueError, TypeError) as e:
                self.plog.expression_error(self.id, rec, "WHERE", str(e))
                passed = False
            if not passed:
                if self.plan.result_kind != "TABLE":
                    return None
                deleted = True
        key_vals = [f(row) for f in self._key_fns]
        if self._live is not None:
            live_key = tuple(key_vals)
            if deleted:
                if self._live.get(live_key) is None:
                    return None  # nothing to delete downstream
                self._live.delete(live_key)
            else:
                self._live.put(live_key, True)
        value_vals = None if deleted else [f(row) for f in self._value_fns]
        if value_vals is not None and self._sink_ts_index is not None:
            v = value_vals[self._sink_ts_index]
            if v is None:
                return None
            ts = v if isinstance(v, int) else V.timestamp_to_millis(v)
        try:
            key = None if not key_vals or all(v is None for v in key_vals) else self.key_out.serialize(key_vals)
            value = self.value_out.serialize(value_vals)
        except SerdeError as e:
            self.plog.serialization_error(self.id, self.sink.topic, str(e))
            return None
        return Record(self.sink.topic, key, value, ts, rec.partition)


class JoinAggregateQuery(AggregateQuery):
    """GROUP BY over a join: joined rows (not one source's records) are pre-aggregated and aggregated."""

    def __init__(
        self,
        query_id: str,
        plan: JoinPlan,
        sink: DataSource,
        serdes: list[tuple[Any, Any]],
        key_out: Any,
        value_out: Any,
        plog: Any,
        sql: str = "",
        stores: StateStores | None = None,
    ) -> None:
        from .executor import _safe

        aggregate = plan.aggregate
        super().__init__(query_id, aggregate, sink, None, None, key_out, value_out, plog, sql, stores)
        self.source = plan.source
        self.source_topics = [i.source.topic for i in plan.inputs]
        self.flow = JoinFlow(query_id, plan, serdes, plog, self.stores)
        pre = aggregate.pre
        pre.errors.handler = self._expr_error
        self._where = pre.where.fn if pre.where is not None else None
        self._keys = [c.fn for c in pre.key_exprs]
        self._pre = [_safe(c, t, self._expr_error) for c, t in zip(pre.value_exprs, pre.value_texts)]

    @property
    def processed(self) -> int:
        return self.flow.processed

    def reload_state(self) -> None:
        super().reload_state()
        self.flow.reload_state()

    def changes(self, records: list[Any]) -> list[tuple[Any, Any]]:
        out = []
        for rec in records:
            self._record = rec
            for _, row, deleted, ts in self.flow.feed(rec):
                if self._where is not None:  # (a table's WHERE is one of the pre-aggregated values)
                    if deleted:
                        continue
                    try:
                        if self._where(row) is not True:
                            continue
                    except (EvalError, ArithmeticError, ValueError, TypeError) as e:
                        self._expr_error("WHERE", str(e))
                        continue
                values = None if deleted else [f(row) for f in self._pre]
                for change in self.aggregator.apply([f(row) for f in self._keys], values, ts):
                    out.append((rec, change))
        self._record = None
        self.flow.current = None
        self.aggregator.checkpoint()
        return out


class _Values:
    """A push query's 'serde': its key and value columns stay values."""

    def serialize(self, values: list[Any] | None) -> list[Any] | None:
        return values


class JoinTransientQuery(PushRows):
    """A push query over a join (SELECT ... FROM a JOIN b ... EMIT CHANGES): the joined rows of the source
    topics' records, up to LIMIT. A table-table join's deleted row is a tombstone (key columns, null values)."""

    def __init__(self, query_id: str, plan: JoinPlan, query: JoinQuery) -> None:
        super().__init__(projected_columns(plan.schema, plan.projection_order), plan.projection_order, plan.limit)
        self.id, self.plan, self.query = query_id, plan, query
        self.source_topics = query.source_topics

    def changelog(self, records: list[Any]) -> list[tuple[list[Any], bool]]:
        """(row, tombstone) per joined row, in projection order."""
        out: list[tuple[list[Any], bool]] = []
        n_keys, n_values = len(self.plan.schema.key), len(self.plan.schema.value)
        for rec in self.query.process(records):
            if self.done:
                break
            keys = rec.key if rec.key is not None else [None] * n_keys
            values = rec.value if rec.value is not None else [None] * n_values
            self.emit(out, list(keys) + list(values), rec.value is None)
        return out
