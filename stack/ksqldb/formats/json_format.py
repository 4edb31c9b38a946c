"""The JSON format: an object keyed by column name, or a bare value when unwrapped."""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal
from typing import Any

from .. import values as V
from ..errors import KsqlStatementError, SerdeError
from ..types import BYTES, DATE, DOUBLE, STRING, TIME, TIMESTAMP, ArrayType, MapType, SqlType, StructType, nested
from .base import Serde
from .coerce import coercer, row_coercer


def validate(columns: list[tuple[str, SqlType]]) -> None:
    """ksqlDB's JSON serde refuses a MAP whose keys are not STRING, anywhere in the schema (a JSON object's
    keys are text)."""
    if any(isinstance(x, MapType) and x.key != STRING for _, t in columns for x in nested(t)):
        raise KsqlStatementError("JSON only supports MAP types with STRING keys")


def dumps(value: Any, t: SqlType) -> str:
    """JSON text as ksqlDB's serializer writes it (Java number formats, NaN as a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if t == DOUBLE or isinstance(value, float):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return json.dumps(V.java_double_str(f))
        return V.java_double_str(f)
    if isinstance(value, Decimal):
        return V.decimal_str(value)
    if isinstance(value, int):
        return str(value)
    if t == BYTES:
        return json.dumps(base64.b64encode(value).decode())
    if t == DATE:
        return str(V.date_to_days(value))
    if t == TIME:
        return str(V.time_to_millis(value))
    if t == TIMESTAMP:
        return str(V.timestamp_to_millis(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(t, ArrayType):
        return "[" + ",".join(dumps(v, t.item) for v in value) + "]"
    if isinstance(t, MapType):
        return (
            "{"
            + ",".join(
                f"{json.dumps(V.to_text(k, t.key), ensure_ascii=False)}:{dumps(v, t.value)}" for k, v in value.items()
            )
            + "}"
        )
    if isinstance(t, StructType):
        return (
            "{" + ",".join(f"{json.dumps(n, ensure_ascii=False)}:{dumps(value.get(n), ft)}" for n, ft in t.fields) + "}"
        )
    raise SerdeError(f"Cannot serialise {value!r} as {t}")


_FAST_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def encoder_for(t: SqlType):
    """A value -> JSON text function for one column type, chosen once per serde (the hot path)."""
    if t == DOUBLE:

        def enc_double(v):
            a = abs(v)
            if 1e-3 <= a < 1e7:
                return repr(float(v))  # same digits as Java in this range
            return dumps(v, t)

        return enc_double
    if t.name in ("INTEGER", "BIGINT"):
        return str
    if t.name == "BOOLEAN":
        return lambda v: "true" if v else "false"
    if t.name == "STRING":
        return lambda v: json.dumps(v, ensure_ascii=False)
    if t.name == "DECIMAL":
        return V.decimal_str
    return lambda v: dumps(v, t)


def loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as e:
        raise SerdeError(f"Failed to deserialize JSON: {e}") from None


class JsonSerde(Serde):
    def __init__(self, columns: list[tuple[str, SqlType]], unwrapped: bool) -> None:
        super().__init__(columns)
        self.unwrapped = unwrapped
        self.struct = StructType(tuple(columns))
        self._fields = [(json.dumps(n, ensure_ascii=False) + ":", encoder_for(t)) for n, t in columns]
        self._names = [n for n, _ in columns]
        simple = all(t.name in ("STRING", "INTEGER", "BIGINT", "DOUBLE", "BOOLEAN") for _, t in columns)
        self._simple = [i for i, (_, t) in enumerate(columns) if t == DOUBLE] if simple else None
        self._row = row_coercer(columns)
        self._first = coercer(columns[0][1]) if columns else None

    def deserialize(self, data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        if data[:1] == b"\x00" and len(data) > 5:
            data = data[5:]  # JSON_SR framing tolerated
        node = loads(data)
        if node is None:
            return None
        if self.unwrapped:
            return [self._first(node)]
        if not isinstance(node, dict):
            if len(self.columns) == 1:
                return [self._first(node)]
            raise SerdeError(f"Can't convert type. sourceType: {type(node).__name__}, requiredType: {self.struct}")
        return self._row(node)

    def serialize(self, values: list[Any] | None) -> bytes | None:
        if values is None:
            return None
        if self.unwrapped:
            if values[0] is None:
                return None
            return dumps(values[0], self.columns[0][1]).encode("utf-8")
        if self._simple is not None:
            # all columns STRING/INTEGER/BIGINT/DOUBLE/BOOLEAN: the C encoder writes what Java would, as long
            # as every double prints without an exponent (Python and Java choose the same shortest digits)
            nonzero = [values[i] for i in self._simple if values[i]]  # drops nulls and zeros
            if not nonzero or (min(map(abs, nonzero)) >= 1e-3 and max(map(abs, nonzero)) < 1e7):
                try:
                    return _FAST_DUMPS(dict(zip(self._names, values))).encode("utf-8")
                except ValueError:  # NaN: allow_nan=False refuses it, the exact path below writes "NaN"
                    pass
        parts = [name + ("null" if v is None else enc(v)) for (name, enc), v in zip(self._fields, values)]
        return ("{" + ",".join(parts) + "}").encode("utf-8")
