"""ksqlDB's comparison rules, in one place: which operand types compare under which operator (its
ComparisonUtil), the message when they do not, and how two non-null values compare (the Java code its
SqlToJavaVisitor generates). Everything here is decided once, when an expression is compiled; the
comparator it returns is all that runs per record."""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import values as V
from .errors import EvalError, KsqlStatementError
from .types import (
    BOOLEAN,
    BYTES,
    DATE,
    DOUBLE,
    STRING,
    TIME,
    TIMESTAMP,
    ArrayType,
    DecimalType,
    MapType,
    SqlType,
    StructType,
    is_numeric,
)

#: ksqlDB's names of the operators (ComparisonExpression.Type), as its messages print them
OPERATOR_NAMES = {
    "=": "EQUAL",
    "<>": "NOT_EQUAL",
    "<": "LESS_THAN",
    "<=": "LESS_THAN_OR_EQUAL",
    ">": "GREATER_THAN",
    ">=": "GREATER_THAN_OR_EQUAL",
    "IS DISTINCT FROM": "IS_DISTINCT_FROM",
}
_EQUALITY = ("=", "<>", "IS DISTINCT FROM")
_TEMPORAL = (TIME, DATE, TIMESTAMP)


def base_name(t: SqlType) -> str:
    """A type's base type name (DECIMAL for DECIMAL(4, 2), ARRAY for ARRAY<INT>), as ksqlDB's SqlBaseType."""
    return str(t).split("(")[0].split("<")[0]


def is_valid(left: SqlType, op: str, right: SqlType) -> bool:
    """ComparisonUtil.isValidComparison: the left operand's base type decides what the right may be."""
    if is_numeric(left):
        return is_numeric(right)
    if left == STRING:
        return right == STRING or right in _TEMPORAL
    if left == BOOLEAN or isinstance(left, (ArrayType, MapType, StructType)):
        return base_name(left) == base_name(right) and op in _EQUALITY
    if left == TIME:
        return right in (TIME, STRING)
    if left in (DATE, TIMESTAMP):
        return right in (DATE, TIMESTAMP, STRING)
    if left == BYTES:
        return right == BYTES
    return False


def invalid(left_text: str, lt: SqlType, op: str, right_text: str, rt: SqlType) -> str:
    """ksqlDB's message for a comparison of types that do not compare."""
    return f"Cannot compare {left_text} ({lt}) to {right_text} ({rt}) with {OPERATOR_NAMES[op]}."


def with_null(lt: SqlType | None, op: str, rt: SqlType | None) -> KsqlStatementError:
    """A NULL literal on either side: ksqlDB refuses it (IS [NOT] NULL is the way)."""
    left = "NULL" if lt is None else base_name(lt)
    right = "NULL" if rt is None else base_name(rt)
    return KsqlStatementError(
        f"Comparison with NULL not supported: {left} {op} {right}\nUse 'IS NULL' or 'IS NOT NULL' instead."
    )


def operand_converters(lt: SqlType, rt: SqlType) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """How each non-null operand is brought to the form in which the pair compares: a DECIMAL compares
    with anything as a BigDecimal (a DOUBLE through BigDecimal.valueOf, its shortest decimal text); a
    TIME, DATE or TIMESTAMP with a STRING parses the string, a DATE with a TIMESTAMP is its midnight;
    a BIGINT or INT with a DOUBLE is widened to a double, as Java promotes it."""
    if isinstance(lt, DecimalType) or isinstance(rt, DecimalType):
        return _to_decimal(lt), _to_decimal(rt)
    if lt in _TEMPORAL or rt in _TEMPORAL:
        target = TIME if TIME in (lt, rt) else TIMESTAMP if TIMESTAMP in (lt, rt) else DATE
        return _to_temporal(lt, target), _to_temporal(rt, target)
    if DOUBLE in (lt, rt) and is_numeric(lt) and is_numeric(rt):
        return float, float
    return same, same


def comparator(op: str, lt: SqlType, rt: SqlType) -> Callable[[Any, Any], bool]:
    """The comparison of two converted, non-null operands, as the Java ksqlDB generates: numbers by `<`
    and `>` (so NaN equals nothing and differs from nothing), strings by UTF-16 code unit, bytes as
    signed bytes, everything else by equals()."""
    distinct = op in ("<>", "IS DISTINCT FROM")
    if DOUBLE in (lt, rt) and is_numeric(lt) and is_numeric(rt) and not _decimal(lt, rt):
        if op == "=":
            return lambda a, b: a <= b and a >= b
        if distinct:
            return lambda a, b: a < b or a > b
        return _ORDER[op]
    if op in _EQUALITY:
        return _ORDER["<>" if distinct else op]
    order = _ORDER[op]
    if lt == STRING and rt == STRING:
        return lambda a, b: order(a, b) if a.isascii() and b.isascii() else order(_utf16(a), _utf16(b))
    if lt == BYTES:
        return lambda a, b: order(a.translate(_SIGNED), b.translate(_SIGNED))
    return order


def same(v: Any) -> Any:
    return v


def _to_decimal(t: SqlType) -> Callable[[Any], Any]:
    if t == DOUBLE:

        def from_double(v: float) -> Decimal:
            if math.isnan(v) or math.isinf(v):  # BigDecimal.valueOf throws on them
                raise EvalError(f"Character {V.java_double_str(v)} is neither a decimal digit number")
            return Decimal(repr(v))

        return from_double
    return same if isinstance(t, DecimalType) else Decimal


def _to_temporal(t: SqlType, target: SqlType) -> Callable[[Any], Any]:
    if t == STRING:
        return {TIME: V.parse_time, DATE: V.parse_date, TIMESTAMP: V.parse_timestamp}[target]
    if t == DATE and target == TIMESTAMP:
        return lambda d: dt.datetime(d.year, d.month, d.day)
    return same


def _utf16(s: str) -> bytes:
    """Big-endian UTF-16 bytes order as Java's String.compareTo orders its char values."""
    return s.encode("utf-16-be", "surrogatepass")


#: bytes compare as Java's signed bytes (ByteBuffer.compareTo): map 0x80..0xFF below 0x00..0x7F
_SIGNED = bytes((b + 128) % 256 for b in range(256))

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _decimal(*types: SqlType) -> bool:
    return any(isinstance(t, DecimalType) for t in types)
