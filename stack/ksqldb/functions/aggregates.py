"""Aggregate functions (UDAFs): COUNT, SUM, AVG, MIN, MAX, COLLECT_LIST, COLLECT_SET, COUNT_DISTINCT,
TOPK, TOPKDISTINCT, EARLIEST_BY_OFFSET and LATEST_BY_OFFSET, with ksqlDB's typing and null rules.

An `Aggregate` is one call resolved for its argument types. Its state is plain data (numbers, lists,
[sequence, value] pairs) so that state stores can persist it; `add` and `undo` return the new state.
`undo` exists only for the functions ksqlDB allows over tables (a table row that changes is first
taken out of its old group); `merge` combines two session windows' states.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from ..errors import EvalError, KsqlStatementError, UnsupportedError
from ..types import (
    BIGINT,
    BOOLEAN,
    BYTES,
    DATE,
    DOUBLE,
    INTEGER,
    STRING,
    TIME,
    TIMESTAMP,
    ArrayType,
    DecimalType,
    MapType,
    NullType,
    SqlType,
    StructType,
)
from ..values import wrap_int, wrap_long

NAMES = {
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "COLLECT_LIST",
    "COLLECT_SET",
    "COUNT_DISTINCT",
    "TOPK",
    "TOPKDISTINCT",
    "EARLIEST_BY_OFFSET",
    "LATEST_BY_OFFSET",
    "STDDEV_SAMP",
    "STDDEV_SAMPLE",
    "HISTOGRAM",
}
#: ksqlDB aggregates this engine does not implement (refused as unsupported, never as unknown functions)
UNSUPPORTED = {"CORRELATION", "ATTR"}  # CORRELATION aggregates two columns, which the planner cannot yet

COLLECT_LIMIT = 2**31 - 1  # no limit unless ksql.functions.collect_list.limit / collect_set.limit say so
LIMIT_CONFIGS = {"COLLECT_LIST": "ksql.functions.collect_list.limit", "COLLECT_SET": "ksql.functions.collect_set.limit"}

_COMPARABLE = (INTEGER, BIGINT, DOUBLE, STRING, DATE, TIME, TIMESTAMP, BYTES)


def _java_order(t: SqlType) -> Callable[[Any], Any] | None:
    """A sort key giving Java's order where Python's differs: strings by UTF-16 code units, bytes as
    signed bytes (ByteBuffer.compareTo)."""
    if t == STRING:
        return lambda v: v.encode("utf-16-be")
    if t == BYTES:
        return lambda v: bytes(b ^ 0x80 for b in v)
    return None


def is_aggregate(name: str) -> bool:
    return name.upper() in NAMES or name.upper() in UNSUPPORTED


@dataclass
class Aggregate:
    name: str
    return_type: SqlType
    intermediate: SqlType  # the state's SQL shape: formats that cannot hold it refuse the query
    init: Callable[[], Any]
    add: Callable[[Any, Any, int], Any]  # (state, value, sequence number) -> state
    result: Callable[[Any], Any]
    merge: Callable[[Any, Any], Any]
    undo: Callable[[Any, Any], Any] | None = None

    @property
    def table_capable(self) -> bool:
        return self.undo is not None


def _reject(name: str, types: list[SqlType]) -> KsqlStatementError:
    return KsqlStatementError(f"Function '{name}' does not accept parameters ({', '.join(map(str, types))}).")


def _literal(name: str, value: Any, kind: type, what: str) -> Any:
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise KsqlStatementError(f"Function '{name}' expects {what} as a literal argument.")
    return value


# ---------------------------------------------------------------- numeric
def _wrapper(t: SqlType) -> Callable[[Any], Any]:
    if t == INTEGER:
        return wrap_int
    if t == BIGINT:
        return wrap_long
    return lambda v: v


def _count(types: list[SqlType]) -> Aggregate:
    return Aggregate(
        "COUNT",
        BIGINT,
        BIGINT,
        lambda: 0,
        add=lambda s, v, seq: s if v is None else s + 1,
        result=lambda s: s,
        merge=lambda a, b: a + b,
        undo=lambda s, v: s if v is None else s - 1,
    )


def _sum(types: list[SqlType]) -> Aggregate:
    t = types[0]
    if isinstance(t, DecimalType):
        return _decimal_sum(t)
    if t not in (INTEGER, BIGINT, DOUBLE):
        raise _reject("SUM", types)
    wrap = _wrapper(t)
    zero = 0.0 if t == DOUBLE else 0
    return Aggregate(
        "SUM",
        t,
        t,
        lambda: zero,
        add=lambda s, v, seq: s if v is None else wrap(s + v),
        result=lambda s: s,
        merge=lambda a, b: wrap(a + b),
        undo=lambda s, v: s if v is None else wrap(s - v),
    )


def _decimal_sum(t: DecimalType) -> Aggregate:
    """SUM of DECIMAL(p, s) is a DECIMAL(p, s); a sum that no longer fits is an error for that record."""
    limit = Decimal(10) ** (t.precision - t.scale)
    quantum = Decimal(1).scaleb(-t.scale)

    def plus(a: Decimal, b: Decimal) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = t.precision + 2
            value = (a + b).quantize(quantum)
        if abs(value) >= limit:
            raise EvalError(
                f"Numeric field overflow: A field with precision {t.precision} and scale {t.scale} must round to "
                f"an absolute value less than 10^{t.precision - t.scale}. Got {value:f}"
            )
        return value

    return Aggregate(
        "SUM",
        t,
        t,
        lambda: Decimal(0).quantize(quantum),
        add=lambda s, v, seq: s if v is None else plus(s, v),
        result=lambda s: s,
        merge=plus,
        undo=lambda s, v: s if v is None else plus(s, -v),
    )


def _avg(types: list[SqlType]) -> Aggregate:
    t = types[0]
    if t not in (INTEGER, BIGINT, DOUBLE):  # ksqlDB's AverageUdaf has no DECIMAL overload
        raise _reject("AVG", types)
    wrap = _wrapper(t)
    zero = 0.0 if t == DOUBLE else 0

    def add(s, v, seq):
        return s if v is None else [wrap(s[0] + v), s[1] + 1]

    def undo(s, v):
        return s if v is None else [wrap(s[0] - v), s[1] - 1]

    def result(s):
        return 0.0 if s[1] == 0 else float(s[0]) / s[1]

    return Aggregate(
        "AVG",
        DOUBLE,
        StructType((("SUM", t), ("COUNT", BIGINT))),
        lambda: [zero, 0],
        add,
        result,
        merge=lambda a, b: [wrap(a[0] + b[0]), a[1] + b[1]],
        undo=undo,
    )


def _extreme(name: str) -> Callable[[list[SqlType]], Aggregate]:
    def make(types: list[SqlType]) -> Aggregate:
        t = types[0]
        if t not in _COMPARABLE and not isinstance(t, DecimalType):
            raise _reject(name, types)
        key = _java_order(t)
        if key is None and name == "MIN":  # Python orders these values as Java does: compare them directly

            def pick(a, b):
                if a is None:
                    return b
                if b is None:
                    return a
                return b if b < a else a
        elif key is None:

            def pick(a, b):
                if a is None:
                    return b
                if b is None:
                    return a
                return b if b > a else a
        else:
            better = (lambda a, b: key(a) < key(b)) if name == "MIN" else (lambda a, b: key(a) > key(b))

            def pick(a, b):
                if a is None:
                    return b
                if b is None:
                    return a
                return b if better(b, a) else a

        return Aggregate(name, t, t, lambda: None, add=lambda s, v, seq: pick(s, v), result=lambda s: s, merge=pick)

    return make


# ---------------------------------------------------------------- collections
def _collect_list(types: list[SqlType], limit: int = COLLECT_LIMIT) -> Aggregate:
    t = types[0]

    def add(s, v, seq):
        return s + [v] if len(s) < limit else s

    def undo(s, v):  # as ksqlDB: the last occurrence goes
        for i in range(len(s) - 1, -1, -1):
            if s[i] == v and (s[i] is None) == (v is None):
                return s[:i] + s[i + 1 :]
        return s

    return Aggregate(
        "COLLECT_LIST",
        ArrayType(t),
        ArrayType(t),
        list,
        add,
        result=list,
        merge=lambda a, b: (a + b)[:limit],
        undo=undo,
    )


def _collect_set(types: list[SqlType], limit: int = COLLECT_LIMIT) -> Aggregate:
    t = types[0]

    def add(s, v, seq):
        return s + [v] if len(s) < limit and v not in s else s

    def merge(a, b):
        out = list(a)
        for v in b:
            if len(out) < limit and v not in out:
                out.append(v)
        return out

    return Aggregate("COLLECT_SET", ArrayType(t), ArrayType(t), list, add, result=list, merge=merge)


def _count_distinct(types: list[SqlType]) -> Aggregate:
    # ksqlDB estimates with HyperLogLog; exact here (its estimate is exact at small cardinalities)
    def add(s, v, seq):
        return s if v is None or v in s else s + [v]

    def merge(a, b):
        return a + [v for v in b if v not in a]

    return Aggregate("COUNT_DISTINCT", BIGINT, ArrayType(types[0]), list, add, result=len, merge=merge)


def _topk(name: str, distinct: bool) -> Callable[[list[SqlType], list[Any]], Aggregate]:
    def make(types: list[SqlType], params: list[Any]) -> Aggregate:
        t = types[0]
        if t not in _COMPARABLE and not isinstance(t, DecimalType):
            raise _reject(name, types)
        if len(params) != 1:
            raise UnsupportedError(f"{name} with {len(params) + 1} arguments")
        k = _literal(name, params[0], int, "the number of values (an INT)")
        if k < 1:
            raise KsqlStatementError(f"{name}: the number of values must be positive, got {k}")

        order = _java_order(t)

        def top(values: list) -> list:
            return sorted(values, key=order, reverse=True)[:k]

        def add(s, v, seq):
            if v is None or (distinct and v in s):
                return s
            return top(s + [v])

        def merge(a, b):
            return top(a + [v for v in b if not (distinct and v in a)])

        return Aggregate(name, ArrayType(t), ArrayType(t), list, add, result=list, merge=merge)

    return make


# ---------------------------------------------------------------- by offset
def _by_offset(name: str, latest: bool) -> Callable[[list[SqlType], list[Any]], Aggregate]:
    def make(types: list[SqlType], params: list[Any]) -> Aggregate:
        t = types[0]
        n: int | None = None
        ignore_nulls = True
        if len(params) == 1 and isinstance(params[0], bool):
            ignore_nulls = params[0]
        elif len(params) == 1:
            n = _literal(name, params[0], int, "the number of values (an INT)")
        elif len(params) == 2:
            n = _literal(name, params[0], int, "the number of values (an INT)")
            ignore_nulls = _literal(name, params[1], bool, "ignoreNulls (a BOOLEAN)")
        elif params:
            raise _reject(name, types + [INTEGER, BOOLEAN, BOOLEAN][: len(params)])
        if n is not None and n < 1:
            raise KsqlStatementError(f"{name}: the number of values must be positive, got {n}")
        entry = StructType((("SEQ", BIGINT), ("VAL", t)))
        if n is None:

            def add(s, v, seq):
                if v is None and ignore_nulls:
                    return s
                if s is not None and not latest:
                    return s
                return [seq, v]

            def merge(a, b):
                if a is None or b is None:
                    return b if a is None else a
                return (a if a[0] > b[0] else b) if latest else (a if a[0] < b[0] else b)

            return Aggregate(
                name, t, entry, lambda: None, add, result=lambda s: None if s is None else s[1], merge=merge
            )

        def keep(entries: list) -> list:
            entries = sorted(entries, key=lambda e: e[0])
            return entries[-n:] if latest else entries[:n]

        def add_n(s, v, seq):
            if v is None and ignore_nulls:
                return s
            if not latest and len(s) >= n:
                return s
            return keep(s + [[seq, v]])

        return Aggregate(
            name,
            ArrayType(t),
            ArrayType(entry),
            list,
            add_n,
            result=lambda s: [e[1] for e in s],
            merge=lambda a, b: keep(a + b),
        )

    return make


def _stddev(name: str, sqrt: bool) -> Callable[[list[SqlType]], Aggregate]:
    """STDDEV_SAMPLE and STDDEV_SAMP: ksqlDB's Youngs-Cramer updates of (SUM, COUNT, M2), with Java's
    integer arithmetic for INT and BIGINT sums. STDDEV_SAMPLE is the sample standard deviation; STDDEV_SAMP,
    as ksqlDB computes it, the sample variance (no square root). Fewer than two values give 0.0."""

    def make(types: list[SqlType]) -> Aggregate:
        t = types[0]
        if t not in (INTEGER, BIGINT, DOUBLE):
            raise _reject(name, types)
        wrap = _wrapper(t)

        def delta(state: list, v: Any) -> float:
            total, count = state[0], state[1]
            if t == DOUBLE:
                return v * (count + 1) - (total + v)
            return float(wrap_long(v * (count + 1) - wrap(total + v)))

        def add(state, v, seq):
            if v is None:
                return state
            count = state[1] + 1
            m2 = delta(state, v) ** 2 / (count * (count - 1)) if count > 1 else 0.0
            return [wrap(state[0] + v), count, state[2] + m2]

        def undo(state, v):
            if v is None:
                return state
            count = state[1] - 1
            m2 = delta(state, v) ** 2 / (count * (count + 1)) if count > 0 else 0.0
            return [wrap(state[0] - v), count, state[2] - m2]

        def mean(state: list) -> float:
            return state[0] / state[1] if t == DOUBLE else float(_java_int_div(state[0], state[1]))

        def merge(a, b):
            count = a[1] + b[1]
            m2 = a[2] + b[2]
            if a[1] and b[1]:
                m2 += a[1] * b[1] * (mean(a) - mean(b)) ** 2 / count
            return [wrap(a[0] + b[0]), count, m2]

        def result(state):
            if state[1] < 2:
                return 0.0
            variance = state[2] / (state[1] - 1)
            return math.sqrt(variance) if sqrt else variance

        zero = 0.0 if t == DOUBLE else 0
        shape = StructType((("SUM", t), ("COUNT", BIGINT), ("M2", DOUBLE)))
        return Aggregate(name, DOUBLE, shape, lambda: [zero, 0, 0.0], add, result, merge, undo)

    return make


def _java_int_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


_HISTOGRAM_LIMIT = 1000


def _histogram(types: list[SqlType]) -> Aggregate:
    """HISTOGRAM of STRING values: value -> count, at most 1000 distinct values (later new ones are not
    counted), as ksqlDB's HistogramUdaf."""
    if types[0] != STRING:
        raise _reject("HISTOGRAM", types)

    def add(state, v, seq):
        if len(state) >= _HISTOGRAM_LIMIT and v not in state:
            return state
        return {**state, v: state.get(v, 0) + 1}

    def merge(a, b):
        out = dict(a)
        for k, n in b.items():
            if len(out) < _HISTOGRAM_LIMIT or k in out:
                out[k] = out.get(k, 0) + n
        return out

    def undo(state, v):
        if v not in state:
            raise EvalError("NullPointerException: HISTOGRAM undo of a value it never counted")
        out = dict(state)
        out[v] -= 1
        if out[v] < 1:
            del out[v]
        return out

    shape = MapType(STRING, BIGINT)
    return Aggregate("HISTOGRAM", shape, shape, dict, add, result=dict, merge=merge, undo=undo)


_SIMPLE: dict[str, Callable[[list[SqlType]], Aggregate]] = {
    "COUNT": _count,
    "SUM": _sum,
    "AVG": _avg,
    "MIN": _extreme("MIN"),
    "MAX": _extreme("MAX"),
    "COLLECT_LIST": _collect_list,
    "COLLECT_SET": _collect_set,
    "COUNT_DISTINCT": _count_distinct,
    "STDDEV_SAMP": _stddev("STDDEV_SAMP", sqrt=False),
    "STDDEV_SAMPLE": _stddev("STDDEV_SAMPLE", sqrt=True),
    "HISTOGRAM": _histogram,
}
_PARAMETERISED: dict[str, Callable[[list[SqlType], list[Any]], Aggregate]] = {
    "TOPK": _topk("TOPK", False),
    "TOPKDISTINCT": _topk("TOPKDISTINCT", True),
    "LATEST_BY_OFFSET": _by_offset("LATEST_BY_OFFSET", True),
    "EARLIEST_BY_OFFSET": _by_offset("EARLIEST_BY_OFFSET", False),
}


def resolve_aggregate(
    name: str, arg_type: SqlType, params: list[Any], config: dict[str, Any] | None = None
) -> Aggregate:
    """The aggregate `name` over a column of `arg_type`; `params` are the literal arguments after it;
    `config` the statement's properties (collection size limits)."""
    upper = name.upper()
    if upper in UNSUPPORTED:
        raise UnsupportedError(f"aggregate function {upper}")
    if isinstance(arg_type, NullType):
        raise KsqlStatementError(
            "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR)."
        )
    if upper in _SIMPLE:
        if params:
            raise _reject(upper, [arg_type] + [_type_of(p) for p in params])
        if upper in LIMIT_CONFIGS:
            raw = (config or {}).get(LIMIT_CONFIGS[upper])
            try:
                limit = COLLECT_LIMIT if raw is None else int(raw)
            except (TypeError, ValueError):
                raise KsqlStatementError(f"Invalid value {raw} for configuration {LIMIT_CONFIGS[upper]}") from None
            return _SIMPLE[upper]([arg_type], limit)  # type: ignore[call-arg]
        return _SIMPLE[upper]([arg_type])
    if upper in _PARAMETERISED:
        return _PARAMETERISED[upper]([arg_type], params)
    raise KsqlStatementError(f"Can't find any functions with the name '{upper}'")


def _type_of(v: Any) -> SqlType:
    if isinstance(v, bool):
        return BOOLEAN
    if isinstance(v, int):
        return INTEGER
    if isinstance(v, float):
        return DOUBLE
    if isinstance(v, Decimal):
        return DecimalType(len(v.as_tuple().digits), max(-int(v.as_tuple().exponent), 0))
    return STRING
