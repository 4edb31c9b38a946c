"""Coerce loosely typed decoded values (JSON, Avro) into a SQL type, as ksqlDB's deserializers do."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import values as V
from ..errors import EvalError, SerdeError
from ..types import (
    BIGINT,
    BOOLEAN,
    BYTES,
    DATE,
    DOUBLE,
    INT_MAX,
    INT_MIN,
    INTEGER,
    LONG_MAX,
    LONG_MIN,
    STRING,
    TIME,
    TIMESTAMP,
    ArrayType,
    DecimalType,
    MapType,
    SqlType,
    StructType,
)


def _fail(value: Any, t: SqlType) -> SerdeError:
    return SerdeError(f"Can't convert type. sourceType: {type(value).__name__}, requiredType: {t}, value: {value!r}")


def lookup_field(obj: dict, name: str) -> Any:
    if name in obj:
        return obj[name]
    upper = name.upper()
    for k, v in obj.items():
        if isinstance(k, str) and k.upper() == upper:
            return v
    return None


def to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return V.java_double_str(value)
    if isinstance(value, Decimal):
        return V.decimal_str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def coerce(value: Any, t: SqlType) -> Any:
    if value is None:
        return None
    try:
        if t == STRING:
            return to_text(value)
        if t == BOOLEAN:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise _fail(value, t)
        if t in (INTEGER, BIGINT):
            if isinstance(value, bool):
                raise _fail(value, t)
            if isinstance(value, (int, Decimal, float)):
                v = int(value)
            elif isinstance(value, str):
                v = int(value.strip())
            else:
                raise _fail(value, t)
            return V.wrap_int(v) if t == INTEGER else V.wrap_long(v)
        if t == DOUBLE:
            if isinstance(value, bool):
                raise _fail(value, t)
            if isinstance(value, (int, float, Decimal)):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
            raise _fail(value, t)
        if isinstance(t, DecimalType):
            if isinstance(value, bool):
                raise _fail(value, t)
            if isinstance(value, float):
                value = Decimal(repr(value))
            elif isinstance(value, (int, str)):
                value = Decimal(str(value).strip())
            if not isinstance(value, Decimal):
                raise _fail(value, t)
            return V.fit_decimal(value, t)
        if t == BYTES:
            if isinstance(value, (bytes, bytearray)):
                return bytes(value)
            if isinstance(value, str):
                return base64.b64decode(value)
            raise _fail(value, t)
        if t == DATE:
            if isinstance(value, dt.datetime):
                return value.date()
            if isinstance(value, dt.date):
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return V.days_to_date(value)
            if isinstance(value, str):
                return V.parse_date(value)
            raise _fail(value, t)
        if t == TIME:
            if isinstance(value, dt.time):
                return value.replace(tzinfo=None)
            if isinstance(value, int) and not isinstance(value, bool):
                return V.millis_to_time(value)
            if isinstance(value, str):
                return V.parse_time(value)
            raise _fail(value, t)
        if t == TIMESTAMP:
            if isinstance(value, dt.datetime):
                if value.tzinfo is not None:
                    value = value.astimezone(dt.UTC).replace(tzinfo=None)
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return V.millis_to_timestamp(value)
            if isinstance(value, str):
                return V.parse_timestamp(value)
            raise _fail(value, t)
        if isinstance(t, ArrayType):
            if not isinstance(value, list):
                raise _fail(value, t)
            return [coerce(v, t.item) for v in value]
        if isinstance(t, MapType):
            if not isinstance(value, dict):
                raise _fail(value, t)
            return {coerce(k, t.key): coerce(v, t.value) for k, v in value.items()}
        if isinstance(t, StructType):
            if not isinstance(value, dict):
                raise _fail(value, t)
            return {n: coerce(lookup_field(value, n), ft) for n, ft in t.fields}
    except (ValueError, InvalidOperation, EvalError, ArithmeticError) as e:
        raise SerdeError(f"Can't coerce {value!r} to {t}: {e}") from None
    raise _fail(value, t)


Coercer = Callable[[Any], Any]


@functools.cache
def coercer(t: SqlType) -> Coercer:
    """`coerce` for one type, decided once: the values a deserializer usually meets (a float for a DOUBLE, a
    dict for a STRUCT, ...) go straight through, anything else takes `coerce` and its errors. A STRUCT or
    ARRAY of a hundred entries is converted without deciding its type again for every entry."""
    if t == STRING:
        return lambda v: v if type(v) is str else coerce(v, t)
    if t == BOOLEAN:
        return lambda v: v if type(v) is bool else coerce(v, t)
    if t in (INTEGER, BIGINT):
        low, high = (INT_MIN, INT_MAX) if t == INTEGER else (LONG_MIN, LONG_MAX)
        return lambda v: v if type(v) is int and low <= v <= high else coerce(v, t)
    if t == DOUBLE:

        def double(v: Any) -> Any:
            if type(v) is float:
                return v
            if type(v) is Decimal:  # JSON numbers are read as decimals
                try:
                    return float(v)
                except (ValueError, ArithmeticError) as e:
                    raise SerdeError(f"Can't coerce {v!r} to {t}: {e}") from None
            return coerce(v, t)

        return double
    if isinstance(t, ArrayType):
        item = coercer(t.item)
        return lambda v: [item(x) for x in v] if type(v) is list else coerce(v, t)
    if isinstance(t, MapType):
        key, value = coercer(t.key), coercer(t.value)
        return lambda v: {key(k): value(x) for k, x in v.items()} if isinstance(v, dict) else coerce(v, t)
    if isinstance(t, StructType):
        fields = [(n, coercer(ft)) for n, ft in t.fields]

        def struct(v: Any) -> Any:
            if not isinstance(v, dict):
                return coerce(v, t)
            return {n: f(v[n]) if n in v else f(lookup_field(v, n)) for n, f in fields}

        return struct
    return lambda v: coerce(v, t)


def row_coercer(columns: list[tuple[str, SqlType]]) -> Callable[[dict], list[Any]]:
    """A decoded record (a dict, field names matched as `lookup_field` does) -> its columns' values."""
    fields = [(n, coercer(t)) for n, t in columns]
    return lambda node: [f(node[n]) if n in node else f(lookup_field(node, n)) for n, f in fields]
