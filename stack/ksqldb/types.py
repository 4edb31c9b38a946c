"""ksqlDB's SQL types and its rules for implicit widening and arithmetic result types.

Runtime values: BOOLEAN bool, INTEGER/BIGINT int, DOUBLE float, DECIMAL decimal.Decimal (scale kept),
STRING str, BYTES bytes, DATE datetime.date, TIME datetime.time, TIMESTAMP datetime.datetime (naive, UTC),
ARRAY list, MAP dict, STRUCT dict (field name -> value, in declared order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .errors import KsqlStatementError


@dataclass(frozen=True)
class SqlType:
    """Base of all SQL types; `name` is ksqlDB's base type name."""

    @property
    def name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Primitive(SqlType):
    base: str

    @property
    def name(self) -> str:
        return self.base


@dataclass(frozen=True)
class DecimalType(SqlType):
    precision: int
    scale: int

    @property
    def name(self) -> str:
        return "DECIMAL"

    def __str__(self) -> str:
        return f"DECIMAL({self.precision}, {self.scale})"


@dataclass(frozen=True)
class ArrayType(SqlType):
    item: SqlType

    @property
    def name(self) -> str:
        return "ARRAY"

    def __str__(self) -> str:
        return f"ARRAY<{self.item}>"


@dataclass(frozen=True)
class MapType(SqlType):
    key: SqlType
    value: SqlType

    @property
    def name(self) -> str:
        return "MAP"

    def __str__(self) -> str:
        return f"MAP<{self.key}, {self.value}>"


@dataclass(frozen=True)
class StructType(SqlType):
    fields: tuple[tuple[str, SqlType], ...]

    @property
    def name(self) -> str:
        return "STRUCT"

    def field(self, name: str) -> SqlType | None:
        for fname, ftype in self.fields:
            if fname == name:
                return ftype
        return None

    def __str__(self) -> str:
        inner = ", ".join(f"`{n}` {t}" for n, t in self.fields)
        return f"STRUCT<{inner}>"


@dataclass(frozen=True)
class NullType(SqlType):
    """The type of a bare NULL literal: compatible with everything, never a column type."""

    @property
    def name(self) -> str:
        return "null"


BOOLEAN = Primitive("BOOLEAN")
INTEGER = Primitive("INTEGER")
BIGINT = Primitive("BIGINT")
DOUBLE = Primitive("DOUBLE")
STRING = Primitive("STRING")
BYTES = Primitive("BYTES")
DATE = Primitive("DATE")
TIME = Primitive("TIME")
TIMESTAMP = Primitive("TIMESTAMP")
NULL = NullType()

_PRIMITIVE_ALIASES = {
    "BOOLEAN": BOOLEAN,
    "INT": INTEGER,
    "INTEGER": INTEGER,
    "BIGINT": BIGINT,
    "DOUBLE": DOUBLE,
    "STRING": STRING,
    "VARCHAR": STRING,
    "BYTES": BYTES,
    "DATE": DATE,
    "TIME": TIME,
    "TIMESTAMP": TIMESTAMP,
}

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def primitive(name: str) -> SqlType | None:
    return _PRIMITIVE_ALIASES.get(name.upper())


def is_integral(t: SqlType) -> bool:
    return t in (INTEGER, BIGINT)


def is_numeric(t: SqlType) -> bool:
    return t in (INTEGER, BIGINT, DOUBLE) or isinstance(t, DecimalType)


def is_temporal(t: SqlType) -> bool:
    return t in (DATE, TIME, TIMESTAMP)


def is_complex(t: SqlType) -> bool:
    """ARRAY, MAP or STRUCT: types whose values are lists or dicts."""
    return isinstance(t, (ArrayType, MapType, StructType))


def to_decimal_type(t: SqlType) -> DecimalType:
    """The decimal an integral or decimal type widens to (INT -> DECIMAL(10,0), BIGINT -> DECIMAL(19,0))."""
    if isinstance(t, DecimalType):
        return t
    if t == INTEGER:
        return DecimalType(10, 0)
    if t == BIGINT:
        return DecimalType(19, 0)
    raise KsqlStatementError(f"Cannot convert {t} to DECIMAL")


def widen_decimals(a: DecimalType, b: DecimalType) -> DecimalType:
    scale = max(a.scale, b.scale)
    whole = max(a.precision - a.scale, b.precision - b.scale)
    return DecimalType(whole + scale, scale)


_NUMERIC_RANK = {INTEGER: 0, BIGINT: 1, DOUBLE: 3}


def numeric_rank(t: SqlType) -> int:
    return 2 if isinstance(t, DecimalType) else _NUMERIC_RANK[t]


def can_implicitly_cast(src: SqlType, dst: SqlType) -> bool:
    """ksqlDB's implicit widening: INT -> BIGINT -> DECIMAL -> DOUBLE; containers element-wise."""
    if src == dst or isinstance(src, NullType):
        return True
    if is_numeric(src) and is_numeric(dst):
        if isinstance(src, DecimalType) and isinstance(dst, DecimalType):
            return (dst.precision - dst.scale) >= (src.precision - src.scale) and dst.scale >= src.scale
        if isinstance(dst, DecimalType):
            if src in (INTEGER, BIGINT):
                need = to_decimal_type(src)
                return dst.precision - dst.scale >= need.precision
            return False
        return numeric_rank(src) < numeric_rank(dst)
    if isinstance(src, ArrayType) and isinstance(dst, ArrayType):
        return can_implicitly_cast(src.item, dst.item)
    if isinstance(src, MapType) and isinstance(dst, MapType):
        return can_implicitly_cast(src.key, dst.key) and can_implicitly_cast(src.value, dst.value)
    if isinstance(src, StructType) and isinstance(dst, StructType):
        return all(dst.field(n) is not None and can_implicitly_cast(t, dst.field(n)) for n, t in src.fields)
    return False


def common_type(types: list[SqlType]) -> SqlType | None:
    """The widest type all `types` implicitly cast to (NULLs ignored); None when there is none."""
    result: SqlType = NULL
    for t in types:
        if isinstance(t, NullType):
            continue
        if isinstance(result, NullType):
            result = t
            continue
        merged = _merge(result, t)
        if merged is None:
            return None
        result = merged
    return result


def _merge(a: SqlType, b: SqlType) -> SqlType | None:
    if a == b:
        return a
    if is_numeric(a) and is_numeric(b):
        if DOUBLE in (a, b):
            return DOUBLE
        if isinstance(a, DecimalType) or isinstance(b, DecimalType):
            return widen_decimals(to_decimal_type(a), to_decimal_type(b))
        return BIGINT
    if isinstance(a, ArrayType) and isinstance(b, ArrayType):
        item = common_type([a.item, b.item])
        return ArrayType(item) if item is not None else None
    if isinstance(a, MapType) and isinstance(b, MapType):
        k = common_type([a.key, b.key])
        v = common_type([a.value, b.value])
        return MapType(k, v) if k is not None and v is not None else None
    if isinstance(a, StructType) and isinstance(b, StructType):
        if [n for n, _ in a.fields] != [n for n, _ in b.fields]:
            return None
        fields = []
        for (n, ta), (_, tb) in zip(a.fields, b.fields):
            t = common_type([ta, tb])
            if t is None:
                return None
            fields.append((n, t))
        return StructType(tuple(fields))
    return None


def arithmetic_result(op: str, a: SqlType, b: SqlType) -> SqlType:
    """Result type of `a op b` for numeric operands, with ksqlDB's decimal precision rules."""
    if DOUBLE in (a, b):
        return DOUBLE
    if isinstance(a, DecimalType) or isinstance(b, DecimalType):
        da, db = to_decimal_type(a), to_decimal_type(b)
        p1, s1, p2, s2 = da.precision, da.scale, db.precision, db.scale
        if op in ("+", "-"):
            scale = max(s1, s2)
            return DecimalType(max(p1 - s1, p2 - s2) + scale + 1, scale)
        if op == "*":
            return DecimalType(p1 + p2 + 1, s1 + s2)
        if op == "/":
            scale = max(6, s1 + p2 + 1)
            return DecimalType(p1 - s1 + s2 + scale, scale)
        if op == "%":
            scale = max(s1, s2)
            return DecimalType(min(p1 - s1, p2 - s2) + scale, scale)
    if BIGINT in (a, b):
        return BIGINT
    return INTEGER


def nested(t: SqlType) -> Iterator[SqlType]:
    """`t` and every type inside it (array items, map keys and values, struct fields), depth first."""
    yield t
    if isinstance(t, ArrayType):
        yield from nested(t.item)
    elif isinstance(t, MapType):
        yield from nested(t.key)
        yield from nested(t.value)
    elif isinstance(t, StructType):
        for _, ft in t.fields:
            yield from nested(ft)


def contains_map(t: SqlType) -> bool:
    return any(isinstance(x, MapType) for x in nested(t))
